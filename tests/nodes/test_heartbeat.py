"""The heartbeat against real daemons on loopback ports, not mocks.

A fake daemon is a small aiohttp app, served on an event loop in a background thread,
that answers `GET /api/system` as a test tells it to: well, slowly, with garbage, or
with a 401; or it is stopped, and its port refuses connections.

NB: the fake daemon does not check the panel's signature. Signing is tested with the
daemon client; here the subject is what the panel does with each kind of answer.
"""

import asyncio
import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from datetime import UTC, datetime, timedelta
from io import StringIO
from typing import Any

import pytest
from aiohttp import web
from apscheduler.schedulers.background import BackgroundScheduler
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection, connections
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from nodes.daemon import Ping
from nodes.heartbeat import SWEEP_LOCK_KEY, record, run_sweep, sweep
from nodes.models import MB_PER_GB, Node, NodeStatusChange
from stellarpanel import scheduler
from stellarpanel.environment import envint
from tests.conftest import make_node

TIMEOUT = 1  # HEARTBEAT_TIMEOUT in these tests, in seconds
GB = 2**30
MACHINE = {
    "version": "1.0.0-test",
    "os": "linux",
    "architecture": "x86_64",
    "kernel_version": "6.8.0-test",
    "cpu_count": 16,
    "memory_bytes": 64 * GB,
    "disk_bytes": 1024 * GB,
    "server_count": 0,
}


