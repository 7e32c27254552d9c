"""How fast console lines reach viewers through the panel, against the daemon itself.

    uv run python benchmarks/console.py [--small]

Everything runs on loopback, in a temporary directory: a migrated SQLite file, one
node with a real development daemon (a subprocess), and the panel served by Daphne
(another), on the in-memory channel layer unless REDIS_URL is set. The server's
startup command is a flood program: it prints LINES console lines as fast as it
can, each carrying a run token, a sequence number and the time it was written
(`time.time_ns()`), and then sleeps.

For 1, 10 and 100 viewers (1 and 10 with --small) it opens that many browser-like
WebSockets to the panel (asking, as the browser does, for raw-deflated batches),
in one process, and one straight to the daemon, signed as
the panel signs its own, in another: the baseline of the same run. It then starts
the server and reads until every client has seen the last line, or gives up. A
client only reads its socket while it is measured, stamping each chunk of bytes
with the time it came, and takes the frames apart once the round is over: the
clients share the machine with the panel and the daemon, and this keeps their own
work out of the figures as far as it can be. Per client: lines a second from its
first line to its last, and each line's latency (when the chunk that completed its
message came, minus when the line was written). The panel's added latency is its
percentile minus the direct client's, which is what the daemon itself takes.
Between viewer counts the flood is killed and started again.

Targets: at one viewer, the panel delivers at least 0.8 of the direct rate; at 100
viewers it adds less than 50 ms to the 99th percentile latency.

NB: the baseline is one client. The development daemon sends a frame per line to
each socket and closes one that falls 2,000 frames behind, so a hundred direct
clients measure its fan-out, not the panel's. A viewer that misses batches is
caught up from the relay's copy of the console (servers.consumers); the lines it
skipped are counted as lost, not hidden.
"""

import argparse
import asyncio
import base64
import json
import multiprocessing
import os
import resource
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import zlib
from collections import deque
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import django
import httpx

if TYPE_CHECKING:
    from nodes.daemon import Daemon
    from nodes.models import Node

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stellarpanel.settings")

FULL_VIEWERS = (1, 10, 100)
SMALL_VIEWERS = (1, 10)
FULL_LINES = 20_000
SMALL_LINES = 2_000
TARGET_RATIO = 0.8
TARGET_ADDED_P99_MS = 50.0
# A round ends when every client has the last line, when no client got a line of
# the run for IDLE_S, or after at most ROUND_S.
IDLE_S = 10.0
ROUND_S = {False: 300.0, True: 30.0}
START_TIMEOUT_S = 30.0
READ_SIZE = 1024 * 1024
# What a deflated client looks through for the last line: its newest messages,
# the last of which may be a stats frame.
RECENT_MESSAGES = 4
OPEN_AT_ONCE = 10
PREFIX = "[flood]"

# Written into the server's directory: it reads its run token and line count from
# run.txt, which this benchmark writes before each start.
FLOOD = """\
import os
import time

run, count = open("run.txt").read().split()
padding = "x" * 48
for seq in range(int(count)):
    line = f"{PREFIX} {run} {seq} {time.time_ns()} {padding}\\n"
    os.write(1, line.encode())
time.sleep(3600)
""".replace("{PREFIX}", PREFIX)


@dataclass
class Received:
    """What one client saw of one run of the flood."""

    seen: int = 0
    first_ns: int = 0
    last_ns: int = 0
    got_last: bool = False
    closed: str = ""  # why the socket closed early, if it did
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        span = (self.last_ns - self.first_ns) / 1e9
        return (self.seen - 1) / span if self.seen > 1 and span > 0 else 0.0


@dataclass(frozen=True)
class Round:
    viewers: int
    lines: int
    direct: Received
    panel: list[Received]


# The clients.


@dataclass(frozen=True)
class Clients:
    """How a process of clients reaches the console: the panel's or the daemon's."""

    url: str
    headers: dict[str, str]
    origin: str | None  # the panel's; its sockets wait for the relay to connect
    count: int
    deflated: bool = False  # asks for raw-deflated batches, as the browser does


