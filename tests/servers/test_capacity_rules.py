"""The rules the database keeps, proven by writing rows past the model's checks.

Every rule is tried through the ORM (create, save, QuerySet.update and delete,
which skip model validation) and through raw SQL, on whichever database the run
uses. Each refusal runs in its own savepoint and must leave nothing half-written.
"""

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, models, transaction
from django.db.models import F
from django.test import Client
from django.utils import timezone

from locations.models import Location
from nodes.models import Allocation, Node, Resources
from servers.models import DEFAULT_STARTUP, Server, generate_public_id
from tests.conftest import make_node

pytestmark = pytest.mark.django_db

IP = "203.0.113.10"
# Ways to write a row that skip Server.clean() and Node.clean().
INSERTS = ["orm", "sql"]
UPDATES = ["save", "queryset", "sql"]
DELETES = ["orm", "queryset", "sql"]


def refused(rule: str) -> pytest.RaisesExc:
    return pytest.raises(IntegrityError, match=f"stellar: {rule}")


def insert_row(table: str, **columns: object) -> None:
    names = ", ".join(columns)
    marks = ", ".join(["%s"] * len(columns))
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({names}) VALUES ({marks})", list(columns.values())
        )


def insert_server(how: str, node: Node, owner: User, **fields: object) -> None:
    values = {
        "name": "new",
        "public_id": generate_public_id(),
        "cpu": 100,
        "memory_mb": 1024,
        "disk_mb": 1024,
    } | fields
    if how == "orm":
        Server.objects.create(owner=owner, node=node, **values)
        return
    insert_row(
        "servers_server",
        owner_id=owner.pk,
        node_id=node.pk,
        description="",
        status="offline",
        created=connection.ops.adapt_datetimefield_value(timezone.now()),
        **values,
    )


def insert_allocation(
    how: str,
    node: Node,
    port: int = 25565,
    server: Server | None = None,
    is_primary: bool = False,
    ip: str = IP,
) -> None:
    if how == "orm":
        Allocation.objects.create(
            node=node, ip=ip, port=port, server=server, is_primary=is_primary
        )
        return
    insert_row(
        "nodes_allocation",
        node_id=node.pk,
        ip=ip,
        port=port,
        alias="",
        notes="",
        server_id=server.pk if server else None,
        is_primary=is_primary,
    )


def update(how: str, row: models.Model, **columns: object) -> None:
    """Write columns (by attname, such as node_id) of one row."""
    if how == "save":
        for name, value in columns.items():
            setattr(row, name, value)
        row.save()
    elif how == "queryset":
        type(row).objects.filter(pk=row.pk).update(**columns)
    else:
        sets = ", ".join(f"{name} = %s" for name in columns)
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {row._meta.db_table} SET {sets} WHERE id = %s",
                [*columns.values(), row.pk],
            )


def delete(how: str, row: models.Model) -> None:
    if how == "orm":
        row.delete()
    elif how == "queryset":
        type(row).objects.filter(pk=row.pk).delete()
    else:
        with connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {row._meta.db_table} WHERE id = %s", [row.pk])


def server_on(node: Node, owner: User, name: str = "s", **fields: int) -> Server:
    values = {"cpu": 100, "memory_mb": 1024, "disk_mb": 1024} | fields
    return Server.objects.create(name=name, owner=owner, node=node, **values)


def usage(node: Node) -> Resources:
    return Node.objects.get(pk=node.pk).usage()


def stored(server: Server) -> tuple[int, int, int, int]:
    server = Server.objects.get(pk=server.pk)
    return (server.node_id, server.cpu, server.memory_mb, server.disk_mb)


@pytest.fixture
def alpha(db) -> Node:
    """200 % CPU, 4096 MB of memory, 8192 MB of disk."""
    return make_node("alpha", cpu_cores=2, memory_mb=4096, disk_mb=8192)


@pytest.fixture
def beta(db) -> Node:
    return make_node(
        "beta", host="203.0.113.11", cpu_cores=2, memory_mb=4096, disk_mb=8192
    )


# Half of alpha, and what tips the other half over each limit by one.
HALF = {"cpu": 100, "memory_mb": 2048, "disk_mb": 4096}
ONE_OVER = {
    "cpu": HALF | {"cpu": 101},
    "memory": HALF | {"memory_mb": 2049},
    "disk": HALF | {"disk_mb": 4097},
}


