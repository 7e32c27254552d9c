"""What a heartbeat sweep costs against a bare HTTP loop over the same daemons.

    uv run python benchmarks/heartbeat.py [--nodes 1000] [--small]
        [--timeout 2] [--concurrency 100]

N simulated daemons listen on loopback. Nine in ten are served by one aiohttp
process on ports of their own, and answer GET /api/system with a valid body;
they do not check the panel's signature. One in ten never answers: this process
holds a listening socket for it that it never accepts on, so connecting works and
the request then waits out its timeout.

It works in a throwaway database, as benchmarks/capacity.py does: a temporary
SQLite file, or, when DATABASE_URL is postgres://…/NAME, a database
NAME_heartbeat_bench that it creates and drops. It measures, in the same run:

- the panel's `run_sweep()` over N nodes: wall time (database reads and writes
  included), its queries, and its peak memory (tracemalloc, in a second sweep so
  that tracing does not slow the timed one; and the growth of the maximum RSS);
- a bare loop: asyncio and one httpx.AsyncClient, GETs to the same URLs with the
  same concurrency and timeout; no signing, no SSRF check, no database;
- the queries of a sweep over N/10 nodes, to compare with those over N.

The sweep meets its target when it takes at most 1.5 times the bare loop plus
one timeout. --small runs 100 nodes, for a smoke test in CI.
"""

import argparse
import asyncio
import ipaddress
import logging
import math
import multiprocessing
import os
import platform
import resource
import socket
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import django
import httpx
from aiohttp import web
from throwaway import throwaway_database

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stellarpanel.settings")

FULL_NODES = 1000
SMALL_NODES = 100
SILENT_EVERY = 10  # every tenth node never answers
BACKLOG = 64  # every sweep leaves a connection queued on each silent socket
GB = 2**30
MACHINE = {
    "version": "0.0.0-bench",
    "os": "linux",
    "architecture": platform.machine(),
    "kernel_version": platform.release(),
    "cpu_count": 8,
    "memory_bytes": 32 * GB,
    "disk_bytes": 512 * GB,
    "server_count": 0,
}


@dataclass(frozen=True)
class SweepFigures:
    nodes: int
    seconds: float
    outcomes: Counter[str]
    queries: Counter[str]  # by the statement's first word
    sql_seconds: float
    changes: int
    max_rss_growth: int  # bytes


@dataclass(frozen=True)
class BareFigures:
    seconds: float
    outcomes: Counter[str]


# The simulated daemons.


def raise_file_limit() -> int:
    """Lift this process's open-file limit (and its children's) to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return wanted


def loopback_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


async def system(request: web.Request) -> web.Response:
    return web.json_response(MACHINE | {"time": time.time()})


def serve_daemons(count: int, pipe: Connection) -> None:
    """The daemons' process: send the ports, serve until the pipe closes."""
    asyncio.run(_serve_daemons(count, pipe))


async def _serve_daemons(count: int, pipe: Connection) -> None:
    app = web.Application()
    app.router.add_get("/api/system", system)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    ports = []
    # A SockSite is a TCPSite on a socket bound here, so the ports the system
    # picked can be told to the benchmark without a race for them.
    for _ in range(count):
        sock = loopback_socket()
        await web.SockSite(runner, sock, backlog=BACKLOG).start()
        ports.append(sock.getsockname()[1])
    pipe.send(ports)

    # The benchmark closes its end when it is done, or when it dies.
    await asyncio.to_thread(_wait_for_eof, pipe)
    await runner.cleanup()


def _wait_for_eof(pipe: Connection) -> None:
    with suppress(EOFError):
        pipe.recv()


