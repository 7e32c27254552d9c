from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User
from django.db.models.signals import pre_save
from django.test import Client

from nodes.daemon import Daemon
from nodes.models import Allocation, Node
from servers.models import Server
from tests.conftest import make_node

pytestmark = pytest.mark.django_db


@pytest.fixture
def online_node(daemon_node: Node) -> Node:
    return daemon_node


@pytest.fixture
def allocations(online_node: Node) -> list[Allocation]:
    return [
        Allocation.objects.create(node=online_node, ip="203.0.113.10", port=port)
        for port in (25565, 25566, 25567)
    ]


def server_form(node: Node, owner: User, allocation: Allocation, **fields) -> dict:
    return {
        "name": "survival",
        "owner": owner.pk,
        "node": node.pk,
        "allocation": allocation.pk,
        "cpu": "200",
        "memory_mb": "4096",
        "disk_mb": "10240",
    } | fields


def make_server(node: Node, owner: User, *allocations: Allocation, **fields) -> Server:
    values = {"name": "survival", "cpu": 100, "memory_mb": 1024, "disk_mb": 1024}
    server = Server.objects.create(node=node, owner=owner, **(values | fields))
    for i, allocation in enumerate(allocations):
        allocation.server = server
        allocation.is_primary = i == 0
        allocation.save()
    if node.status == Node.Status.ONLINE and allocations:
        # The node has a real daemon: the server exists there too.
        Daemon(node).create_server(server.daemon_config())
    return server


@pytest.fixture
def fill_node_meanwhile(online_node: Node, outsider: User) -> Iterator[None]:
    """Fill the node just before the form's server is written: the race."""

    def fill(sender, instance: Server, **kwargs) -> None:
        pre_save.disconnect(fill, sender=Server)
        free = online_node.free()
        Server.objects.create(
            name="sneaky",
            owner=outsider,
            node=online_node,
            cpu=free.cpu,
            memory_mb=free.memory_mb,
            disk_mb=free.disk_mb,
        )

    pre_save.connect(fill, sender=Server)
    yield
    pre_save.disconnect(fill, sender=Server)