class TestServerInsert:
    @pytest.mark.parametrize("how", INSERTS)
    def test_it_accepts_a_server_that_fills_the_node_exactly(
        self, alpha: Node, owner: User, how: str
    ) -> None:
        server_on(alpha, owner, **HALF)
        insert_server(how, alpha, owner, **HALF)
        assert usage(alpha) == alpha.limits

    @pytest.mark.parametrize("resource", ONE_OVER)
    @pytest.mark.parametrize("how", INSERTS)
    def test_it_refuses_a_server_past_a_limit(
        self, alpha: Node, owner: User, how: str, resource: str
    ) -> None:
        server_on(alpha, owner, **HALF)
        with refused(f"node capacity: {resource}"), transaction.atomic():
            insert_server(how, alpha, owner, **ONE_OVER[resource])

        # Nothing was written.
        assert Server.objects.count() == 1
        assert usage(alpha) == Resources(**HALF)

    def test_it_refuses_a_bulk_insert_that_overfills_partway(
        self, alpha: Node, owner: User
    ) -> None:
        servers = [
            Server(
                name=f"s{i}", owner=owner, node=alpha, cpu=80, memory_mb=1, disk_mb=1
            )
            for i in range(3)
        ]
        with refused("node capacity: cpu"), transaction.atomic():
            Server.objects.bulk_create(servers)

        # The two servers that fitted went with the third.
        assert not Server.objects.exists()

    def test_it_counts_only_the_servers_of_the_same_node(
        self, alpha: Node, beta: Node, owner: User
    ) -> None:
        server_on(alpha, owner, cpu=200, memory_mb=4096, disk_mb=8192)
        server_on(beta, owner, cpu=200, memory_mb=4096, disk_mb=8192)
        assert usage(alpha) == usage(beta) == alpha.limits


class TestServerUpdate:
    @pytest.fixture
    def servers(self, alpha: Node, owner: User) -> tuple[Server, Server]:
        # Together: 150 %, 3072 MB, 6144 MB of 200 %, 4096 MB, 8192 MB.
        return (
            server_on(alpha, owner, "big", **HALF),
            server_on(alpha, owner, "small", cpu=50, memory_mb=1024, disk_mb=2048),
        )

    @pytest.mark.parametrize("how", UPDATES)
    def test_it_lets_a_server_on_a_full_node_change_its_other_fields(
        self, alpha: Node, servers: tuple[Server, Server], how: str
    ) -> None:
        update("queryset", servers[1], **HALF)
        small = Server.objects.get(pk=servers[1].pk)
        update(how, small, name="renamed", status="running")
        assert Server.objects.get(pk=small.pk).name == "renamed"
        assert usage(alpha) == alpha.limits

    @pytest.mark.parametrize("resource", ONE_OVER)
    @pytest.mark.parametrize("how", UPDATES)
    def test_it_refuses_growth_past_a_limit(
        self, servers: tuple[Server, Server], how: str, resource: str
    ) -> None:
        small = servers[1]
        before = stored(small)
        with refused(f"node capacity: {resource}"), transaction.atomic():
            update(how, small, **ONE_OVER[resource])
        assert stored(small) == before

    @pytest.mark.parametrize("how", UPDATES)
    def test_it_accepts_growth_to_exactly_the_limits(
        self, alpha: Node, servers: tuple[Server, Server], how: str
    ) -> None:
        update(how, servers[1], **HALF)
        assert usage(alpha) == alpha.limits

    @pytest.mark.parametrize("how", UPDATES)
    def test_it_does_not_count_the_server_it_updates_twice(
        self, alpha: Node, owner: User, how: str
    ) -> None:
        server = server_on(alpha, owner, **HALF)
        update(how, server, cpu=200, memory_mb=4096, disk_mb=8192)
        assert usage(alpha) == alpha.limits

    @pytest.mark.parametrize("how", UPDATES)
    def test_it_accepts_shrinking(
        self, alpha: Node, servers: tuple[Server, Server], how: str
    ) -> None:
        update(how, servers[0], cpu=1, memory_mb=1, disk_mb=1)
        assert usage(alpha) == Resources(51, 1025, 2049)

    @pytest.mark.parametrize("how", ["queryset", "sql"])
    def test_it_refuses_growing_every_server_at_once_past_a_limit(
        self, alpha: Node, servers: tuple[Server, Server], how: str
    ) -> None:
        with refused("node capacity: cpu"), transaction.atomic():
            if how == "queryset":
                Server.objects.filter(node=alpha).update(cpu=F("cpu") + 30)
            else:
                with connection.cursor() as cursor:
                    cursor.execute(
                        "UPDATE servers_server SET cpu = cpu + 30 WHERE node_id = %s",
                        [alpha.pk],
                    )

        # Neither server grew, not even the one updated first.
        assert sorted(Server.objects.values_list("cpu", flat=True)) == [50, 100]

    @pytest.mark.parametrize("how", UPDATES)
    def test_it_refuses_moving_a_server_to_a_full_node(
        self,
        alpha: Node,
        beta: Node,
        owner: User,
        servers: tuple[Server, Server],
        how: str,
    ) -> None:
        server_on(beta, owner, "filler", cpu=200, memory_mb=4096, disk_mb=8192)
        small = servers[1]
        with refused("node capacity: cpu"), transaction.atomic():
            update(how, small, node_id=beta.pk)

        # It stays where it was; both nodes keep their use.
        assert stored(small)[0] == alpha.pk
        assert usage(alpha) == Resources(150, 3072, 6144)
        assert usage(beta) == beta.limits

    @pytest.mark.parametrize("how", UPDATES)
    def test_it_moves_a_server_to_a_node_with_room(
        self, alpha: Node, beta: Node, servers: tuple[Server, Server], how: str
    ) -> None:
        update(how, servers[0], node_id=beta.pk)
        assert usage(alpha) == Resources(50, 1024, 2048)
        assert usage(beta) == Resources(**HALF)


