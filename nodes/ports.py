"""Port lists as admins type them: `25565, 25570-25580 27015`.

Parts are separated by commas and/or whitespace; a range is two ports joined by a
dash, with or without spaces around it. `parse_ports` reads such a list into
ports, `format_ports` writes ports back in the same shape for a sentence.
"""

import re
from collections.abc import Iterable

LOWEST_PORT = 1024
HIGHEST_PORT = 65535
MAX_RANGE = 1000
MAX_PORTS = 5000

SEPARATOR = re.compile(r"[,\s]+")
SPACED_DASH = re.compile(r"\s*-\s*")
# NB: nine digits at most, so int() never meets a number long enough to refuse.
PORT = re.compile(r"[0-9]{1,9}")
RANGE = re.compile(r"([0-9]{1,9})-([0-9]{1,9})")


class PortListError(ValueError):
    """A port list that cannot be read; the message names every bad part."""


def parse_ports(text: str) -> list[int]:
    """The ports of a list such as "25565, 25570-25580", sorted, each once."""
    parts = [part for part in SEPARATOR.split(SPACED_DASH.sub("-", text)) if part]
    if not parts:
        raise PortListError("Enter at least one port.")

    ports: set[int] = set()
    problems = []
    for part in parts:
        try:
            ports.update(_read_part(part))
        except PortListError as e:
            problems.append(str(e))
    if problems:
        raise PortListError("; ".join(problems) + ".")

    if len(ports) > MAX_PORTS:
        raise PortListError(
            f"That is {len(ports)} ports; at most {MAX_PORTS} can be added at a time."
        )
    return sorted(ports)


def _read_part(part: str) -> range:
    shown = _quoted(part)
    if match := RANGE.fullmatch(part):
        start, end = int(match[1]), int(match[2])
        if start > end:
            raise PortListError(f"{shown} ends before it starts")
        if end - start + 1 > MAX_RANGE:
            raise PortListError(
                f"{shown} spans {end - start + 1} ports, at most {MAX_RANGE} a range"
            )
    elif PORT.fullmatch(part):
        start = end = int(part)
    else:
        raise PortListError(f"{shown} is not a port")

    if start < LOWEST_PORT or end > HIGHEST_PORT:
        raise PortListError(f"{shown} is outside {LOWEST_PORT}-{HIGHEST_PORT}")
    return range(start, end + 1)


def _quoted(part: str) -> str:
    # A pasted paragraph is named by its start, not repeated whole.
    return f"'{part}'" if len(part) <= 24 else f"'{part[:20]}…'"


def format_ports(ports: Iterable[int], most: int = 8) -> str:
    """Ports for a sentence: 25565, 25566, 25567 and 27015 read "25565-25567 and
    27015"; past `most` runs, the rest are counted."""
    runs: list[list[int]] = []
    for port in sorted(set(ports)):
        if runs and runs[-1][1] == port - 1:
            runs[-1][1] = port
        else:
            runs.append([port, port])
    words = [str(a) if a == b else f"{a}-{b}" for a, b in runs]

    if len(words) > most:
        words = [*words[:most], f"{len(words) - most} more"]
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " and " + words[-1]