def loopback_socket(port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


@pytest.fixture
def closed_port() -> Iterator[Callable[[], int]]:
    """Ports of their own that refuse connections: bound, never listening."""
    held: list[socket.socket] = []

    def port() -> int:
        held.append(loopback_socket())
        return held[-1].getsockname()[1]

    yield port
    for sock in held:
        sock.close()


class FakeDaemon:
    """A daemon on one or more loopback ports that answers as `answer` says.

    answer: "system" (a valid answer), "slow" (after `delay_s`), "garbage" (HTML),
    "unauthorized" (401 with the protocol's error body).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, ports: int = 1) -> None:
        self.loop = loop
        self.ports = [0] * ports  # chosen by the system at the first start
        self.answer = "system"
        self.delay_s = 3 * TIMEOUT
        self.clock_offset_s = 0.0
        self.runner: web.AppRunner | None = None

    @property
    def port(self) -> int:
        return self.ports[0]

    async def system(self, request: web.Request) -> web.StreamResponse:
        if self.answer == "slow":
            await asyncio.sleep(self.delay_s)
        if self.answer == "garbage":
            return web.Response(text="<html>It works!</html>", content_type="text/html")
        if self.answer == "unauthorized":
            return web.json_response(
                {
                    "error": "unauthorized",
                    "message": "The timestamp is 75 s away from the daemon's clock.",
                },
                status=401,
            )
        return web.json_response(MACHINE | {"time": time.time() + self.clock_offset_s})

    def start(self) -> "FakeDaemon":
        self._call(self._start())
        return self

    def stop(self) -> None:
        if self.runner is not None:
            self._call(self.runner.cleanup())
            self.runner = None

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/api/system", self.system)
        # A handler still sleeping when the panel hangs up is cancelled.
        self.runner = web.AppRunner(
            app, handler_cancellation=True, shutdown_timeout=0.1, access_log=None
        )
        await self.runner.setup()
        for i, port in enumerate(self.ports):
            sock = loopback_socket(port)
            self.ports[i] = sock.getsockname()[1]
            await web.SockSite(self.runner, sock).start()

    def _call(self, coroutine: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=10)


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=5)
    loop.close()


@pytest.fixture
def daemons(loop: asyncio.AbstractEventLoop) -> Iterator[list[FakeDaemon]]:
    """Started fake daemons, stopped after the test: call `start_daemon`."""
    started: list[FakeDaemon] = []
    yield started
    for daemon in started:
        daemon.stop()


@pytest.fixture
def start_daemon(
    loop: asyncio.AbstractEventLoop, daemons: list[FakeDaemon]
) -> Callable[..., FakeDaemon]:
    def start(ports: int = 1) -> FakeDaemon:
        daemon = FakeDaemon(loop, ports)
        daemons.append(daemon)
        return daemon.start()

    return start


@pytest.fixture
def daemon(start_daemon: Callable[..., FakeDaemon]) -> FakeDaemon:
    return start_daemon()


@pytest.fixture(autouse=True)
def heartbeat_settings(settings: Any) -> None:
    settings.DAEMON_ALLOWED_NETWORKS = [ipaddress.ip_network("127.0.0.0/8")]
    settings.HEARTBEAT_TIMEOUT = TIMEOUT
    settings.HEARTBEAT_CONCURRENCY = 100


def node_at(port: int, name: str = "alpha", **fields) -> Node:
    values = {"host": "127.0.0.1", "port": port, "protocol": Node.Protocol.HTTP}
    return make_node(name, **(values | fields))


def changes(node: Node) -> list[tuple[str, str, str]]:
    rows = node.status_changes.order_by("created", "pk")
    return list(rows.values_list("old", "new", "reason"))


def a_ping(**fields) -> Ping:
    values = {
        "system": MACHINE | {"time": time.time()},
        "latency_ms": 12.4,
        "clock_offset_s": 0.0,
    }
    return Ping(**(values | fields))


@pytest.mark.django_db
class TestSweep:
    def test_it_marks_a_node_online_when_its_daemon_answers(
        self, daemon: FakeDaemon
    ) -> None:
        node = node_at(daemon.port)
        run_sweep()
        node.refresh_from_db()

        # The node is online, with the daemon's answer recorded
        assert node.status == Node.Status.ONLINE
        assert node.latency_ms is not None and 0 <= node.latency_ms < TIMEOUT * 1000
        assert node.latency_history == [node.latency_ms]
        assert node.last_heartbeat is not None
        assert (timezone.now() - node.last_heartbeat).total_seconds() < 5
        assert node.daemon_info == MACHINE
        assert abs(node.clock_offset_s) < 1
        assert node.last_error_category == node.last_error == ""
        # and the change is a row of its own
        assert changes(node) == [("offline", "online", "")]

    def test_it_marks_a_stopped_daemon_offline_and_a_restarted_one_online(
        self, daemon: FakeDaemon
    ) -> None:
        node = node_at(daemon.port)
        run_sweep()
        daemon.stop()
        run_sweep()
        node.refresh_from_db()

        # Offline, refused, with what the daemon last said kept
        assert node.status == Node.Status.OFFLINE
        assert node.last_error_category == "refused"
        assert "cannot be reached" in node.last_error
        assert node.latency_ms is None
        assert len(node.latency_history) == 1
        assert node.daemon_info == MACHINE
        assert changes(node)[-1] == ("online", "offline", "refused")

        daemon.start()
        run_sweep()
        node.refresh_from_db()

        # Online again, the history grows, the error is cleared
        assert node.status == Node.Status.ONLINE
        assert len(node.latency_history) == 2
        assert node.last_error_category == node.last_error == ""
        assert changes(node) == [
            ("offline", "online", ""),
            ("online", "offline", "refused"),
            ("offline", "online", ""),
        ]

    @pytest.mark.parametrize(
        ("answer", "category", "said"),
        [
            ("slow", "timeout", "within 1 seconds"),
            ("garbage", "bad_answer", "not JSON"),
            ("unauthorized", "unauthorized", "75 s away from the daemon's clock"),
        ],
    )
    def test_it_marks_a_daemon_that_answers_wrong_offline(
        self, daemon: FakeDaemon, answer: str, category: str, said: str
    ) -> None:
        node = node_at(daemon.port)
        run_sweep()
        daemon.answer = answer
        started = time.monotonic()
        run_sweep()
        elapsed = time.monotonic() - started
        node.refresh_from_db()

        # Offline, for the reason the answer gives
        assert node.status == Node.Status.OFFLINE
        assert node.last_error_category == category
        assert said in node.last_error
        assert changes(node)[-1] == ("online", "offline", category)
        assert node.status_changes.latest("created").message == node.last_error
        # and a slow daemon costs one timeout, not more
        assert elapsed < 2 * TIMEOUT

    def test_it_records_no_change_while_the_status_stays(
        self, daemon: FakeDaemon, closed_port: Callable[[], int]
    ) -> None:
        online = node_at(daemon.port)
        offline = node_at(closed_port(), "beta")
        for _ in range(3):
            run_sweep()

        # One row for the node that came online, none for the one never there
        assert changes(online) == [("offline", "online", "")]
        assert changes(offline) == []
        online.refresh_from_db()
        assert len(online.latency_history) == 3

    def test_it_logs_status_changes_only(
        self, daemon: FakeDaemon, caplog: pytest.LogCaptureFixture
    ) -> None:
        node_at(daemon.port)
        with caplog.at_level(logging.INFO, logger="nodes.heartbeat"):
            run_sweep()
            run_sweep()
            daemon.stop()
            run_sweep()

        messages = [
            r.getMessage() for r in caplog.records if r.name == "nodes.heartbeat"
        ]
        assert messages[0] == "node alpha went online"
        assert messages[1].startswith("node alpha went offline: The daemon at")
        assert len(messages) == 2

    def test_it_pings_all_nodes_at_once(
        self, start_daemon: Callable[..., FakeDaemon], closed_port: Callable[[], int]
    ) -> None:
        slow = start_daemon(ports=25)
        slow.answer = "slow"
        for i, port in enumerate(slow.ports):
            node_at(port, f"slow-{i:02}")
        for i in range(25):
            node_at(closed_port(), f"closed-{i:02}")
        started = time.monotonic()
        results = run_sweep()
        elapsed = time.monotonic() - started

        # 25 timeouts cost about one, and every node has its answer
        assert elapsed < 3 * TIMEOUT
        reasons = sorted(r.category for r in results)
        assert reasons == ["refused"] * 25 + ["timeout"] * 25
        assert not Node.objects.filter(status=Node.Status.ONLINE).exists()

    def test_it_makes_as_many_queries_for_many_nodes_as_for_few(
        self, start_daemon: Callable[..., FakeDaemon]
    ) -> None:
        daemon = start_daemon(ports=25)
        for i, port in enumerate(daemon.ports[:5]):
            node_at(port, f"node-{i:02}")
        with CaptureQueriesContext(connection) as few:
            assert len(run_sweep()) == 5
        for i, port in enumerate(daemon.ports[5:], start=5):
            node_at(port, f"node-{i:02}")
        with CaptureQueriesContext(connection) as many:
            assert len(run_sweep()) == 25

        # Both sweeps bring nodes online; the node count does not matter
        assert NodeStatusChange.objects.count() == 25
        assert len(many) == len(few), [q["sql"][:80] for q in many]

    def test_it_skips_a_node_deleted_during_the_sweep(
        self, daemon: FakeDaemon, closed_port: Callable[[], int]
    ) -> None:
        node = node_at(daemon.port)
        kept = node_at(closed_port(), "beta")
        nodes = list(Node.objects.all())
        results = asyncio.run(sweep(nodes, timeout=TIMEOUT, concurrency=10))
        node.delete()
        record(results)

        # The deleted node gets no status change; the other is written
        assert not NodeStatusChange.objects.exists()
        kept.refresh_from_db()
        assert kept.last_error_category == "refused"

    @pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="SQLite is one panel process; only PostgreSQL takes the lock",
    )
    def test_it_skips_while_another_process_sweeps(self, daemon: FakeDaemon) -> None:
        node = node_at(daemon.port)
        other = connections.create_connection("default")
        try:
            with other.cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_lock(%s)", [SWEEP_LOCK_KEY])
                assert cursor.fetchone()[0]
            out = StringIO()

            # The sweep skips and says so; the node is untouched
            assert run_sweep(stdout=out) == []
            assert "Another panel process is sweeping" in out.getvalue()
            node.refresh_from_db()
            assert node.last_heartbeat is None

            with other.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [SWEEP_LOCK_KEY])
        finally:
            other.close()

        # Once the lock is free, the sweep runs and lets it go after
        assert len(run_sweep()) == 1
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [SWEEP_LOCK_KEY])
            assert cursor.fetchone()[0]
            cursor.execute("SELECT pg_advisory_unlock(%s)", [SWEEP_LOCK_KEY])


@pytest.mark.django_db
class TestHeartbeatCommand:
    def test_it_prints_a_line_per_node_and_a_summary(
        self, daemon: FakeDaemon, closed_port: Callable[[], int]
    ) -> None:
        node_at(daemon.port, "alpha")
        node_at(closed_port(), "beta")
        out = StringIO()
        call_command("heartbeat", "--once", stdout=out)
        lines = out.getvalue().splitlines()

        assert lines[0].startswith("alpha  online   ")
        assert lines[0].endswith(" ms")
        assert lines[1].startswith("beta   offline  refused: The daemon at 127.0.0.1:")
        assert lines[2].startswith("2 nodes: 1 online, 1 offline, 1 changed, in ")


@pytest.mark.django_db
class TestUptime:
    def node(
        self, status: str = Node.Status.ONLINE, age: timedelta | None = None
    ) -> Node:
        node = make_node(status=status)
        node.created = timezone.now() - (age or timedelta(days=2))
        node.save(update_fields=["created"])
        return node

    def flip(self, node: Node, old: str, new: str, hours_ago: float) -> None:
        NodeStatusChange.objects.create(
            node=node,
            old=old,
            new=new,
            created=timezone.now() - timedelta(hours=hours_ago),
        )

    def test_it_counts_the_time_online_from_the_status_changes(self) -> None:
        node = self.node()
        self.flip(node, "offline", "online", hours_ago=20)
        self.flip(node, "online", "offline", hours_ago=8)
        self.flip(node, "offline", "online", hours_ago=2)

        # Online 20 h → 8 h ago and the last 2 h: 14 of 24 h
        assert node.uptime() == pytest.approx(14 / 24, abs=1e-3)
        assert node.uptime_percent() == 58.3

    def test_it_takes_the_time_before_the_first_change_as_what_it_left(
        self,
    ) -> None:
        node = self.node(Node.Status.OFFLINE)
        self.flip(node, "online", "offline", hours_ago=6)
        assert node.uptime() == pytest.approx(18 / 24, abs=1e-3)

    def test_it_ignores_changes_before_the_window(self) -> None:
        node = self.node()
        self.flip(node, "offline", "online", hours_ago=30)
        assert node.uptime() == 1.0

    def test_it_uses_the_status_when_nothing_changed(self) -> None:
        assert self.node(Node.Status.OFFLINE).uptime() == 0.0
        Node.objects.all().delete()
        assert self.node(Node.Status.ONLINE).uptime() == 1.0

    def test_it_counts_from_when_the_node_was_added(self) -> None:
        node = self.node(Node.Status.ONLINE, age=timedelta(hours=4))
        self.flip(node, "offline", "online", hours_ago=3)
        assert node.uptime() == pytest.approx(3 / 4, abs=1e-3)

    def test_it_takes_any_start(self) -> None:
        node = self.node()
        self.flip(node, "offline", "online", hours_ago=20)
        since = timezone.now() - timedelta(hours=40)
        assert node.uptime(since) == pytest.approx(20 / 40, abs=1e-3)


@pytest.mark.django_db
class TestWarnings:
    def test_it_has_none_for_a_healthy_node(self, daemon: FakeDaemon) -> None:
        node = node_at(daemon.port)
        run_sweep()
        node.refresh_from_db()
        assert node.warnings() == []

    @pytest.mark.parametrize(("offset", "way"), [(60, "ahead of"), (-60, "behind")])
    def test_it_warns_of_a_daemon_clock_off_by_more_than_30_s(
        self, daemon: FakeDaemon, offset: int, way: str
    ) -> None:
        daemon.clock_offset_s = offset
        node = node_at(daemon.port)
        run_sweep()
        node.refresh_from_db()

        assert node.clock_offset_s == pytest.approx(offset, abs=1)
        assert node.warnings() == [
            f"The daemon's clock is 60 s {way} the panel's. Past 60 s every signed "
            "request is refused: run NTP (chrony or systemd-timesyncd) on both "
            "machines."
        ]

    def test_it_warns_of_limits_beyond_the_machine(self, daemon: FakeDaemon) -> None:
        node = node_at(daemon.port, cpu_cores=32, disk_mb=2048 * MB_PER_GB)
        run_sweep()
        node.refresh_from_db()

        assert node.warnings() == [
            "The node may give servers 32 cores of CPU, but its machine has 16 "
            "cores: lower the node's limit to what the machine has.",
            "The node may give servers 2097152 MB of disk, but its machine has "
            "1048576 MB: lower the node's limit to what the machine has.",
        ]

    def test_it_warns_of_limits_that_leave_less_than_10_percent(self) -> None:
        node = make_node(memory_mb=60 * MB_PER_GB, cpu_cores=15)
        node.daemon_info = MACHINE
        warnings = node.warnings()

        assert len(warnings) == 2
        assert warnings[0].startswith("The node may give servers 15 cores of CPU of")
        assert "61440 MB of memory of its machine's 65536 MB" in warnings[1]
        assert warnings[1].endswith("less than 10% to the system and the daemon.")

    def test_it_warns_of_a_slow_daemon(self) -> None:
        node = make_node()
        node.record_answer(a_ping(latency_ms=120.4), timezone.now())
        assert node.is_slow
        assert node.warnings() == [
            "The daemon takes 120 ms to answer a heartbeat, over 50 ms: consoles "
            "and power actions will feel slow. Is the node far from the panel, or "
            "overloaded?"
        ]


@pytest.mark.django_db
class TestAdvice:
    @pytest.mark.parametrize(
        ("category", "says"),
        [
            ("refused", "a firewall rejects the connection"),
            ("refused", "uv run python -m devdaemon --config"),
            ("timeout", "the machine may be down"),
            ("dns", "does not resolve"),
            ("tls", "DAEMON_CA_BUNDLE"),
            ("unauthorized", "rotate the token"),
            ("unauthorized", "run NTP"),
            ("policy", "DAEMON_ALLOWED_NETWORKS"),
            ("bad_answer", "another web server, a reverse proxy"),
            ("not_found", "Its log on the node says why"),
        ],
    )
    def test_it_says_what_to_check_for_each_failure(
        self, category: str, says: str
    ) -> None:
        node = make_node(port=8443)
        node.record_failure(category, "It failed.", timezone.now())
        advice = " ".join(node.advice())
        assert says in advice
        assert "{" not in advice

    def test_it_names_the_port_that_refuses(self) -> None:
        node = make_node(port=8443)
        node.record_failure("refused", "It failed.", timezone.now())
        assert "port 8443" in node.advice()[0]

    def test_it_has_none_for_an_online_node(self) -> None:
        node = make_node()
        node.record_answer(a_ping(), timezone.now())
        assert node.advice() == []


@pytest.mark.django_db
class TestLatencyHistory:
    def test_it_keeps_the_last_60_latencies_newest_last(self) -> None:
        node = make_node()
        node.latency_history = list(range(60))
        node.record_answer(a_ping(latency_ms=99.6), timezone.now())
        assert node.latency_ms == 100
        assert node.latency_history == [*range(1, 60), 100]

    def test_it_draws_the_history_as_polyline_points(self) -> None:
        node = make_node(latency_history=[10, 20, 40])
        assert node.latency_points() == "0.0,23.0 60.0,16.0 120.0,2.0"
        node.latency_history = [10]
        assert node.latency_points() == ""


@pytest.mark.django_db
class TestNodePages:
    def test_it_shows_the_heartbeat_on_the_node_page(
        self, admin_client: Client, daemon: FakeDaemon
    ) -> None:
        node = node_at(daemon.port)
        run_sweep()
        run_sweep()
        body = admin_client.get(f"/admin/nodes/{node.pk}/").content.decode()

        assert "answered " in body and " s ago" in body
        assert "<polyline points=" in body
        assert "1.0.0-test" in body and "6.8.0-test" in body
        assert "64.0\xa0GB" in body
        assert "over 24 h" in body
        assert "Status history" in body and "badge badge-online" in body
        assert "Troubleshooting" not in body

    def test_it_says_what_to_check_when_the_node_is_offline(
        self, admin_client: Client, daemon: FakeDaemon
    ) -> None:
        node = node_at(daemon.port)
        run_sweep()
        daemon.stop()
        run_sweep()
        body = admin_client.get(f"/admin/nodes/{node.pk}/").content.decode()

        assert "Troubleshooting" in body
        assert "cannot be reached" in body
        assert "a firewall rejects the connection" in body
        assert "As the daemon last answered." in body

    def test_it_shows_a_slow_latency_as_a_warning_in_the_list(
        self, admin_client: Client
    ) -> None:
        make_node("slow", latency_ms=120)
        make_node("fast", host="203.0.113.11", latency_ms=12)
        body = admin_client.get("/admin/nodes/").content.decode()
        assert body.count("latency-slow") == 1
        assert "120 ms" in body and "12 ms" in body


class TestHeartbeatSettings:
    def test_it_reads_a_whole_number(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("STELLARPANEL_TEST_NUMBER", " 45 ")
        assert envint("STELLARPANEL_TEST_NUMBER", 30, minimum=5) == 45
        monkeypatch.delenv("STELLARPANEL_TEST_NUMBER")
        assert envint("STELLARPANEL_TEST_NUMBER", 30) == 30

    @pytest.mark.parametrize(
        ("value", "says"),
        [
            ("thirty", "must be a whole number, not 'thirty'"),
            ("2", "must be at least 5, not 2"),
            ("4000", "must be at most 3600, not 4000"),
        ],
    )
    def test_it_refuses_a_number_it_cannot_use(
        self, monkeypatch: pytest.MonkeyPatch, value: str, says: str
    ) -> None:
        monkeypatch.setenv("STELLARPANEL_TEST_NUMBER", value)
        with pytest.raises(
            ImproperlyConfigured, match=f"STELLARPANEL_TEST_NUMBER {says}"
        ):
            envint("STELLARPANEL_TEST_NUMBER", 30, minimum=5, maximum=3600)


class TestScheduler:
    def test_it_sweeps_every_interval_one_sweep_at_a_time(self, settings: Any) -> None:
        settings.HEARTBEAT_INTERVAL = 45
        background = BackgroundScheduler(timezone=UTC)
        scheduler.add_heartbeat(background)
        job = background.get_job("heartbeat")

        assert job.func is scheduler.heartbeat
        assert job.trigger.interval == timedelta(seconds=45)
        assert job.max_instances == 1 and job.coalesce
        assert job.next_run_time - datetime.now(UTC) < timedelta(seconds=5)

    def test_it_starts_once_per_process(self) -> None:
        first = scheduler.start()
        try:
            assert scheduler.start() is first
            assert first.running
        finally:
            scheduler.stop()
        assert not first.running