class TestNodeLimits:
    @pytest.fixture
    def node(self, owner: User) -> Node:
        # The servers use 200 %, 3072 MB, 6144 MB: two cores' worth of CPU.
        node = make_node("alpha", cpu_cores=3, memory_mb=4096, disk_mb=8192)
        for name in ("one", "two"):
            server_on(node, owner, name, cpu=100, memory_mb=1536, disk_mb=3072)
        return node

    @pytest.mark.parametrize(
        "resource, limit",
        [
            ("cpu", {"cpu_cores": 1}),
            ("memory", {"memory_mb": 3071}),
            ("disk", {"disk_mb": 6143}),
        ],
    )
    @pytest.mark.parametrize("how", UPDATES)
    def test_it_refuses_limits_below_what_the_servers_use(
        self, node: Node, how: str, resource: str, limit: dict
    ) -> None:
        with refused(f"node limits below use: {resource}"), transaction.atomic():
            update(how, node, **limit)

        saved = Node.objects.get(pk=node.pk)
        assert (saved.cpu_cores, saved.memory_mb, saved.disk_mb) == (3, 4096, 8192)

    @pytest.mark.parametrize("how", UPDATES)
    def test_it_accepts_limits_down_to_exactly_the_use(
        self, node: Node, how: str
    ) -> None:
        update(how, node, cpu_cores=2, memory_mb=3072, disk_mb=6144)
        node = Node.objects.get(pk=node.pk)
        assert node.limits == node.usage() == Resources(200, 3072, 6144)

    def test_it_lowers_the_limits_of_a_node_without_servers(self, beta: Node) -> None:
        update("sql", beta, cpu_cores=1, memory_mb=1, disk_mb=1)
        assert Node.objects.get(pk=beta.pk).limits == Resources(100, 1, 1)


class TestAllocationNode:
    """An allocation is assigned only to a server on its own node."""

    @pytest.mark.parametrize("how", INSERTS)
    def test_it_refuses_inserting_one_assigned_across_nodes(
        self, alpha: Node, beta: Node, owner: User, how: str
    ) -> None:
        server = server_on(alpha, owner)
        with refused("allocation on another node"), transaction.atomic():
            insert_allocation(how, beta, server=server)
        assert not Allocation.objects.exists()

    @pytest.mark.parametrize("how", INSERTS)
    def test_it_inserts_one_assigned_on_its_own_node(
        self, alpha: Node, owner: User, how: str
    ) -> None:
        server = server_on(alpha, owner)
        insert_allocation(how, alpha, server=server, is_primary=True)
        assert server.primary_allocation.node == alpha

    @pytest.mark.parametrize("how", UPDATES)
    def test_it_refuses_assigning_one_across_nodes(
        self, alpha: Node, beta: Node, owner: User, how: str
    ) -> None:
        server = server_on(alpha, owner)
        allocation = Allocation.objects.create(node=beta, ip=IP, port=25565)
        with refused("allocation on another node"), transaction.atomic():
            update(how, allocation, server_id=server.pk)
        assert Allocation.objects.get().server_id is None

    @pytest.mark.parametrize("how", UPDATES)
    def test_it_refuses_moving_an_assigned_one_to_another_node(
        self, alpha: Node, beta: Node, owner: User, how: str
    ) -> None:
        server = server_on(alpha, owner)
        allocation = Allocation.objects.create(
            node=alpha, ip=IP, port=25565, server=server
        )
        with refused("allocation on another node"), transaction.atomic():
            update(how, allocation, node_id=beta.pk)
        assert Allocation.objects.get().node_id == alpha.pk

    @pytest.mark.parametrize("how", UPDATES)
    def test_it_keeps_a_server_with_allocations_on_its_node(
        self, alpha: Node, beta: Node, owner: User, how: str
    ) -> None:
        server = server_on(alpha, owner)
        Allocation.objects.create(node=alpha, ip=IP, port=25565, server=server)
        with refused("server allocations on another node"), transaction.atomic():
            update(how, server, node_id=beta.pk)

        # Beta had room: only the allocation holds the server back.
        assert stored(server)[0] == alpha.pk
        assert usage(beta) == Resources(0, 0, 0)

    def test_it_moves_a_server_once_its_allocations_are_freed(
        self, alpha: Node, beta: Node, owner: User
    ) -> None:
        server = server_on(alpha, owner)
        Allocation.objects.create(node=alpha, ip=IP, port=25565, server=server)
        Allocation.objects.update(server=None)
        update("queryset", server, node_id=beta.pk)
        assert stored(server)[0] == beta.pk


