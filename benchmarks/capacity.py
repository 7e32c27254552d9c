"""What the capacity triggers cost, and how the node pages grow with the rows.

    uv run python benchmarks/capacity.py [--small]

It works in a throwaway database: a temporary SQLite file, or, when DATABASE_URL
is postgres://…/NAME, a database NAME_bench that it creates and drops. Every
figure is printed next to a baseline measured in the same run:

- server creation on one node, one insert a transaction, with the capacity
  triggers and with them dropped (the triggers are put back afterwards);
- the node list and a node's page at a small and a large size: the queries each
  request makes, and the median time of a few requests.

--small runs a quick version, for a smoke test in CI.
"""

import argparse
import importlib
import os
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import django
from throwaway import throwaway_database

if TYPE_CHECKING:
    from django.test import Client

    from nodes.models import Allocation, Node
    from servers.models import Server

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stellarpanel.settings")

# Per node in the page benchmark: servers that fill it exactly, twice as many
# allocations (a primary for each server, half as many additional, the rest free).
SERVERS_PER_NODE = 20
ALLOCATIONS_PER_NODE = 40


@dataclass(frozen=True)
class Plan:
    inserts: int
    rounds: int
    requests: int
    few_nodes: int
    many_nodes: int


FULL = Plan(inserts=2000, rounds=3, requests=20, few_nodes=5, many_nodes=500)
SMALL = Plan(inserts=200, rounds=1, requests=3, few_nodes=2, many_nodes=20)


@dataclass(frozen=True)
class PageFigures:
    queries: int
    median_ms: float


def capacity_triggers() -> tuple[list[str], list[str]]:
    """The statements that create and drop the capacity triggers here."""
    from django.db import connection

    migration = importlib.import_module("servers.migrations.0002_capacity_triggers")
    if connection.vendor == "sqlite":
        return migration.SQLITE, migration.SQLITE_REVERSE
    return migration.POSTGRESQL, migration.POSTGRESQL_REVERSE


def execute(statements: list[str]) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql)


def server_triggers() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(
                "SELECT count(*) FROM sqlite_master"
                " WHERE type = 'trigger' AND tbl_name = 'servers_server'"
            )
        else:
            cursor.execute(
                "SELECT count(*) FROM pg_trigger"
                " WHERE NOT tgisinternal AND tgrelid = 'servers_server'::regclass"
            )
        return cursor.fetchone()[0]


def make_node(name: str, host: str, servers: int, **fields: object) -> "Node":
    from nodes.models import MB_PER_GB, Node

    node = Node(
        name=name,
        host=host,
        cpu_cores=servers,
        memory_mb=servers * MB_PER_GB,
        disk_mb=servers * 10 * MB_PER_GB,
        **fields,
    )
    node.set_new_token()
    return node


@dataclass(frozen=True)
class Rates:
    """Servers created a second: over the run, its first tenth, its last tenth."""

    overall: float
    first: float
    last: float


