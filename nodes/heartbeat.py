"""The heartbeat: ping every node's daemon at once, and record what changed.

A sweep is two steps. `sweep` pings the nodes concurrently on one shared HTTP
client, each within its own timeout, so a thousand dead nodes cost about one timeout
(times nodes / concurrency), not a thousand. `record` writes the answers in a
constant number of queries: one UPDATE a batch of nodes, one INSERT of the status
changes. `run_sweep` runs both, once at a time across panel processes on PostgreSQL.
"""

import asyncio
import logging
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TextIO

import httpx
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from nodes.consumers import GROUP
from nodes.daemon import DaemonError, Ping, async_client, ping
from nodes.models import Node, NodeStatusChange

logger = logging.getLogger(__name__)

# The key of the PostgreSQL advisory lock that lets one panel process sweep at a
# time: "stellar" in ASCII, so it reads as ours in pg_locks.
SWEEP_LOCK_KEY = 0x7374656C6C6172
BATCH_SIZE = 500
HEARTBEAT_FIELDS = [
    "status",
    "latency_ms",
    "latency_history",
    "last_heartbeat",
    "last_error_category",
    "last_error",
    "clock_offset_s",
    "daemon_info",
]


@dataclass(frozen=True)
class Result:
    """One node's heartbeat: the daemon's answer, or why there was none.

    `category` is the DaemonError's, or "internal" when the panel itself failed.
    """

    node: Node
    when: datetime
    ping: Ping | None = None
    category: str = ""
    message: str = ""

    @property
    def online(self) -> bool:
        return self.ping is not None

    def record(self) -> NodeStatusChange | None:
        """Apply the heartbeat to the node (unsaved); return its status change."""
        if self.ping is not None:
            return self.node.record_answer(self.ping, self.when)
        return self.node.record_failure(self.category, self.message, self.when)

    def describe(self) -> str:
        if self.ping is not None:
            return f"online   {round(self.ping.latency_ms)} ms"
        return f"offline  {self.category}: {self.message}"


async def _heartbeat(node: Node, client: httpx.AsyncClient, timeout: float) -> Result:
    try:
        answer = await ping(node, client, timeout)
    except DaemonError as e:
        return Result(node, timezone.now(), category=e.category, message=e.message)
    except Exception as e:
        # A failure of the panel, not of the node: say so, and sweep on.
        logger.exception("heartbeat of node %s failed in the panel", node)
        message = f"The panel failed to ping the daemon ({type(e).__name__})."
        return Result(node, timezone.now(), category="internal", message=message)
    return Result(node, timezone.now(), ping=answer)


async def sweep(
    nodes: Iterable[Node], *, timeout: float, concurrency: int
) -> list[Result]:
    """Ping every node, `concurrency` at a time, each within `timeout` seconds.

    Never raises for a node's failure: its result says what went wrong.
    """
    seats = asyncio.Semaphore(concurrency)

    async def heartbeat(node: Node) -> Result:
        async with seats:
            return await _heartbeat(node, client, timeout)

    async with async_client(max_connections=concurrency) as client:
        return list(await asyncio.gather(*(heartbeat(node) for node in nodes)))


def record(results: list[Result]) -> list[NodeStatusChange]:
    """Write the heartbeats and the status changes they make; return the changes."""
    changes: list[NodeStatusChange] = []
    nodes: list[Node] = []
    with transaction.atomic():
        # Read status and history again, locked: a node deleted during the sweep is
        # skipped, and a change is recorded once even if another sweep wrote since.
        current = {
            pk: (status, history)
            for pk, status, history in Node.objects.select_for_update()
            .order_by("pk")
            .values_list("pk", "status", "latency_history")
        }
        for result in results:
            node = result.node
            if node.pk not in current:
                continue
            node.status, node.latency_history = current[node.pk]
            change = result.record()
            nodes.append(node)
            if change is not None:
                changes.append(change)
        _update(nodes)
        NodeStatusChange.objects.bulk_create(changes, batch_size=BATCH_SIZE)
    return changes