@dataclass
class Arrived:
    """The bytes one client read of its socket, each chunk with when it came."""

    chunks: list[tuple[int, bytes]] = field(default_factory=list)
    closed: str = ""


class Socket:
    """A WebSocket client that only reads: what the server sends stays raw bytes.

    A client of the benchmark does as little as it can while it is measured:
    one read per chunk of the stream, however many messages it holds. The
    frames are taken apart once the round is over.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer
        self.buffer = b""  # read while opening, not yet a whole frame

    @classmethod
    async def open(cls, clients: Clients) -> "Socket":
        url = urlsplit(clients.url)
        reader, writer = await asyncio.open_connection(
            url.hostname, url.port, limit=READ_SIZE
        )
        key = base64.b64encode(os.urandom(16)).decode()
        headers = {
            "Host": url.netloc,
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": key,
            "Sec-WebSocket-Version": "13",
            **({"Origin": clients.origin} if clients.origin else {}),
            **clients.headers,
        }
        target = f"{url.path}?{url.query}" if url.query else url.path
        request = f"GET {target} HTTP/1.1\r\n" + "".join(
            f"{name}: {value}\r\n" for name, value in headers.items()
        )
        writer.write(f"{request}\r\n".encode())
        answer = await reader.readuntil(b"\r\n\r\n")
        if not answer.startswith(b"HTTP/1.1 101"):
            raise RuntimeError(f"no WebSocket: {answer.splitlines()[0]!r}")
        return cls(reader, writer)

    async def until_relay_connected(self) -> None:
        """Read messages until the panel's relay says it has the daemon."""
        async with asyncio.timeout(START_TIMEOUT_S):
            while True:
                data = await self.reader.read(READ_SIZE)
                if not data:
                    raise RuntimeError("the panel closed the console socket")
                messages, self.buffer = take_frames(self.buffer + data)
                for text in messages:
                    loaded = json.loads(text)
                    frames = loaded if isinstance(loaded, list) else [loaded]
                    if {"event": "relay", "args": ["connected"]} in frames:
                        return

    async def read_flood(
        self, run: str, lines: int, deadline: float, done: asyncio.Event | None
    ) -> Arrived:
        """Chunks until the run's last line, the deadline or an idle spell.

        A socket of raw-deflated batches (`done` given) looks for the last line
        only once `done` is set, when the direct client has seen it: until then
        it only splits its chunks into messages, and inflates none of them.
        """
        arrived = Arrived([(time.time_ns(), self.buffer)])
        last = f"{PREFIX} {run} {lines - 1} ".encode()
        tail = pending = b""
        recent: deque[tuple[int, bytes]] = deque(maxlen=RECENT_MESSAGES)
        while True:
            left = min(deadline - time.monotonic(), IDLE_S)
            if left <= 0:
                break
            try:
                data = await asyncio.wait_for(self.reader.read(READ_SIZE), left)
            except TimeoutError:
                break
            if not data:
                arrived.closed = "closed by the server"
                break
            arrived.chunks.append((time.time_ns(), data))
            if done is None:
                if last in data or last in tail + data[: len(last)]:
                    break
                tail = data[-len(last) :]
                continue
            messages, pending = split_frames(pending + data)
            recent.extend(messages)
            if done.is_set() and any(last in payload(*m) for m in recent):
                break
        return arrived

    def close(self) -> None:
        self.writer.close()