@contextmanager
def simulated_daemons(nodes: int) -> Iterator[list[int]]:
    """The ports of `nodes` daemons, one in SILENT_EVERY never answering."""
    silent = [loopback_socket() for _ in range(nodes // SILENT_EVERY)]
    for sock in silent:
        sock.listen(BACKLOG)  # and no accept(), ever

    # A process of its own, so the daemons do not compete for this one's GIL.
    spawn = multiprocessing.get_context("spawn")
    ours, theirs = spawn.Pipe()
    server = spawn.Process(
        target=serve_daemons, args=(nodes - len(silent), theirs), daemon=True
    )
    server.start()
    theirs.close()
    try:
        if not ours.poll(60):
            raise RuntimeError("the simulated daemons did not start in 60 s")
        answering = iter(ours.recv())
        silent_ports = iter(sock.getsockname()[1] for sock in silent)
        yield [next(silent_ports if is_silent(i) else answering) for i in range(nodes)]
    finally:
        ours.close()
        server.join(timeout=10)
        if server.is_alive():
            server.kill()
            server.join()
        for sock in silent:
            sock.close()


def is_silent(index: int) -> bool:
    return index % SILENT_EVERY == SILENT_EVERY - 1


# The database.


def replace_nodes(ports: list[int]) -> None:
    """Make the nodes one a port, in place of any before, all offline."""
    from nodes.models import MB_PER_GB, Node

    Node.objects.all().delete()
    nodes = []
    for i, port in enumerate(ports):
        node = Node(
            name=f"node-{i:05}",
            host="127.0.0.1",
            port=port,
            protocol=Node.Protocol.HTTP,
            cpu_cores=8,
            memory_mb=32 * MB_PER_GB,
            disk_mb=512 * MB_PER_GB,
        )
        node.set_new_token()
        nodes.append(node)
    Node.objects.bulk_create(nodes, batch_size=500)


# The measures.


def max_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def measure_sweep(ports: list[int]) -> SweepFigures:
    """Sweep nodes fresh from the database, timed, its queries counted."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from nodes.heartbeat import run_sweep
    from nodes.models import NodeStatusChange

    replace_nodes(ports)
    rss = max_rss()
    with CaptureQueriesContext(connection) as captured:
        started = time.perf_counter()
        results = run_sweep()
        seconds = time.perf_counter() - started
    return SweepFigures(
        nodes=len(ports),
        seconds=seconds,
        outcomes=Counter("online" if r.online else r.category for r in results),
        queries=Counter(statement_kind(q["sql"]) for q in captured),
        sql_seconds=sum(float(q["time"]) for q in captured),
        changes=NodeStatusChange.objects.count(),
        max_rss_growth=max_rss() - rss,
    )


def traced_peak() -> int:
    """The peak of the memory a sweep allocates, in bytes, by tracemalloc."""
    from nodes.heartbeat import run_sweep

    tracemalloc.start()
    try:
        run_sweep()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


async def bare_loop(urls: list[str], timeout: float, concurrency: int) -> Counter[str]:
    """GET every URL, `concurrency` at a time, each within `timeout` seconds."""
    seats = asyncio.Semaphore(concurrency)

    async def get(url: str) -> str:
        async with seats:
            try:
                response = await client.get(url)
            except httpx.TimeoutException:
                return "timeout"
            except httpx.HTTPError:
                return "error"
        return "online" if response.is_success else "error"

    # Every URL is another daemon, so no connection would be used twice; as in
    # the panel's client, none is kept, which also keeps httpx's pool short.
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=0)
    async with httpx.AsyncClient(
        timeout=timeout, limits=limits, trust_env=False
    ) as client:
        return Counter(await asyncio.gather(*(get(url) for url in urls)))


def measure_bare(ports: list[int], timeout: float, concurrency: int) -> BareFigures:
    urls = [f"http://127.0.0.1:{port}/api/system" for port in ports]
    started = time.perf_counter()
    outcomes = asyncio.run(bare_loop(urls, timeout, concurrency))
    return BareFigures(time.perf_counter() - started, outcomes)


# The report.


def statement_kind(sql: str) -> str:
    """The statement's first word; Django logs an executemany as "N times SQL"."""
    words = sql.split(None, 3)
    if len(words) > 2 and words[1] in ("times", "times:") and words[0].isdigit():
        return f"{words[2].upper()} (executemany)"
    return words[0].upper()


def describe(outcomes: Counter[str]) -> str:
    return ", ".join(f"{count:,} {what}" for what, count in outcomes.most_common())


def mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def batched_writes(figures: SweepFigures) -> Counter[str]:
    """The writes a sweep should make: an UPDATE and an INSERT a batch."""
    from nodes.heartbeat import BATCH_SIZE

    return Counter(
        UPDATE=math.ceil(figures.nodes / BATCH_SIZE),
        INSERT=math.ceil(figures.changes / BATCH_SIZE),
    )


def compare_queries(small: SweepFigures, full: SweepFigures) -> str:
    if small.queries == full.queries:
        return "the same"
    batched = all(
        figures.queries[kind] == count
        for figures in (small, full)
        for kind, count in batched_writes(figures).items()
    )
    others = [f.queries - batched_writes(f) for f in (small, full)]
    if batched and others[0] == others[1]:
        return "the same but for one UPDATE and one INSERT a batch of nodes"
    return "NOT the same: they grow with the nodes"


def query_row(figures: SweepFigures) -> str:
    kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(figures.queries.items()))
    return (
        f"  {figures.nodes:>7,} nodes  {figures.queries.total():>3} queries  "
        f"{figures.sql_seconds:6.3f} s in SQL  ({kinds})"
    )


def report_times(sweep: SweepFigures, bare: BareFigures, timeout: float) -> None:
    nodes = sweep.nodes
    silent = nodes // SILENT_EVERY
    target = 1.5 * bare.seconds + timeout
    verdict = "meets target" if sweep.seconds <= target else "misses target"

    row = "  {:>7}{:>11}{:>8}{:>11}{:>9}{:>8}{:>12}{:>10}  {}"
    heads = ["nodes", "answering", "silent", "timeout s", "sweep s", "bare s"]
    print(row.format(*heads, "sweep/bare", "target s", ""))
    print(
        row.format(
            f"{nodes:,}",
            f"{nodes - silent:,}",
            f"{silent:,}",
            f"{timeout:g}",
            f"{sweep.seconds:.2f}",
            f"{bare.seconds:.2f}",
            f"{sweep.seconds / bare.seconds:.2f}",
            f"{target:.2f}",
            verdict,
        )
    )
    print(
        f"\n  the target is 1.5 x the bare loop + one timeout: the sweep {verdict} "
        f"({sweep.seconds:.2f} s against {target:.2f} s)"
    )
    print(f"  sweep:     {describe(sweep.outcomes)}")
    print(f"  bare loop: {describe(bare.outcomes)}")


def report_queries(small: SweepFigures, full: SweepFigures) -> None:
    print(
        f"\nQueries per sweep, the first over fresh nodes ({small.changes:,} and "
        f"{full.changes:,} status changes)"
    )
    print(query_row(small))
    print(query_row(full))
    verdict = compare_queries(small, full)
    print(f"  queries per sweep at {small.nodes:,} and {full.nodes:,} nodes: {verdict}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=FULL_NODES)
    parser.add_argument("--small", action="store_true", help="100 nodes, for CI")
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds")
    parser.add_argument(
        "--concurrency", type=int, help="default: HEARTBEAT_CONCURRENCY"
    )
    args = parser.parse_args(argv)
    nodes = SMALL_NODES if args.small else args.nodes
    if nodes < SILENT_EVERY:
        parser.error(f"--nodes must be at least {SILENT_EVERY}")

    django.setup()
    from django.conf import settings
    from django.db import connection
    from django.test import override_settings

    concurrency = args.concurrency or settings.HEARTBEAT_CONCURRENCY
    # Each node is a socket here or in the daemons' process, and each request one
    # more on both sides.
    files = raise_file_limit()
    if files < nodes + 2 * concurrency + 100:
        print(f"{nodes:,} nodes need more open files than the limit, {files:,}.")
        return 1
    # A line a node that goes online would bury the figures.
    logging.getLogger("nodes.heartbeat").setLevel(logging.WARNING)

    loopback = [ipaddress.ip_network("127.0.0.0/8")]
    with (
        simulated_daemons(nodes) as ports,
        throwaway_database("heartbeat_bench") as name,
        override_settings(
            DAEMON_ALLOWED_NETWORKS=loopback,
            HEARTBEAT_TIMEOUT=args.timeout,
            HEARTBEAT_CONCURRENCY=concurrency,
        ),
    ):
        print(f"Working in the throwaway database {name}", flush=True)
        # The small sweep also warms up what the first one pays for.
        small = measure_sweep(ports[: nodes // SILENT_EVERY])
        sweep = measure_sweep(ports)
        bare = measure_bare(ports, args.timeout, concurrency)
        peak = traced_peak()
        vendor = connection.vendor

    print(
        f"\nStellarPanel heartbeat benchmark on {vendor}: timeout {args.timeout:g} s, "
        f"concurrency {concurrency}\n"
    )
    report_times(sweep, bare, args.timeout)
    report_queries(small, sweep)
    print(
        f"\nPeak memory of a sweep of {nodes:,} nodes: {mib(peak)} traced "
        f"(tracemalloc), maximum RSS grew by {mib(sweep.max_rss_growth)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