def insert_rates(count: int) -> Rates:
    """Create count servers on a fresh node, one transaction each."""
    from django.contrib.auth.models import User
    from django.db import transaction

    from nodes.models import MB_PER_GB
    from servers.models import Server

    node = make_node("insert-bench", "insert-bench.example.net", count)
    node.save()
    owner = User.objects.get(username="bench-owner")
    tenth = max(count // 10, 1)
    marks = []
    for i in range(count):
        if i in (0, tenth, count - tenth):
            marks.append(time.perf_counter())
        with transaction.atomic():
            Server.objects.create(
                name=f"bench-{i}",
                owner=owner,
                node=node,
                cpu=100,
                memory_mb=MB_PER_GB,
                disk_mb=10 * MB_PER_GB,
            )
    marks.append(time.perf_counter())

    Server.objects.filter(node=node).delete()
    node.delete()
    start, first_done, last_start, end = marks
    return Rates(
        count / (end - start),
        tenth / (first_done - start),
        tenth / (end - last_start),
    )


def median_rates(rates: list[Rates]) -> Rates:
    return Rates(
        statistics.median(r.overall for r in rates),
        statistics.median(r.first for r in rates),
        statistics.median(r.last for r in rates),
    )


def measure_inserts(plan: Plan) -> tuple[Rates, Rates]:
    """Rates with the triggers and without them, medians of alternating rounds."""
    from django.contrib.auth.models import User

    create, drop = capacity_triggers()
    present = server_triggers()
    User.objects.create_user("bench-owner")
    insert_rates(min(50, plan.inserts))  # warm up caches and connections

    with_triggers, without = [], []
    for _ in range(plan.rounds):
        with_triggers.append(insert_rates(plan.inserts))
        execute(drop)
        if server_triggers() >= present:
            raise RuntimeError("the capacity triggers were not dropped")
        try:
            without.append(insert_rates(plan.inserts))
        finally:
            execute(create)
        if server_triggers() != present:
            raise RuntimeError("the capacity triggers did not come back")
    return median_rates(with_triggers), median_rates(without)


def seed(first: int, count: int) -> list["Node"]:
    """count nodes, each filled with servers and allocations, in bulk."""
    from django.contrib.auth.models import User

    from locations.models import Location
    from nodes.models import MB_PER_GB, Allocation, Node
    from servers.models import Server

    owners = list(User.objects.filter(username__startswith="owner-"))
    locations = list(Location.objects.all())
    nodes = Node.objects.bulk_create(
        make_node(
            f"node-{n:04}",
            f"node-{n}.example.net",
            SERVERS_PER_NODE,
            # One node in five has no location.
            location=locations[n % len(locations)] if n % 5 else None,
        )
        for n in range(first, first + count)
    )
    servers = Server.objects.bulk_create(
        (
            Server(
                name=f"server-{node.pk}-{s}",
                owner=owners[(node.pk + s) % len(owners)],
                node=node,
                cpu=100,
                memory_mb=MB_PER_GB,
                disk_mb=10 * MB_PER_GB,
                status=Server.Status.OFFLINE,
            )
            for node in nodes
            for s in range(SERVERS_PER_NODE)
        ),
        batch_size=1000,
    )
    Allocation.objects.bulk_create(allocations(servers), batch_size=2000)
    return nodes


def allocations(servers: list["Server"]) -> Iterator["Allocation"]:
    from nodes.models import Allocation

    by_node: dict[int, list[Server]] = {}
    for server in servers:
        by_node.setdefault(server.node_id, []).append(server)
    for node_id, on_node in by_node.items():
        ip = f"10.{node_id // 65536 % 256}.{node_id // 256 % 256}.{node_id % 256}"
        for i in range(ALLOCATIONS_PER_NODE):
            primary = i < len(on_node)
            additional = not primary and i < len(on_node) * 3 // 2
            yield Allocation(
                node_id=node_id,
                ip=ip,
                port=25565 + i,
                server=on_node[i % len(on_node)] if primary or additional else None,
                is_primary=primary,
            )


def page(client: "Client", url: str, requests: int) -> PageFigures:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.get(url)  # warm up the template cache
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    if response.status_code != 200:
        raise RuntimeError(f"{url} answered {response.status_code}")
    # Counted now: the next request empties the connection's query log.
    queries = len(captured)

    times = []
    for _ in range(requests):
        start = time.perf_counter()
        client.get(url)
        times.append(time.perf_counter() - start)
    return PageFigures(queries, statistics.median(times) * 1000)


def measure_pages(plan: Plan) -> dict[str, tuple[PageFigures, PageFigures]]:
    """The list and a node's page, with few nodes and then with many."""
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import User
    from django.test import Client

    from locations.models import Location

    unusable = make_password(None)
    User.objects.bulk_create(
        User(username=f"owner-{i}", password=unusable) for i in range(100)
    )
    Location.objects.bulk_create(
        Location(name=f"Region {i}", country="DE", city=f"City {i}") for i in range(8)
    )
    client = Client()
    client.force_login(User.objects.create_user("bench-admin", is_staff=True))

    # The node shown has as many servers and allocations at both sizes.
    first = seed(0, plan.few_nodes)[0]
    urls = {
        "/admin/nodes/": "/admin/nodes/",
        "/admin/nodes/<id>/": f"/admin/nodes/{first.pk}/",
    }
    few = {name: page(client, url, plan.requests) for name, url in urls.items()}
    seed(plan.few_nodes, plan.many_nodes - plan.few_nodes)
    many = {name: page(client, url, plan.requests) for name, url in urls.items()}
    return {name: (few[name], many[name]) for name in urls}


def size(nodes: int) -> str:
    return (
        f"{nodes:,} nodes, {nodes * SERVERS_PER_NODE:,} servers, "
        f"{nodes * ALLOCATIONS_PER_NODE:,} allocations"
    )


def report(
    plan: Plan,
    vendor: str,
    inserts: tuple[Rates, Rates],
    pages: dict[str, tuple[PageFigures, PageFigures]],
) -> None:
    with_triggers, without = inserts
    print(f"\nStellarPanel capacity benchmark on {vendor}")
    print(
        f"\nServer creation: {plan.inserts:,} servers on one node, one transaction "
        f"each; ops/s, median of {plan.rounds} round(s)\n"
    )
    row = "  {:<26}{:>10}{:>13}{:>13}"
    print(row.format("", "overall", "first tenth", "last tenth"))
    for name, rates in (("with the triggers", with_triggers), ("without", without)):
        print(row.format(name, *(f"{r:,.0f}" for r in astuple(rates))))
    pairs = zip(astuple(with_triggers), astuple(without), strict=True)
    ratios = (w / b for w, b in pairs)
    print(row.format("ratio, with / without", *(f"{r:.2f}" for r in ratios)))
    cost = 1e3 / with_triggers.overall - 1e3 / without.overall
    print(f"  the triggers add {cost:.3f} ms to an insert on average")

    print(
        f"\nNode pages; median of {plan.requests} requests\n"
        f"  small: {size(plan.few_nodes)}\n  large: {size(plan.many_nodes)}\n"
    )
    row = "  {:<20}{:>9}{:>9}{:>11}{:>11}{:>8}"
    print(row.format("", "queries", "queries", "median ms", "median ms", "time"))
    print(row.format("page", "small", "large", "small", "large", "ratio"))
    for name, (few, many) in pages.items():
        ratio = many.median_ms / few.median_ms
        print(
            row.format(
                name,
                few.queries,
                many.queries,
                f"{few.median_ms:.1f}",
                f"{many.median_ms:.1f}",
                f"{ratio:.1f}x",
            )
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="a quick run, for CI")
    plan = SMALL if parser.parse_args(argv).small else FULL

    django.setup()
    from django.db import connection

    with throwaway_database("bench") as name:
        print(f"Working in the throwaway database {name}", flush=True)
        inserts = measure_inserts(plan)
        pages = measure_pages(plan)
    report(plan, connection.vendor, inserts, pages)
    return 0


if __name__ == "__main__":
    sys.exit(main())