class TestAssignedAllocation:
    @pytest.fixture
    def servers(self, alpha: Node, owner: User) -> tuple[Server, Server]:
        return server_on(alpha, owner, "one"), server_on(alpha, owner, "two")

    @pytest.fixture
    def allocation(self, alpha: Node, servers: tuple[Server, Server]) -> Allocation:
        return Allocation.objects.create(
            node=alpha, ip=IP, port=25565, server=servers[0], is_primary=True
        )

    @pytest.mark.parametrize("how", DELETES)
    def test_it_refuses_deleting_an_assigned_allocation(
        self, allocation: Allocation, servers: tuple[Server, Server], how: str
    ) -> None:
        with refused("allocation assigned"), transaction.atomic():
            delete(how, allocation)
        assert Allocation.objects.get().server == servers[0]

    @pytest.mark.parametrize("how", DELETES)
    def test_it_deletes_a_free_allocation(self, alpha: Node, how: str) -> None:
        delete(how, Allocation.objects.create(node=alpha, ip=IP, port=25565))
        assert not Allocation.objects.exists()

    @pytest.mark.parametrize("how", UPDATES)
    def test_it_refuses_handing_it_straight_to_another_server(
        self, allocation: Allocation, servers: tuple[Server, Server], how: str
    ) -> None:
        with refused("allocation assigned"), transaction.atomic():
            update(how, allocation, server_id=servers[1].pk, is_primary=False)
        saved = Allocation.objects.get()
        assert (saved.server, saved.is_primary) == (servers[0], True)

    @pytest.mark.parametrize("how", UPDATES)
    def test_it_refuses_handing_it_to_a_server_on_another_node(
        self,
        allocation: Allocation,
        servers: tuple[Server, Server],
        beta: Node,
        owner: User,
        how: str,
    ) -> None:
        elsewhere = server_on(beta, owner, "elsewhere")
        with refused("allocation assigned"), transaction.atomic():
            update(how, allocation, server_id=elsewhere.pk, is_primary=False)
        assert Allocation.objects.get().server == servers[0]

    @pytest.mark.parametrize("how", UPDATES)
    def test_it_lets_an_assigned_allocation_change_its_other_fields(
        self, allocation: Allocation, servers: tuple[Server, Server], how: str
    ) -> None:
        update(how, allocation, is_primary=False, alias="play.example.org")
        saved = Allocation.objects.get()
        assert (saved.server, saved.is_primary) == (servers[0], False)
        assert saved.alias == "play.example.org"

    @pytest.mark.parametrize("how", UPDATES)
    def test_it_hands_it_over_once_freed(
        self, allocation: Allocation, servers: tuple[Server, Server], how: str
    ) -> None:
        update(how, allocation, server_id=None, is_primary=False)
        update(how, allocation, server_id=servers[1].pk)
        assert Allocation.objects.get().server == servers[1]

    @pytest.mark.parametrize("how", DELETES)
    def test_it_frees_the_allocations_of_a_deleted_server(
        self,
        alpha: Node,
        allocation: Allocation,
        servers: tuple[Server, Server],
        how: str,
    ) -> None:
        Allocation.objects.create(node=alpha, ip=IP, port=25566, server=servers[0])
        Allocation.objects.create(
            node=alpha, ip=IP, port=25567, server=servers[1], is_primary=True
        )
        delete(how, servers[0])

        # The server is gone; its allocations stay, free and not primary.
        assert list(Server.objects.all()) == [servers[1]]
        rows = Allocation.objects.order_by("port").values_list(
            "port", "server", "is_primary"
        )
        assert list(rows) == [
            (25565, None, False),
            (25566, None, False),
            (25567, servers[1].pk, True),
        ]


