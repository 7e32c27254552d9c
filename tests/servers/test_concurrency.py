"""Concurrent writers against the capacity triggers, on PostgreSQL.

SQLite has one writer at a time, so only PostgreSQL can let two transactions slip
under a node's limit together; there the trigger locks the node row first. Each
thread has its own connection and transaction, and the threads are released
together by a barrier.
"""

import threading
import time
from collections import Counter
from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.db import IntegrityError, connection, transaction

from nodes.models import Allocation, Node, Resources
from servers.models import Server
from tests.conftest import make_node

pytestmark = [
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="SQLite serializes writers; the race needs PostgreSQL",
    ),
    pytest.mark.django_db(transaction=True),
]

THREADS = 32
FITS = 10
IP = "203.0.113.10"


def race(attempt: Callable[[int], None], count: int = THREADS) -> Counter:
    """Run attempt(i) in count threads at once, each in its own transaction."""
    barrier = threading.Barrier(count)
    outcomes: list[str] = [""] * count

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            with transaction.atomic():
                attempt(i)
            outcomes[i] = "created"
        except IntegrityError as e:
            full = "stellar: node capacity" in str(e)
            outcomes[i] = "full" if full else f"IntegrityError: {e}"
        except Exception as e:
            outcomes[i] = f"{type(e).__name__}: {e}"
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    return Counter(outcomes)


@pytest.fixture
def node(db) -> Node:
    """Room for exactly ten servers of one core, 1 GB of memory, 2 GB of disk."""
    return make_node(
        "alpha", cpu_cores=FITS, memory_mb=FITS * 1024, disk_mb=FITS * 2048
    )


def create_server(node: Node, owner: User, i: int) -> Server:
    return Server.objects.create(
        name=f"s{i}", owner=owner, node=node, cpu=100, memory_mb=1024, disk_mb=2048
    )


def usage(node: Node) -> Resources:
    return Node.objects.with_usage().get(pk=node.pk).usage()


class TestConcurrentCreation:
    def test_it_lets_exactly_as_many_servers_in_as_fit(
        self, node: Node, owner: User
    ) -> None:
        outcomes = race(lambda i: create_server(node, owner, i))

        # Ten got in, the others were refused by the trigger, and nothing else.
        assert outcomes == {"created": FITS, "full": THREADS - FITS}
        assert Server.objects.filter(node=node).count() == FITS
        assert usage(node) == node.limits

    def test_it_assigns_allocations_only_to_servers_that_got_in(
        self, node: Node, owner: User
    ) -> None:
        allocations = Allocation.objects.bulk_create(
            Allocation(node=node, ip=IP, port=25565 + i) for i in range(THREADS)
        )

        def attempt(i: int) -> None:
            server = create_server(node, owner, i)
            free = Allocation.objects.filter(pk=allocations[i].pk, server=None)
            assert free.update(server=server, is_primary=True) == 1

        outcomes = race(attempt)
        assert outcomes == {"created": FITS, "full": THREADS - FITS}

        # Each server that got in has its allocation; the rest stayed free.
        servers = set(Server.objects.filter(node=node).values_list("pk", flat=True))
        assigned = Allocation.objects.filter(server__isnull=False)
        assert set(assigned.values_list("server", flat=True)) == servers
        assert assigned.count() == FITS
        assert Allocation.objects.count() == THREADS
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM nodes_allocation a"
                " LEFT JOIN servers_server s ON s.id = a.server_id"
                " WHERE a.server_id IS NOT NULL AND s.id IS NULL"
            )
            assert cursor.fetchone() == (0,)
        assert usage(node) == node.limits


def waiting_on_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0] > 0


class TestConcurrentMove:
    def test_it_keeps_an_allocation_on_its_server_node(
        self, node: Node, owner: User
    ) -> None:
        beta = make_node("beta", host="203.0.113.11")
        server = create_server(node, owner, 0)
        allocation = Allocation.objects.create(node=node, ip=IP, port=25565)
        assigned, moved, commit = (threading.Event() for _ in range(3))
        outcomes: list[str] = []

        def assign() -> None:
            try:
                with transaction.atomic():
                    free = Allocation.objects.filter(pk=allocation.pk, server=None)
                    free.update(server=server)
                    assigned.set()
                    commit.wait(timeout=30)
                outcomes.append("assigned")
            except IntegrityError as e:
                outcomes.append(f"assign refused: {e}")
            finally:
                assigned.set()
                connection.close()

        def move() -> None:
            try:
                with transaction.atomic():
                    Server.objects.filter(pk=server.pk).update(node=beta)
                outcomes.append("moved")
            except IntegrityError as e:
                outcomes.append(f"move refused: {e}")
            finally:
                moved.set()
                connection.close()

        # The move starts while the assignment is not yet committed; the
        # assignment commits once the move is done or waits for it.
        assigner = threading.Thread(target=assign)
        assigner.start()
        assert assigned.wait(timeout=10)
        mover = threading.Thread(target=move)
        mover.start()
        deadline = time.monotonic() + 30
        while not moved.wait(timeout=0.01) and time.monotonic() < deadline:
            if waiting_on_a_lock():
                break
        commit.set()
        for thread in (assigner, mover):
            thread.join(timeout=30)

        # The allocation is free or on its server's node; one of the two lost.
        allocation.refresh_from_db()
        server.refresh_from_db()
        assert allocation.server_id is None or server.node_id == allocation.node_id
        assert len(outcomes) == 2
        assert len([o for o in outcomes if "refused" in o]) == 1
