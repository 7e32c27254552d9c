import pytest
from django.contrib.auth.models import User
from django.contrib.messages import get_messages
from django.db import IntegrityError, connection, transaction
from django.test import Client

from nodes.models import Allocation, Node
from nodes.ports import PortListError, format_ports, parse_ports
from servers.models import Server
from tests.conftest import make_node

IP = "203.0.113.10"


def assign(node: Node, owner: User, port: int, server: str = "survival") -> Allocation:
    """An allocation on `node`, the primary one of a new server called `server`."""
    holder = Server.objects.create(
        name=server, owner=owner, node=node, cpu=100, memory_mb=1024, disk_mb=1024
    )
    return Allocation.objects.create(
        node=node, ip=IP, port=port, server=holder, is_primary=True
    )


def free(node: Node, *ports: int) -> list[Allocation]:
    return [Allocation.objects.create(node=node, ip=IP, port=port) for port in ports]


def said(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


class TestParsePorts:
    @pytest.mark.parametrize(
        ("text", "ports"),
        [
            ("25565", [25565]),
            ("25565, 25570-25572, 27015", [25565, 25570, 25571, 25572, 27015]),
            ("25565 25566\n25567", [25565, 25566, 25567]),
            ("  25565 ,, 25566 , ", [25565, 25566]),
            ("25570 - 25571", [25570, 25571]),
            ("25566, 25565-25566, 25565", [25565, 25566]),
            ("25565-25565", [25565]),
            ("1024, 65535", [1024, 65535]),
            ("30000-30999", list(range(30000, 31000))),
        ],
    )
    def test_it_reads_ports_and_ranges(self, text: str, ports: list[int]) -> None:
        assert parse_ports(text) == ports

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("abc", "'abc' is not a port."),
            ("25565-", "'25565-' is not a port."),
            ("1-2-3", "'1-2-3' is not a port."),
            ("٢٥٥٦٥", "'٢٥٥٦٥' is not a port."),
            ("70000", "'70000' is outside 1024-65535."),
            ("1023", "'1023' is outside 1024-65535."),
            ("65000-65536", "'65000-65536' is outside 1024-65535."),
            ("25580-25570", "'25580-25570' ends before it starts."),
            ("100-3000", "'100-3000' spans 2901 ports, at most 1000 a range."),
            ("99999999999", "'99999999999' is not a port."),
        ],
    )
    def test_it_names_a_malformed_part(self, text: str, message: str) -> None:
        with pytest.raises(PortListError) as caught:
            parse_ports(text)
        assert str(caught.value) == message

    def test_it_names_every_malformed_part_in_one_message(self) -> None:
        with pytest.raises(PortListError) as caught:
            parse_ports("abc, 25565, 70000 100-3000 25580-25570")
        assert str(caught.value) == (
            "'abc' is not a port; '70000' is outside 1024-65535; '100-3000' spans "
            "2901 ports, at most 1000 a range; '25580-25570' ends before it starts."
        )

    def test_it_is_a_value_error(self) -> None:
        assert issubclass(PortListError, ValueError)

    @pytest.mark.parametrize("text", ["", "  ", " , ,\n"])
    def test_it_asks_for_at_least_one_port(self, text: str) -> None:
        with pytest.raises(PortListError, match="Enter at least one port"):
            parse_ports(text)

    def test_it_caps_the_ports_of_one_list(self) -> None:
        ranges = ", ".join(
            f"{start}-{start + 999}" for start in range(10000, 15001, 1000)
        )
        with pytest.raises(PortListError, match="That is 6000 ports; at most 5000"):
            parse_ports(ranges)
        assert len(parse_ports(ranges.rsplit(",", 1)[0])) == 5000

    def test_it_shortens_a_long_part_in_the_message(self) -> None:
        with pytest.raises(PortListError) as caught:
            parse_ports("x" * 500)
        assert str(caught.value) == f"'{'x' * 20}…' is not a port."

    def test_it_writes_ports_back_as_ranges(self) -> None:
        assert format_ports([25570]) == "25570"
        assert format_ports([25570, 25565]) == "25565 and 25570"
        assert format_ports([25565, 25566, 25567, 27015]) == "25565-25567 and 27015"
        assert format_ports(range(2000, 2040, 2), most=3) == (
            "2000, 2002, 2004 and 17 more"
        )