def split_frames(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """The messages whole in `data` (opcode, payload), and the bytes of the next."""
    messages: list[tuple[int, bytes]] = []
    at = 0
    while len(data) - at >= 2:
        opcode, length = data[at] & 0x0F, data[at + 1] & 0x7F
        start = at + 2
        if length == 126:
            length, start = int.from_bytes(data[start : start + 2]), start + 2
        elif length == 127:
            length, start = int.from_bytes(data[start : start + 8]), start + 8
        if len(data) < start + length:
            break
        messages.append((opcode, data[start : start + length]))
        at = start + length
    return messages, data[at:]


def payload(opcode: int, data: bytes) -> bytes:
    """A message's text as bytes: binary messages are raw-deflated text."""
    if opcode == 2:
        inflater = zlib.decompressobj(-15)
        return inflater.decompress(data) + inflater.flush()
    return data


def take_frames(data: bytes) -> tuple[list[str], bytes]:
    """The text of the messages whole in `data`, and the bytes of the next."""
    messages, rest = split_frames(data)
    texts = [payload(*m).decode() for m in messages if m[0] in (1, 2)]
    return texts, rest


def tally(arrived: Arrived, run: str, lines: int) -> Received:
    """What a client saw of the run: the lines, once each, and their latencies.

    A message counts as arrived with the chunk that completed it.
    """
    received = Received(closed=arrived.closed)
    seqs = bytearray(lines)
    buffer = b""
    for now, chunk in arrived.chunks:
        messages, buffer = take_frames(buffer + chunk)
        for text in messages:
            data = json.loads(text)
            # The panel sends a busy console as arrays of frames.
            for frame in data if isinstance(data, list) else [data]:
                if frame["event"] != "console output":
                    continue
                words = frame["args"][0].split(" ", 4)
                if words[0] != PREFIX or words[1] != run:
                    continue  # an earlier run's line, replayed
                seq, sent = int(words[2]), int(words[3])
                if not seqs[seq]:
                    seqs[seq] = 1
                    received.seen += 1
                received.first_ns = received.first_ns or now
                received.last_ns = now
                received.latencies_ms.append((now - sent) / 1e6)
                received.got_last = received.got_last or seq == lines - 1
    return received


def watch_flood(
    conn: Connection, clients: Clients, run: str, lines: int, seconds: float
) -> None:
    """Clients in a process of their own: open, say ready, read the flood.

    Deflated clients hear "done" once the direct client has the last line.
    """

    async def watch() -> list[Received]:
        sockets: list[Socket] = []
        # A few at a time: Daphne's listen backlog is short.
        for start in range(0, clients.count, OPEN_AT_ONCE):
            more = min(OPEN_AT_ONCE, clients.count - start)
            sockets += await asyncio.gather(
                *(Socket.open(clients) for _ in range(more))
            )
        if clients.origin:
            await asyncio.gather(*(s.until_relay_connected() for s in sockets))
        conn.send("ready")
        await asyncio.to_thread(conn.recv)  # the server is starting
        deadline = time.monotonic() + seconds
        done = asyncio.Event() if clients.deflated else None
        if done is not None:
            told = asyncio.create_task(asyncio.to_thread(conn.recv))
            told.add_done_callback(lambda _: done.set())
        arrived = await asyncio.gather(
            *(s.read_flood(run, lines, deadline, done) for s in sockets)
        )
        for s in sockets:
            s.close()
        return [tally(a, run, lines) for a in arrived]

    try:
        conn.send(asyncio.run(watch()))
    except Exception as e:
        conn.send(f"{type(e).__name__}: {e}")


# One round.


@dataclass(frozen=True)
class Panel:
    url: str
    cookie: str
    node: "Node"
    server: str
    directory: Path


async def measure(panel: Panel, viewers: int, lines: int, small: bool) -> Round:
    from nodes.daemon import Daemon, websocket_target

    run = secrets.token_hex(4)
    (panel.directory / "run.txt").write_text(f"{run} {lines}\n")
    host = panel.url.removeprefix("http://")
    url, headers, _ = await asyncio.to_thread(
        websocket_target, panel.node, panel.server
    )
    groups = [
        Clients(url, headers, None, 1),
        Clients(
            f"ws://{host}/ws/servers/{panel.server}/?batches=deflate-raw",
            {"Cookie": panel.cookie},
            panel.url,
            viewers,
            deflated=True,
        ),
    ]
    pipes, processes = [], []
    for clients in groups:
        ours, theirs = multiprocessing.Pipe()
        pipes.append(ours)
        processes.append(
            multiprocessing.Process(
                target=watch_flood,
                args=(theirs, clients, run, lines, ROUND_S[small]),
            )
        )
    try:
        for child in processes:
            child.start()
        for conn in pipes:
            if (answer := await asyncio.to_thread(conn.recv)) != "ready":
                raise RuntimeError(f"the clients did not connect: {answer}")
        await asyncio.to_thread(Daemon(panel.node).power, panel.server, "start")
        for conn in pipes:
            conn.send("go")
        direct_pipe, panel_pipe = pipes
        results = [await asyncio.to_thread(direct_pipe.recv)]
        panel_pipe.send("done")
        results.append(await asyncio.to_thread(panel_pipe.recv))
        if failed := [r for r in results if isinstance(r, str)]:
            raise RuntimeError(f"the clients failed: {'; '.join(failed)}")
        (direct,), received = results
    finally:
        for child in processes:
            child.join(timeout=10)
            if child.is_alive():
                child.kill()
    return Round(viewers, lines, direct, received)


async def kill_flood(panel: Panel) -> None:
    """Kill the flood and wait for the daemon to call the server offline."""
    from nodes.daemon import Daemon, DaemonError

    daemon = Daemon(panel.node)
    try:
        await asyncio.to_thread(daemon.power, panel.server, "kill")
    except DaemonError as e:
        if e.category != "conflict":  # already offline
            raise
    await wait_for_state(daemon, panel.server, {"offline"})


async def wait_for_state(daemon: "Daemon", server: str, states: set[str]) -> str:
    deadline = time.monotonic() + START_TIMEOUT_S * 4
    while True:
        state = (await asyncio.to_thread(daemon.server, server))["state"]
        if state in states:
            return state
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server stayed {state}")
        await asyncio.sleep(0.2)


async def run_rounds(
    panel: Panel, viewer_counts: tuple[int, ...], small: bool, lines: int
) -> list[Round]:
    rounds = []
    for viewers in viewer_counts:
        print(f"  {viewers} viewer(s), {lines:,} lines…", flush=True)
        rounds.append(await measure(panel, viewers, lines, small))
        await kill_flood(panel)
    return rounds


# The setup.


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def configure(tmp: Path, panel_url: str) -> dict[str, str]:
    """The panel's environment, shared by this process and Daphne."""
    from cryptography.fernet import Fernet

    for name in ("SECRET_KEY_FILE", "ENCRYPTION_KEY_FILE", "ALLOWED_HOSTS"):
        os.environ.pop(name, None)
    os.environ.update(
        DATABASE_URL=f"sqlite:///{tmp / 'panel.sqlite3'}",
        DEBUG="False",
        SECRET_KEY=secrets.token_urlsafe(50),
        ENCRYPTION_KEY=Fernet.generate_key().decode(),
        DAEMON_ALLOWED_NETWORKS="127.0.0.0/8",
        HEARTBEAT_ENABLED="False",
        PANEL_URL=panel_url,
        DJANGO_SETTINGS_MODULE="stellarpanel.settings",
    )
    return dict(os.environ)


def seed(daemon_port: int) -> tuple["Node", str, str]:
    """An owner, a node on loopback and a flood server on it; the owner's cookie."""
    from django.conf import settings
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.test import Client

    from nodes.models import MB_PER_GB, Allocation, Node
    from servers.models import Server

    call_command("migrate", verbosity=0, interactive=False)
    owner = User.objects.create_user("bob")
    node = Node(
        name="local",
        host="127.0.0.1",
        port=daemon_port,
        protocol=Node.Protocol.HTTP,
        cpu_cores=8,
        memory_mb=16 * MB_PER_GB,
        disk_mb=200 * MB_PER_GB,
        status=Node.Status.ONLINE,
    )
    node.set_new_token()
    node.save()
    server = Server.objects.create(
        name="flood",
        owner=owner,
        node=node,
        cpu=100,
        memory_mb=512,
        disk_mb=1024,
        startup="{{PYTHON}} flood.py",
    )
    Allocation.objects.create(
        node=node, ip="127.0.0.1", port=free_port(), server=server, is_primary=True
    )
    client = Client()
    client.force_login(owner)
    session = client.cookies[settings.SESSION_COOKIE_NAME].value
    return node, server.public_id, f"{settings.SESSION_COOKIE_NAME}={session}"


@contextmanager
def process(command: list[str], env: dict[str, str], log: Path) -> Iterator[None]:
    with log.open("wb") as output:
        child = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        yield
    finally:
        child.terminate()
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def wait_for_port(port: int, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"nothing listens on {port}:\n{log.read_text()}"
                ) from None
            time.sleep(0.1)


def install_flood(node: "Node", public_id: str, data_dir: Path) -> Path:
    """Create and install the server on the daemon, then put the flood in place."""
    from nodes.daemon import Daemon, DaemonError
    from servers.models import Server

    daemon = Daemon(node)
    try:
        daemon.create_server(Server.objects.get(public_id=public_id).daemon_config())
    except DaemonError as e:
        # The daemon may have adopted it from the panel's list as it booted.
        if e.category != "conflict":
            raise
    daemon.install(public_id)
    state = asyncio.run(
        wait_for_state(daemon, public_id, {"offline", "install_failed"})
    )
    if state != "offline":
        raise RuntimeError("the install failed")
    directory = data_dir / "servers" / public_id
    (directory / "flood.py").write_text(FLOOD)
    return directory


@contextmanager
def stack(tmp: Path) -> Iterator[Panel]:
    """Daphne and the development daemon, seeded, until the block ends."""
    panel_port, daemon_port = free_port(), free_port()
    panel_url = f"http://127.0.0.1:{panel_port}"
    env = configure(tmp, panel_url)
    django.setup()
    from nodes.models import Node

    node, public_id, cookie = seed(daemon_port)

    data_dir = tmp / "daemon"
    data_dir.mkdir()
    config = node.daemon_config(
        node.daemon_token(),
        listen="127.0.0.1",
        data_dir=str(data_dir),
        panel_url=panel_url,
    )
    config_file = tmp / "node.toml"
    config_file.write_text(
        config.replace(f"port = {node.sftp_port}", f"port = {free_port()}")
    )
    daphne = [sys.executable, "-m", "daphne", "--bind", "127.0.0.1", "--port"]
    daemon = [sys.executable, "-m", "devdaemon", "--config", str(config_file)]
    with ExitStack() as running:
        running.enter_context(
            process(
                [*daphne, str(panel_port), "stellarpanel.asgi:application"],
                env,
                tmp / "daphne.log",
            )
        )
        wait_for_port(panel_port, tmp / "daphne.log")
        httpx.get(f"{panel_url}/login/", timeout=10).raise_for_status()
        running.enter_context(process(daemon, env, tmp / "daemon.log"))
        wait_for_port(daemon_port, tmp / "daemon.log")
        directory = install_flood(node, public_id, data_dir)
        yield Panel(
            panel_url, cookie, Node.objects.get(pk=node.pk), public_id, directory
        )


# The report.


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def report(rounds: list[Round], load: tuple[float, float, float]) -> bool:
    """Print the table; True when every target that applies is met."""
    print(
        "\nConsole lines through the panel vs straight from the daemon; "
        "lines/s per client, latency in ms (received - written), added = panel "
        "- direct"
    )
    print(
        f"{os.cpu_count()} CPUs, load average {load[0]:.2f} / {load[1]:.2f} / "
        f"{load[2]:.2f} before the rounds\n"
    )
    row = "  {:>7}{:>10}{:>10}{:>7}{:>16}{:>18}{:>18}{:>7}  {}"
    print(
        row.format(
            "viewers",
            "direct/s",
            "panel/s",
            "ratio",
            "direct p50/99",
            "panel p50/99",
            "added p50/99",
            "lost",
            "target",
        )
    )
    verdicts: list[bool] = []
    for r in rounds:
        direct = r.direct
        rate = sum(p.rate for p in r.panel) / len(r.panel)
        ratio = rate / direct.rate if direct.rate else 0.0
        panel_ms = [ms for p in r.panel for ms in p.latencies_ms]
        d50, d99 = (percentile(direct.latencies_ms, q) for q in (0.5, 0.99))
        p50, p99 = (percentile(panel_ms, q) for q in (0.5, 0.99))
        lost = sum(r.lines - p.seen for p in r.panel)
        verdict = "—"
        if r.viewers == 1:
            ok = ratio >= TARGET_RATIO and not lost
            verdict = f"ratio >= {TARGET_RATIO}: {'met' if ok else 'MISSED'}"
            verdicts.append(ok)
        elif r.viewers == 100:
            ok = p99 - d99 < TARGET_ADDED_P99_MS and not lost
            verdict = f"added p99 < {TARGET_ADDED_P99_MS:.0f} ms: "
            verdict += "met" if ok else "MISSED"
            verdicts.append(ok)
        print(
            row.format(
                r.viewers,
                f"{direct.rate:,.0f}",
                f"{rate:,.0f}",
                f"{ratio:.2f}",
                f"{d50:.1f}/{d99:.1f}",
                f"{p50:.1f}/{p99:.1f}",
                f"{p50 - d50:.1f}/{p99 - d99:.1f}",
                f"{lost:,}",
                verdict,
            )
        )
        if notes := remarks(r):
            print(f"  {'':>7}  NB: {'; '.join(notes)}")
    if not verdicts:
        print("\nNo target applies at these viewer counts.")
    else:
        met = all(verdicts)
        print(f"\n{'All targets met.' if met else 'Some targets were missed.'}")
    return all(verdicts)


def remarks(r: Round) -> list[str]:
    """What went wrong in a round, besides the figures."""
    notes = []
    if r.direct.seen < r.lines:
        notes.append(f"direct lost {r.lines - r.direct.seen:,}")
    if r.direct.closed:
        notes.append(f"direct socket closed ({r.direct.closed})")
    if closed := sum(bool(p.closed) for p in r.panel):
        notes.append(f"{closed} viewer socket(s) closed early")
    if short := sum(not p.got_last for p in r.panel):
        notes.append(f"{short} viewer(s) never saw the last line")
    return notes


def raise_open_files() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 65536
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(wanted, 65536)), hard))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="a quick run, for CI")
    parser.add_argument(
        "--viewers",
        type=int,
        nargs="+",
        metavar="N",
        help="the viewer counts to measure (default: 1 10 100, or 1 10 with --small)",
    )
    parser.add_argument(
        "--lines",
        type=int,
        metavar="N",
        help=f"console lines a round (default: {FULL_LINES:,}, {SMALL_LINES:,} "
        "with --small)",
    )
    args = parser.parse_args(argv)
    small = args.small
    lines = args.lines or (SMALL_LINES if small else FULL_LINES)
    viewers = tuple(args.viewers or (SMALL_VIEWERS if small else FULL_VIEWERS))
    raise_open_files()

    with tempfile.TemporaryDirectory(prefix="stellarpanel-console-") as name:
        print(f"StellarPanel console benchmark in {name}", flush=True)
        load = os.getloadavg()
        try:
            with stack(Path(name)) as panel:
                print(f"Panel at {panel.url}, server {panel.server}", flush=True)
                rounds = asyncio.run(run_rounds(panel, viewers, small, lines))
        except Exception:
            print("\nThe benchmark could not finish:")
            traceback.print_exc(file=sys.stdout)
            return 0
    report(rounds, load)
    return 0


if __name__ == "__main__":
    sys.exit(main())