class TestServerCreate:
    def test_it_creates_a_server_with_its_allocations(
        self, admin_client: Client, online_node: Node, owner: User, allocations: list
    ) -> None:
        primary, extra, _ = allocations
        r = admin_client.post(
            "/admin/servers/new/",
            server_form(online_node, owner, primary, additional_allocations=[extra.pk]),
        )
        server = Server.objects.get()
        assert r.status_code == 302
        assert r["Location"] == f"/servers/{server.public_id}/"
        assert (server.owner, server.node, server.cpu) == (owner, online_node, 200)
        assert "." not in server.public_id and len(server.public_id) == 10
        primary.refresh_from_db()
        extra.refresh_from_db()
        assert (primary.server, primary.is_primary) == (server, True)
        assert (extra.server, extra.is_primary) == (server, False)
        assert Allocation.objects.filter(server__isnull=True).count() == 1

    def test_it_refuses_an_offline_node(
        self, admin_client: Client, node: Node, owner: User
    ) -> None:
        allocation = Allocation.objects.create(node=node, ip="203.0.113.10", port=25565)
        r = admin_client.post(
            "/admin/servers/new/", server_form(node, owner, allocation)
        )
        assert r.status_code == 200
        assert "alpha is offline" in r.context["form"].errors["node"][0]
        assert not Server.objects.exists()

    @pytest.mark.parametrize(
        "field, value, message",
        [
            (
                "cpu",
                "900",
                "Node local has 800 % of CPU free; this server asks for 900 %.",
            ),
            (
                "memory_mb",
                "20000",
                "Node local has 16384 MB of memory free; "
                "this server asks for 20000 MB.",
            ),
            (
                "disk_mb",
                "300000",
                "Node local has 204800 MB of disk free; "
                "this server asks for 300000 MB.",
            ),
        ],
    )
    def test_it_names_the_resource_that_does_not_fit(
        self,
        admin_client: Client,
        online_node: Node,
        owner: User,
        allocations: list,
        field: str,
        value: str,
        message: str,
    ) -> None:
        r = admin_client.post(
            "/admin/servers/new/",
            server_form(online_node, owner, allocations[0], **{field: value}),
        )
        assert r.context["form"].errors[field] == [message]
        assert 'value="survival"' in r.content.decode()
        assert not Server.objects.exists()
        assert not Allocation.objects.filter(server__isnull=False).exists()

    def test_it_counts_what_other_servers_use(
        self, admin_client: Client, online_node: Node, owner: User, allocations: list
    ) -> None:
        make_server(online_node, owner, allocations[2], memory_mb=15360)
        r = admin_client.post(
            "/admin/servers/new/", server_form(online_node, owner, allocations[0])
        )
        assert r.context["form"].errors["memory_mb"] == [
            "Node local has 1024 MB of memory free; this server asks for 4096 MB."
        ]

    def test_it_refuses_allocations_of_another_node_or_taken(
        self, admin_client: Client, online_node: Node, owner: User, allocations: list
    ) -> None:
        other = make_node("beta", host="203.0.113.20")
        foreign = Allocation.objects.create(node=other, ip="203.0.113.20", port=25565)
        make_server(online_node, owner, allocations[1])
        for allocation in (foreign, allocations[1]):
            r = admin_client.post(
                "/admin/servers/new/", server_form(online_node, owner, allocation)
            )
            assert "valid choice" in r.context["form"].errors["allocation"][0]
        assert Server.objects.count() == 1

    def test_it_refuses_the_primary_as_an_additional_allocation(
        self, admin_client: Client, online_node: Node, owner: User, allocations: list
    ) -> None:
        primary = allocations[0]
        r = admin_client.post(
            "/admin/servers/new/",
            server_form(
                online_node, owner, primary, additional_allocations=[primary.pk]
            ),
        )
        assert (
            "already the primary"
            in r.context["form"].errors["additional_allocations"][0]
        )
        assert not Server.objects.exists()

    def test_it_turns_the_databases_refusal_into_a_message(
        self,
        admin_client: Client,
        online_node: Node,
        owner: User,
        allocations: list,
        fill_node_meanwhile: None,
    ) -> None:
        r = admin_client.post(
            "/admin/servers/new/", server_form(online_node, owner, allocations[0])
        )
        assert r.status_code == 200
        assert r.context["form"].non_field_errors() == [
            "The node no longer has enough CPU free for this server."
        ]
        # The racer wrote inside the same transaction, so both are gone, and
        # nothing is half-written.
        assert not Server.objects.exists()
        assert not Allocation.objects.filter(server__isnull=False).exists()

    def test_it_says_when_an_allocation_was_taken_meanwhile(
        self, admin_client: Client, online_node: Node, owner: User, allocations: list
    ) -> None:
        chosen = allocations[0]

        def take(sender, instance: Server, **kwargs) -> None:
            pre_save.disconnect(take, sender=Server)
            make_server(online_node, owner, chosen, name="quick")

        pre_save.connect(take, sender=Server)
        try:
            r = admin_client.post(
                "/admin/servers/new/", server_form(online_node, owner, chosen)
            )
        finally:
            pre_save.disconnect(take, sender=Server)
        assert "taken by another server meanwhile" in str(r.context["form"].errors)
        assert not Server.objects.exists()
        assert not Allocation.objects.filter(server__isnull=False).exists()

    def test_it_offers_only_the_chosen_nodes_free_allocations(
        self, admin_client: Client, online_node: Node, owner: User, allocations: list
    ) -> None:
        other = make_node("beta", host="203.0.113.20")
        Allocation.objects.create(node=other, ip="203.0.113.20", port=27015)
        make_server(online_node, owner, allocations[2])
        r = admin_client.get(
            f"/admin/servers/new/allocations/?node={online_node.pk}",
            HTTP_HX_REQUEST="true",
        )
        body = r.content.decode()
        assert body.lstrip().startswith('<div id="allocation-fields"')
        assert "203.0.113.10:25565" in body and "203.0.113.10:25566" in body
        assert "25567" not in body and "27015" not in body

    def test_it_lists_nodes_by_location_with_what_is_free(
        self, admin_client: Client, online_node: Node, owner: User, allocations: list
    ) -> None:
        make_server(online_node, owner, allocations[0], cpu=150)
        make_node("beta", host="203.0.113.20")
        r = admin_client.get(f"/admin/servers/new/?node={online_node.pk}")
        choices = dict(r.context["form"].fields["node"].choices)
        assert choices["US West"] == [
            (
                online_node.pk,
                "local: 650 % CPU, 15360 MB memory, 203776 MB disk free",
            )
        ]
        assert "beta (offline)" in choices["No location"][0][1]


