"""Console lines: cut from a process's output, kept in a ring buffer."""

from collections import deque

MAX_LINE_BYTES = 8 * 1024
CUT_MARK = " [cut]"
KEPT_LINES = 500


def cut_line(raw: bytes) -> str:
    """`raw` as text of at most MAX_LINE_BYTES in UTF-8, marked when it was cut."""
    raw = raw.removesuffix(b"\r")
    if len(raw) <= MAX_LINE_BYTES:
        return raw.decode("utf-8", "replace")
    keep = MAX_LINE_BYTES - len(CUT_MARK)
    # "ignore" drops a character split by the cut instead of adding a 3-byte U+FFFD.
    return raw[:keep].decode("utf-8", "ignore") + CUT_MARK


class LineSplitter:
    """Splits a byte stream into lines; an overlong line is cut, its rest skipped."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.skipping = False

    def feed(self, chunk: bytes) -> list[str]:
        self.buffer += chunk
        lines = []
        while (end := self.buffer.find(b"\n")) != -1:
            raw = bytes(self.buffer[:end])
            del self.buffer[: end + 1]
            if not self.skipping:
                lines.append(cut_line(raw))
            self.skipping = False
        if len(self.buffer) > MAX_LINE_BYTES:
            if not self.skipping:
                lines.append(cut_line(bytes(self.buffer)))
            self.buffer.clear()
            self.skipping = True
        return lines

    def close(self) -> list[str]:
        """The last line, when the stream ended without a newline."""
        rest = bytes(self.buffer)
        self.buffer.clear()
        return [cut_line(rest)] if rest and not self.skipping else []


class Console:
    """The last KEPT_LINES lines of a server's console."""

    def __init__(self) -> None:
        self.lines: deque[str] = deque(maxlen=KEPT_LINES)

    def add(self, line: str) -> None:
        self.lines.append(line)

    def recent(self) -> list[str]:
        return list(self.lines)