class TestDeleteGuards:
    def raw_delete(self, table: str, pk: int) -> None:
        with connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {table} WHERE id = %s", [pk])

    def test_it_refuses_deleting_a_node_with_servers(
        self, alpha: Node, owner: User
    ) -> None:
        server = server_on(alpha, owner)
        Allocation.objects.create(node=alpha, ip=IP, port=25565)
        with refused("node has servers"), transaction.atomic():
            self.raw_delete("nodes_node", alpha.pk)

        # The node keeps its server and its free allocation.
        assert Node.objects.get().servers.get() == server
        assert Allocation.objects.get().node_id == alpha.pk

    def test_it_refuses_deleting_a_location_with_nodes(
        self, location: Location
    ) -> None:
        make_node(location=location)
        with refused("location has nodes"), transaction.atomic():
            self.raw_delete("locations_location", location.pk)
        assert Node.objects.get().location == location == Location.objects.get()

    def test_it_deletes_an_empty_location(self, location: Location) -> None:
        self.raw_delete("locations_location", location.pk)
        assert not Location.objects.exists()


class TestConstraints:
    @pytest.fixture
    def server(self, alpha: Node, owner: User) -> Server:
        return server_on(alpha, owner)

    @pytest.mark.parametrize("how", INSERTS)
    def test_it_keeps_one_primary_allocation_per_server(
        self, alpha: Node, server: Server, how: str
    ) -> None:
        insert_allocation(how, alpha, 25565, server, is_primary=True)
        with pytest.raises(IntegrityError), transaction.atomic():
            insert_allocation(how, alpha, 25566, server, is_primary=True)

        # A second one that is not primary is fine.
        insert_allocation(how, alpha, 25566, server)
        assert server.allocations.filter(is_primary=True).count() == 1
        assert server.allocations.count() == 2

    @pytest.mark.parametrize("how", INSERTS)
    def test_it_keeps_primary_allocations_assigned(
        self, alpha: Node, server: Server, how: str
    ) -> None:
        with pytest.raises(IntegrityError), transaction.atomic():
            insert_allocation(how, alpha, is_primary=True)
        assert not Allocation.objects.exists()

        # Freeing a primary allocation must clear the flag too.
        insert_allocation(how, alpha, server=server, is_primary=True)
        with pytest.raises(IntegrityError), transaction.atomic():
            update("queryset", Allocation.objects.get(), server_id=None)
        assert Allocation.objects.get().server == server

    @pytest.mark.parametrize("how", INSERTS)
    @pytest.mark.parametrize("port", [0, 1023, 65536])
    def test_it_refuses_ports_out_of_range(
        self, alpha: Node, how: str, port: int
    ) -> None:
        with pytest.raises(IntegrityError), transaction.atomic():
            insert_allocation(how, alpha, port)
        assert not Allocation.objects.exists()

    @pytest.mark.parametrize("how", INSERTS)
    def test_it_accepts_the_ends_of_the_port_range(self, alpha: Node, how: str) -> None:
        insert_allocation(how, alpha, 1024)
        insert_allocation(how, alpha, 65535)
        assert Allocation.objects.count() == 2

    @pytest.mark.parametrize("how", INSERTS)
    def test_it_keeps_an_address_unique_per_node(
        self, alpha: Node, beta: Node, how: str
    ) -> None:
        insert_allocation(how, alpha)
        with pytest.raises(IntegrityError), transaction.atomic():
            insert_allocation(how, alpha)

        # The same address on another node, or another IP, is fine.
        insert_allocation(how, beta)
        insert_allocation(how, alpha, ip="203.0.113.99")
        assert Allocation.objects.count() == 3

    @pytest.mark.parametrize("how", INSERTS)
    def test_it_refuses_a_public_id_with_a_dot(
        self, alpha: Node, owner: User, how: str
    ) -> None:
        with pytest.raises(IntegrityError), transaction.atomic():
            insert_server(how, alpha, owner, public_id="abc.defghi")
        assert not Server.objects.exists()

    def test_it_refuses_a_dot_written_later(self, server: Server) -> None:
        with pytest.raises(IntegrityError), transaction.atomic():
            update("sql", server, public_id="abc.defghi")
        assert "." not in Server.objects.get().public_id