class TestServerEdit:
    def test_it_resizes_within_the_nodes_limits(
        self, admin_client: Client, online_node: Node, owner: User, allocations: list
    ) -> None:
        server = make_server(online_node, owner, allocations[0])
        form = server_form(online_node, owner, allocations[0], memory_mb="16384")
        r = admin_client.post(f"/admin/servers/{server.public_id}/edit/", form)
        assert r.status_code == 302
        server.refresh_from_db()
        assert server.memory_mb == 16384

        form["memory_mb"] = "16385"
        r = admin_client.post(f"/admin/servers/{server.public_id}/edit/", form)
        assert r.context["form"].errors["memory_mb"] == [
            "Node local has 16384 MB of memory free; this server asks for 16385 MB."
        ]
        server.refresh_from_db()
        assert server.memory_mb == 16384

    def test_it_changes_allocations_and_frees_the_old_ones(
        self, admin_client: Client, online_node: Node, owner: User, allocations: list
    ) -> None:
        first, second, third = allocations
        server = make_server(online_node, owner, first, second)
        form = server_form(online_node, owner, third, additional_allocations=[first.pk])
        r = admin_client.post(f"/admin/servers/{server.public_id}/edit/", form)
        assert r.status_code == 302
        assigned = {
            a.port: a.is_primary for a in Allocation.objects.filter(server=server)
        }
        assert assigned == {25567: True, 25565: False}
        second.refresh_from_db()
        assert second.server is None and not second.is_primary

    def test_it_shows_the_current_allocations(
        self, admin_client: Client, online_node: Node, owner: User, allocations: list
    ) -> None:
        server = make_server(online_node, owner, allocations[1], allocations[0])
        r = admin_client.get(f"/admin/servers/{server.public_id}/edit/")
        form = r.context["form"]
        assert form["allocation"].value() == allocations[1].pk
        assert form["additional_allocations"].value() == [allocations[0].pk]


class TestServerDelete:
    def test_it_frees_the_allocations(
        self, admin_client: Client, online_node: Node, owner: User, allocations: list
    ) -> None:
        server = make_server(online_node, owner, allocations[0], allocations[1])
        r = admin_client.get(f"/admin/servers/{server.public_id}/delete/")
        assert "allocations become free" in r.content.decode()
        r = admin_client.post(f"/admin/servers/{server.public_id}/delete/")
        assert r.status_code == 302
        assert not Server.objects.exists()
        assert Allocation.objects.filter(server__isnull=True).count() == 3
        assert not Allocation.objects.filter(is_primary=True).exists()