@pytest.mark.django_db
class TestAllocations:
    def url(self, node: Node, suffix: str = "") -> str:
        return f"/admin/nodes/{node.pk}/allocations/{suffix}"

    def create(self, client: Client, node: Node, **fields: str):
        data = {"ip": IP, "ports": "25565", "alias": "", "notes": ""} | fields
        return client.post(self.url(node), data)

    # Creating

    def test_it_creates_allocations_in_bulk(
        self, admin_client: Client, node: Node
    ) -> None:
        r = self.create(
            admin_client,
            node,
            ports="25565, 25570-25572",
            alias="play.example.org",
            notes="EU",
        )
        assert r.status_code == 302
        assert r["Location"] == f"/admin/nodes/{node.pk}/#allocations"
        rows = node.allocations.values_list("ip", "port", "alias", "notes", "server")
        assert list(rows) == [
            (IP, port, "play.example.org", "EU", None)
            for port in (25565, 25570, 25571, 25572)
        ]
        assert said(r) == [f"4 allocations added on {IP}."]

    def test_it_normalises_an_ipv6_address(
        self, admin_client: Client, node: Node
    ) -> None:
        self.create(admin_client, node, ip=" 2001:DB8:0:0::0:1 ")
        assert node.allocations.get().ip == "2001:db8::1"
        self.create(admin_client, node, ip="::ffff:203.0.113.10")
        assert node.allocations.filter(ip=IP).exists()
        page = admin_client.get(f"/admin/nodes/{node.pk}/").content.decode()
        assert "[2001:db8::1]:25565" in page

    def test_it_reports_ports_that_already_existed_by_number(
        self, admin_client: Client, node: Node
    ) -> None:
        free(node, 25565, 25570)
        r = self.create(admin_client, node, ports="25565-25570")
        assert node.allocations.count() == 6
        assert said(r) == [
            f"25565 and 25570 already existed on {IP}; 4 allocations added."
        ]

    def test_it_says_so_when_every_port_already_existed(
        self, admin_client: Client, node: Node
    ) -> None:
        free(node, 25565, 25566)
        r = self.create(admin_client, node, ports="25565 25566")
        assert r.status_code == 302
        assert node.allocations.count() == 2
        assert said(r) == [
            f"Every port already existed on {IP} (25565-25566); nothing was added."
        ]

    def test_it_adds_the_same_ports_on_another_ip_or_node(
        self, admin_client: Client, node: Node
    ) -> None:
        free(node, 25565)
        other = make_node("beta", host="203.0.113.20")
        self.create(admin_client, node, ip="203.0.113.11")
        self.create(admin_client, other)
        assert Allocation.objects.filter(port=25565).count() == 3

    @pytest.mark.parametrize(
        ("fields", "field", "error"),
        [
            ({"ip": "300.1.1.1"}, "ip", "'300.1.1.1' is not an IPv4 or IPv6 address."),
            ({"ip": "play.example.org"}, "ip", "'play.example.org' is not an IPv4"),
            ({"ip": "0.0.0.0"}, "ip", "0.0.0.0 stands for every address"),
            ({"ip": "::"}, "ip", ":: stands for every address"),
            ({"ip": "239.1.1.1"}, "ip", "239.1.1.1 is a multicast address"),
            ({"ip": "ff02::1"}, "ip", "ff02::1 is a multicast address"),
            ({"ip": "fe80::1%eth0"}, "ip", "zone index"),
            ({"ip": ""}, "ip", "This field is required."),
            ({"ports": "25565, abc, 80"}, "ports", "'abc' is not a port; '80' is"),
            ({"ports": ""}, "ports", "This field is required."),
        ],
    )
    def test_it_refuses_bad_input_naming_the_field(
        self, admin_client: Client, node: Node, fields: dict, field: str, error: str
    ) -> None:
        r = self.create(admin_client, node, **({"ports": "25565-25570"} | fields))
        assert r.status_code == 200
        errors = r.context["allocations"]["form"].errors
        assert list(errors) == [field]
        assert error in errors[field][0]
        assert not Allocation.objects.exists()

    def test_it_keeps_what_was_typed(self, admin_client: Client, node: Node) -> None:
        r = self.create(
            admin_client,
            node,
            ip="0.0.0.0",
            ports="25565-25570, 27015",
            alias="play.example.org",
            notes="EU rack 4",
        )
        body = r.content.decode()
        for typed in ("0.0.0.0", "25565-25570, 27015", "play.example.org", "EU rack 4"):
            assert f'value="{typed}"' in body, typed
        assert "<html" in body and "Connection" in body
        assert not Allocation.objects.exists()

    # Listing

    def test_it_lists_allocations_with_their_servers(
        self, admin_client: Client, node: Node, owner: User
    ) -> None:
        assign(node, owner, 25565)
        Allocation.objects.create(node=node, ip=IP, port=25566, alias="mc.example.org")
        body = admin_client.get(f"/admin/nodes/{node.pk}/").content.decode()
        assert f"{IP}:25565" in body and "survival" in body and "Primary" in body
        assert "mc.example.org" in body and ">Free<" in body
        # Only the free one can be ticked.
        assert body.count('type="checkbox" name="allocation"') == 1

    def test_it_filters_free_and_assigned(
        self, admin_client: Client, node: Node, owner: User
    ) -> None:
        free(node, 25566, 25567, 25568)
        assign(node, owner, 25565)
        page = f"/admin/nodes/{node.pk}/"
        for shown, count in (("", 4), ("?filter=free", 3), ("?filter=assigned", 1)):
            r = admin_client.get(page + shown)
            assert len(r.context["allocations"]["page"].object_list) == count, shown
        r = admin_client.get(page + "?filter=bogus")
        assert r.context["allocations"]["filter"] == "all"
        assert r.context["allocations"]["counts"] == {
            "all": 4,
            "free": 3,
            "assigned": 1,
        }

    def test_it_pages_by_a_hundred_keeping_the_filter(
        self, admin_client: Client, node: Node
    ) -> None:
        Allocation.objects.bulk_create(
            Allocation(node=node, ip=IP, port=port) for port in range(30000, 30101)
        )
        r = admin_client.get(f"/admin/nodes/{node.pk}/?filter=free")
        page = r.context["allocations"]["page"]
        assert (len(page.object_list), page.paginator.num_pages) == (100, 2)
        assert f'href="/admin/nodes/{node.pk}/?filter=free&amp;page=2#allocations"' in (
            r.content.decode()
        )

        r = admin_client.get(f"/admin/nodes/{node.pk}/?filter=free&page=2")
        assert [a.port for a in r.context["allocations"]["page"]] == [30100]

    def test_it_answers_htmx_with_the_list_alone(
        self, admin_client: Client, node: Node
    ) -> None:
        free(node, 25565)
        r = admin_client.get(self.url(node) + "?filter=free", HTTP_HX_REQUEST="true")
        body = r.content.decode()
        assert r.status_code == 200
        assert "<html" not in body and 'name="ports"' not in body
        assert body.lstrip().startswith('<div id="allocation-list"')
        assert f"{IP}:25565" in body
        assert "HX-Request" in r["Vary"]

    def test_it_sends_a_plain_get_of_the_list_to_the_node_page(
        self, admin_client: Client, node: Node
    ) -> None:
        r = admin_client.get(self.url(node) + "?filter=free&page=2")
        assert r.status_code == 302
        assert r["Location"] == (
            f"/admin/nodes/{node.pk}/?filter=free&page=2#allocations"
        )

    # Deleting

    def test_it_deletes_the_ticked_free_allocations(
        self, admin_client: Client, node: Node
    ) -> None:
        a, b, c = free(node, 25565, 25566, 25567)
        r = admin_client.post(
            self.url(node, "delete/"), {"allocation": [a.pk, b.pk], "filter": "free"}
        )
        assert r["Location"] == f"/admin/nodes/{node.pk}/?filter=free#allocations"
        assert list(Allocation.objects.values_list("port", flat=True)) == [25567]
        assert said(r) == ["2 allocations deleted."]

    def test_it_refuses_an_assigned_allocation_and_deletes_nothing(
        self, admin_client: Client, node: Node, owner: User
    ) -> None:
        (spare,) = free(node, 25566)
        held = assign(node, owner, 25565)
        r = admin_client.post(
            self.url(node, "delete/"), {"allocation": [spare.pk, held.pk]}
        )
        assert r.status_code == 302
        assert Allocation.objects.count() == 2
        (message,) = said(r)
        assert message.startswith(
            f"Nothing was deleted: {IP}:25565 is assigned to survival."
        )

    def test_it_deletes_all_free_allocations_and_keeps_assigned_ones(
        self, admin_client: Client, node: Node, owner: User
    ) -> None:
        free(node, 25566, 25567)
        held = assign(node, owner, 25565)
        r = admin_client.post(self.url(node, "delete/"), {"all_free": "on"})
        assert list(Allocation.objects.all()) == [held]
        assert said(r) == ["2 allocations deleted."]

        r = admin_client.post(self.url(node, "delete/"), {"all_free": "on"})
        assert said(r)[-1] == "There were no free allocations to delete."

    def test_it_never_deletes_another_nodes_allocations(
        self, admin_client: Client, node: Node
    ) -> None:
        (mine,) = free(node, 25565)
        other = make_node("beta", host="203.0.113.20")
        theirs = Allocation.objects.create(node=other, ip=IP, port=25565)
        r = admin_client.post(
            self.url(node, "delete/"), {"allocation": [mine.pk, theirs.pk]}
        )
        assert Allocation.objects.count() == 2
        assert said(r)[0].startswith("Nothing was deleted")

        # Deleting all free ones of a node leaves the other node's alone.
        admin_client.post(self.url(node, "delete/"), {"all_free": "on"})
        assert list(Allocation.objects.all()) == [theirs]

    @pytest.mark.parametrize("ids", [[], ["abc"], ["1 OR 1=1"]])
    def test_it_deletes_nothing_without_a_sound_selection(
        self, admin_client: Client, node: Node, ids: list[str]
    ) -> None:
        free(node, 25565)
        r = admin_client.post(self.url(node, "delete/"), {"allocation": ids})
        assert r.status_code == 302
        assert Allocation.objects.count() == 1
        assert said(r)

    def test_it_shows_the_databases_refusal_instead_of_failing(
        self, admin_client: Client, node: Node, owner: User, monkeypatch
    ) -> None:
        # The allocation is assigned after the view looked: only the trigger sees it.
        held = assign(node, owner, 25565)
        monkeypatch.setattr("nodes.views._assigned_among", lambda chosen: [])
        r = admin_client.post(self.url(node, "delete/"), {"allocation": [held.pk]})
        assert r.status_code == 302
        assert said(r) == ["The allocation is assigned to a server."]
        assert Allocation.objects.filter(pk=held.pk).exists()

    def test_the_database_refuses_to_delete_an_assigned_allocation(
        self, node: Node, owner: User
    ) -> None:
        held = assign(node, owner, 25565)
        with (
            pytest.raises(IntegrityError, match="stellar: allocation assigned"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute("DELETE FROM nodes_allocation WHERE id = %s", [held.pk])
        assert Allocation.objects.filter(pk=held.pk).exists()

    # Who may

    def requests(self, node: Node) -> list[tuple[str, str, dict]]:
        return [
            ("get", self.url(node), {}),
            ("post", self.url(node), {"ip": IP, "ports": "25565"}),
            ("post", self.url(node, "delete/"), {"all_free": "on"}),
        ]

    def test_it_sends_anonymous_users_to_log_in(
        self, client: Client, node: Node
    ) -> None:
        free(node, 25566)
        for method, url, data in self.requests(node):
            r = getattr(client, method)(url, data)
            assert r.status_code == 302, (method, url)
            assert r["Location"].startswith("/login/?next="), (method, url)
        assert list(Allocation.objects.values_list("port", flat=True)) == [25566]

    def test_it_refuses_non_staff_users(self, owner_client: Client, node: Node) -> None:
        free(node, 25566)
        for method, url, data in self.requests(node):
            r = getattr(owner_client, method)(url, data, HTTP_HX_REQUEST="true")
            assert r.status_code == 403, (method, url)
        assert list(Allocation.objects.values_list("port", flat=True)) == [25566]

    def test_it_needs_a_csrf_token(self, admin_user: User, node: Node) -> None:
        free(node, 25566)
        client = Client(enforce_csrf_checks=True)
        client.force_login(admin_user)
        for method, url, data in self.requests(node)[1:]:
            assert getattr(client, method)(url, data).status_code == 403, url
        assert list(Allocation.objects.values_list("port", flat=True)) == [25566]

    def test_it_answers_404_for_a_missing_node(self, admin_client: Client) -> None:
        assert admin_client.get("/admin/nodes/999/allocations/").status_code == 404
        r = admin_client.post("/admin/nodes/999/allocations/delete/", {})
        assert r.status_code == 404
