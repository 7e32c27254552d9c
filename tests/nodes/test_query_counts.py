"""The node pages make as many queries for many rows as for few."""

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from locations.models import Location
from nodes.models import Allocation, Node
from servers.models import Server
from tests.conftest import make_node, make_user

pytestmark = pytest.mark.django_db


def seed(first: int, nodes: int, servers: int, allocations: int) -> list[Node]:
    """Nodes with servers of their own owners, and allocations of three kinds.

    Each server has a primary allocation; half as many again are additional
    ones, and the rest are free. Every other node has a location.
    """
    location = Location.objects.create(name=f"Region {first}", country="DE")
    made = []
    for n in range(first, first + nodes):
        node = make_node(
            f"node-{n:02}",
            host=f"203.0.113.{n}",
            location=location if n % 2 else None,
            cpu_cores=servers,
            memory_mb=servers * 1024,
            disk_mb=servers * 1024,
        )
        for s in range(servers):
            Server.objects.create(
                name=f"server-{n}-{s}",
                owner=make_user(f"owner-{n}-{s}"),
                node=node,
                cpu=100,
                memory_mb=1024,
                disk_mb=1024,
            )
        assign(node, allocations)
        made.append(node)
    return made


def assign(node: Node, count: int) -> None:
    servers = list(node.servers.all())
    for i in range(count):
        primary = i < len(servers)
        extra = not primary and i < len(servers) * 3 // 2
        server = servers[i % len(servers)] if primary or extra else None
        Allocation.objects.create(
            node=node,
            ip="203.0.113.200",
            port=25565 + i,
            server=server,
            is_primary=primary,
        )


def queries(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        r = client.get(url)
    assert r.status_code == 200, url
    return len(captured)


class TestNodePageQueries:
    @pytest.mark.parametrize("page", ["list", "detail"])
    def test_it_makes_as_many_queries_for_many_rows_as_for_few(
        self, admin_client: Client, page: str
    ) -> None:
        def url(node: Node) -> str:
            return "/admin/nodes/" if page == "list" else f"/admin/nodes/{node.pk}/"

        few = seed(1, nodes=3, servers=2, allocations=4)
        admin_client.get(url(few[0]))
        counted_few = queries(admin_client, url(few[0]))

        # Twelve nodes in all; the one shown has 6 servers and 12 allocations.
        many = seed(4, nodes=9, servers=6, allocations=12)
        counted_many = queries(admin_client, url(many[0]))

        assert Server.objects.count() == 3 * 2 + 9 * 6
        assert Allocation.objects.filter(node=many[0]).count() == 12
        assert counted_many == counted_few