class TestModelValidation:
    def test_it_says_what_a_server_asks_for_and_what_is_free(
        self, alpha: Node, owner: User
    ) -> None:
        server_on(alpha, owner, cpu=100, memory_mb=3072, disk_mb=1024)
        server = Server(
            name="big", owner=owner, node=alpha, cpu=150, memory_mb=2048, disk_mb=1
        )
        with pytest.raises(ValidationError) as e:
            server.full_clean()

        # One sentence for each resource short; disk has room.
        assert e.value.message_dict == {
            "cpu": ["Node alpha has 100 % of CPU free; this server asks for 150 %."],
            "memory_mb": [
                "Node alpha has 1024 MB of memory free; this server asks for 2048 MB."
            ],
        }

    def test_it_lets_a_server_grow_into_its_own_share(
        self, alpha: Node, owner: User
    ) -> None:
        server = server_on(alpha, owner, **HALF)
        server.cpu, server.memory_mb, server.disk_mb = 200, 4096, 8192
        server.full_clean()

    def test_it_refuses_node_memory_below_what_the_servers_use(
        self, alpha: Node, owner: User
    ) -> None:
        server_on(alpha, owner, memory_mb=3072)
        alpha.memory_mb = 2048
        with pytest.raises(ValidationError) as e:
            alpha.full_clean()
        assert list(e.value.message_dict) == ["memory_mb"]
        assert "use 3072 MB of memory" in e.value.message_dict["memory_mb"][0]

        # Down to exactly the use is fine.
        alpha.memory_mb = 3072
        alpha.full_clean()


class TestDjangoAdmin:
    @pytest.fixture
    def root_client(self, db) -> Client:
        client = Client()
        client.force_login(
            User.objects.create_superuser("root", "root@example.org", "x")
        )
        return client

    @pytest.fixture
    def node(self, owner: User) -> Node:
        # A public address: the admin form checks the host policy on save.
        node = make_node(
            "alpha", host="93.184.215.14", cpu_cores=2, memory_mb=4096, disk_mb=8192
        )
        server_on(node, owner, memory_mb=3072)
        return node

    def server_form(self, node: Node, owner: User, memory_mb: int) -> dict:
        return {
            "name": "big",
            "description": "",
            "owner": str(owner.pk),
            "node": str(node.pk),
            "cpu": "50",
            "memory_mb": str(memory_mb),
            "disk_mb": "1",
            "status": "offline",
            "startup": DEFAULT_STARTUP,
            "environment": "{}",
        }

    def node_form(self, node: Node, memory_mb: int) -> dict:
        return {
            "name": node.name,
            "location": "",
            "host": node.host,
            "port": str(node.port),
            "protocol": node.protocol,
            "cpu_cores": str(node.cpu_cores),
            "memory_mb": str(memory_mb),
            "disk_mb": str(node.disk_mb),
            "sftp_port": str(node.sftp_port),
            "upload_limit_mb": str(node.upload_limit_mb),
        }

    def test_it_refuses_a_server_that_overfills_the_node(
        self, root_client: Client, node: Node, owner: User
    ) -> None:
        r = root_client.post(
            "/django-admin/servers/server/add/", self.server_form(node, owner, 2048)
        )
        assert r.status_code == 200
        assert (
            "Node alpha has 1024 MB of memory free; this server asks for 2048 MB."
            in r.content.decode()
        )
        assert Server.objects.count() == 1

        # The same form, sized to fit, is saved.
        r = root_client.post(
            "/django-admin/servers/server/add/", self.server_form(node, owner, 1024)
        )
        assert r.status_code == 302
        assert usage(node).memory_mb == 4096

    def test_it_refuses_node_memory_below_what_the_servers_use(
        self, root_client: Client, node: Node
    ) -> None:
        url = f"/django-admin/nodes/node/{node.pk}/change/"
        r = root_client.post(url, self.node_form(node, 2048))
        assert r.status_code == 200
        assert "The servers on this node use 3072 MB of memory" in r.content.decode()
        assert Node.objects.get().memory_mb == 4096

        # Down to exactly the use is saved.
        r = root_client.post(url, self.node_form(node, 3072))
        assert r.status_code == 302
        assert Node.objects.get().memory_mb == 3072