def _update(nodes: list[Node]) -> None:
    """Write the heartbeat fields of every node in one statement, run per node.

    bulk_update builds a CASE per field per node, which costs seconds of Python at
    a thousand nodes; one prepared UPDATE run with executemany costs milliseconds.
    """
    if not nodes:
        return
    fields = [Node._meta.get_field(name) for name in HEARTBEAT_FIELDS]
    assignments = ", ".join(
        f"{connection.ops.quote_name(f.column)} = %s" for f in fields
    )
    table = connection.ops.quote_name(Node._meta.db_table)
    rows = [
        [f.get_db_prep_save(getattr(node, f.attname), connection) for f in fields]
        + [node.pk]
        for node in nodes
    ]
    with connection.cursor() as cursor:
        cursor.executemany(f"UPDATE {table} SET {assignments} WHERE id = %s", rows)


@contextmanager
def _sweep_lock() -> Iterator[bool]:
    """Whether this process may sweep now: one at a time on PostgreSQL.

    NB: SQLite is one panel process, so it needs no lock. The PostgreSQL lock
    belongs to this connection's session; if the connection dies, it goes too.
    """
    if connection.vendor != "postgresql":
        yield True
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [SWEEP_LOCK_KEY])
        (held,) = cursor.fetchone()
    try:
        yield held
    finally:
        if held:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [SWEEP_LOCK_KEY])


def run_sweep(stdout: TextIO | None = None) -> list[Result]:
    """Ping every node and record the answers; say so on `stdout` when given.

    Runs its own event loop: call it from a thread without one (the scheduler's,
    a management command), never from inside Daphne's.
    """
    with _sweep_lock() as held:
        if not held:
            logger.debug("another panel process is sweeping; this one skips")
            if stdout is not None:
                stdout.write("Another panel process is sweeping; skipped.\n")
            return []
        started = time.monotonic()
        nodes = list(Node.objects.all())
        results = asyncio.run(
            sweep(
                nodes,
                timeout=settings.HEARTBEAT_TIMEOUT,
                concurrency=settings.HEARTBEAT_CONCURRENCY,
            )
        )
        changes = record(results)

    publish(results)
    for change in changes:
        if change.new == Node.Status.ONLINE:
            logger.info("node %s went online", change.node)
        else:
            logger.info("node %s went offline: %s", change.node, change.message)
    if stdout is not None:
        _report(results, changes, time.monotonic() - started, stdout)
    return results


def status_of(node: Node) -> dict[str, object]:
    """A node's status as the live pages take it (see nodes.consumers)."""
    return {
        "id": node.pk,
        "status": node.status,
        "latency_ms": node.latency_ms,
        "slow": node.is_slow,
        "reason": node.last_error_category,
        "last_heartbeat": node.last_heartbeat and node.last_heartbeat.isoformat(),
    }


def publish(results: list[Result]) -> None:
    """Tell the admins' open pages what the sweep found, BATCH_SIZE nodes a message.

    A channel layer that fails costs the live pages one update, never the sweep.
    NB: the in-memory layer (no REDIS_URL) reaches only this process's sockets.
    """
    statuses = [status_of(result.node) for result in results]
    try:
        send = async_to_sync(get_channel_layer().group_send)
        for start in range(0, len(statuses), BATCH_SIZE):
            batch = statuses[start : start + BATCH_SIZE]
            send(GROUP, {"type": "node.status", "nodes": batch})
    except Exception:
        logger.exception("the heartbeat could not publish the nodes' status")


def _report(
    results: list[Result],
    changes: list[NodeStatusChange],
    seconds: float,
    stdout: TextIO,
) -> None:
    width = max((len(r.node.name) for r in results), default=0)
    for result in results:
        stdout.write(f"{result.node.name:<{width}}  {result.describe()}\n")
    online = sum(r.online for r in results)
    stdout.write(
        f"{len(results)} node{'' if len(results) == 1 else 's'}: {online} online, "
        f"{len(results) - online} offline, {len(changes)} changed, "
        f"in {seconds:.1f} s.\n"
    )