class TestOwnerPages:
    def test_it_lists_only_the_owners_servers(
        self,
        owner_client: Client,
        online_node: Node,
        owner: User,
        outsider: User,
        allocations: list,
    ) -> None:
        make_server(online_node, owner, allocations[0], name="mine")
        make_server(online_node, outsider, allocations[1], name="theirs")
        r = owner_client.get("/servers/")
        assert [s.name for s in r.context["servers"]] == ["mine"]
        assert "theirs" not in r.content.decode()

    def test_it_shows_where_the_server_is(
        self, owner_client: Client, online_node: Node, owner: User, allocations: list
    ) -> None:
        server = make_server(online_node, owner, allocations[0], allocations[1])
        body = owner_client.get(f"/servers/{server.public_id}/").content.decode()
        for text in (
            "Los Angeles, US",
            "local",
            "203.0.113.10:25565",
            "203.0.113.10:25566",
            "100 %",
            "1024 MB",
            "Installing",
        ):
            assert text in body, text
        assert "/admin/servers/" not in body

    def test_it_answers_404_to_anyone_else(
        self,
        client: Client,
        owner: User,
        outsider: User,
        online_node: Node,
        allocations: list,
    ) -> None:
        server = make_server(online_node, owner, allocations[0])
        stranger = Client()
        stranger.force_login(outsider)
        assert stranger.get(f"/servers/{server.public_id}/").status_code == 404
        assert stranger.get("/servers/nosuchid12/").status_code == 404
        r = client.get(f"/servers/{server.public_id}/")
        assert r.status_code == 302 and r["Location"].startswith("/login/")

    def test_it_lets_admins_see_any_server(
        self, admin_client: Client, online_node: Node, owner: User, allocations: list
    ) -> None:
        server = make_server(online_node, owner, allocations[0])
        assert admin_client.get(f"/servers/{server.public_id}/").status_code == 200


class TestServerAdminPermissions:
    def test_it_refuses_non_staff_and_sends_anonymous_users_to_log_in(
        self, client: Client, owner_client: Client, online_node: Node, owner: User
    ) -> None:
        server = make_server(online_node, owner)
        for url in (
            "/admin/servers/",
            "/admin/servers/new/",
            f"/admin/servers/new/allocations/?node={online_node.pk}",
            f"/admin/servers/{server.public_id}/edit/",
            f"/admin/servers/{server.public_id}/delete/",
        ):
            assert owner_client.get(url).status_code == 403, url
            assert owner_client.post(url).status_code == 403, url
            assert client.get(url).status_code == 302, url
        assert Server.objects.filter(pk=server.pk).exists()


class TestNodePageUsage:
    def test_it_shows_allocated_against_total_and_the_servers(
        self, admin_client: Client, online_node: Node, owner: User, allocations: list
    ) -> None:
        make_server(online_node, owner, allocations[0], cpu=250, memory_mb=2048)
        body = admin_client.get(f"/admin/nodes/{online_node.pk}/").content.decode()
        assert "250 / 800 % allocated" in body
        assert "2048 / 16384 MB allocated" in body
        assert "survival" in body and "bob" in body

        body = admin_client.get("/admin/nodes/").content.decode()
        assert "250 / 800 %" in body and 'style="width: 31%"' in body


class TestPowerButtons:
    @pytest.mark.parametrize(
        "status, enabled",
        [
            ("offline", {"start", "restart"}),
            ("running", {"restart", "stop", "kill"}),
            ("installing", set()),
            ("install_failed", set()),
        ],
    )
    def test_it_offers_what_the_state_allows(
        self, owner_client: Client, node: Node, owner: User, status: str, enabled: set
    ) -> None:
        node.status = Node.Status.ONLINE
        node.save(update_fields=["status"])
        server = Server.objects.create(
            name="s",
            owner=owner,
            node=node,
            cpu=1,
            memory_mb=1,
            disk_mb=1,
            status=status,
        )
        body = owner_client.get(f"/servers/{server.public_id}/").content.decode()
        for action in ("start", "restart", "stop", "kill"):
            button = body[body.index(f'value="{action}"') :].split(">", 1)[0]
            assert ("disabled" not in button) == (action in enabled), action


class TestServerWithoutLocation:
    def test_it_lists_a_server_whose_node_has_no_location(
        self, owner_client: Client, owner: User
    ) -> None:
        node = make_node("nowhere", host="203.0.113.30")
        Server.objects.create(
            name="s", owner=owner, node=node, cpu=1, memory_mb=1, disk_mb=1
        )
        r = owner_client.get("/servers/")
        assert r.status_code == 200
        assert '<span class="muted">—</span>' in r.content.decode()
