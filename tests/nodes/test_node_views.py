import ipaddress
import re

import pytest
from django.contrib.auth.models import User
from django.db import IntegrityError, connection, transaction
from django.test import Client

from locations.models import Location
from nodes.models import Allocation, Node
from servers.models import Server
from tests.conftest import make_node

pytestmark = pytest.mark.django_db

TOKEN = re.compile(r'id="token">([A-Za-z0-9_-]{43})<')


def node_form(**fields) -> dict:
    return {
        "name": "fra-1",
        "host": "93.184.215.14",
        "port": "8080",
        "protocol": "HTTPS",
        "cpu_cores": "8",
        "memory_gb": "32",
        "disk_gb": "500",
        "sftp_port": "2022",
        "upload_limit_mb": "100",
    } | fields


class TestNodeCreate:
    def test_it_creates_a_node_and_shows_its_token_once(
        self, admin_client: Client, location: Location
    ) -> None:
        r = admin_client.post(
            "/admin/nodes/new/", node_form(location=location.pk), follow=True
        )
        node = Node.objects.get()
        assert r.redirect_chain == [(f"/admin/nodes/{node.pk}/credentials/", 302)]
        assert (node.memory_mb, node.disk_mb, node.cpu_cores) == (32768, 512000, 8)
        assert node.location == location

        token = TOKEN.search(r.content.decode()).group(1)
        assert node.daemon_token() == token
        assert re.fullmatch(r"[a-z0-9]{16}", node.token_id)
        # The configuration file carries both credentials and the node's ports.
        config = r.context["config"]
        assert f'token_id = "{node.token_id}"' in config
        assert f'token = "{token}"' in config
        assert "port = 8080" in config and "port = 2022" in config
        assert "no-store" in r["Cache-Control"]

        # Shown once: a reload, the node page, the list and Django admin never
        # show it again.
        superuser = User.objects.create_superuser("root", "root@example.org", "x")
        root_client = Client()
        root_client.force_login(superuser)
        for client, url in (
            (admin_client, f"/admin/nodes/{node.pk}/credentials/"),
            (admin_client, f"/admin/nodes/{node.pk}/"),
            (admin_client, "/admin/nodes/"),
            (root_client, f"/django-admin/nodes/node/{node.pk}/change/"),
            (root_client, "/django-admin/nodes/node/"),
        ):
            page = client.get(url)
            assert page.status_code == 200, url
            assert token not in page.content.decode(), url
        assert (
            "Rotate token"
            in admin_client.get(f"/admin/nodes/{node.pk}/credentials/").content.decode()
        )

    def test_it_stores_the_token_encrypted(self, node: Node) -> None:
        token = node.rotate_token()
        row = Node.objects.values("token_encrypted").get(pk=node.pk)
        assert token not in row["token_encrypted"]
        assert Node.objects.get(pk=node.pk).daemon_token() == token

    def test_it_does_not_show_one_nodes_token_on_anothers_page(
        self, admin_client: Client
    ) -> None:
        admin_client.post("/admin/nodes/new/", node_form())
        other = make_node("other", host="93.184.215.15")
        r = admin_client.get(f"/admin/nodes/{other.pk}/credentials/")
        assert "token" not in r.context

    @pytest.mark.parametrize(
        "field, value, message",
        [
            ("name", "", "required"),
            ("host", "", "required"),
            ("host", "https://node.example.com", "without a scheme"),
            ("host", "node.example.com:8080", "without a port"),
            ("host", "127.0.0.1", "DAEMON_ALLOWED_NETWORKS"),
            ("host", "169.254.169.254", "link-local"),
            ("host", "10.0.0.5", "private address"),
            ("host", "::ffff:127.0.0.1", "loopback"),
            ("host", "localhost", "loopback"),
            ("port", "0", "greater than or equal to 1"),
            ("port", "70000", "less than or equal to 65535"),
            ("protocol", "FTP", "not one of the available choices"),
            ("cpu_cores", "0", "greater than or equal to 1"),
            ("cpu_cores", "5000", "less than or equal to 4096"),
            ("cpu_cores", "2.5", "whole number"),
            ("memory_gb", "-1", "greater than or equal to 1"),
            ("memory_gb", "70000", "less than or equal to 65536"),
            ("disk_gb", "", "required"),
            ("disk_gb", "9999999", "less than or equal to 1048576"),
            ("sftp_port", "8080", "must differ from the daemon port"),
            ("sftp_port", "65536", "less than or equal to 65535"),
            ("upload_limit_mb", "0", "greater than or equal to 1"),
            ("upload_limit_mb", "10241", "less than or equal to 10240"),
        ],
    )
    def test_it_refuses_bad_input_naming_the_field(
        self, admin_client: Client, field: str, value: str, message: str
    ) -> None:
        r = admin_client.post("/admin/nodes/new/", node_form(**{field: value}))
        assert r.status_code == 200
        errors = r.context["form"].errors
        assert list(errors) == [field]
        assert message in errors[field][0]
        # Nothing is lost: the other values are still in the form.
        assert 'value="fra-1"' in r.content.decode() or field == "name"
        assert not Node.objects.exists()

    def test_it_accepts_a_private_host_inside_the_allowed_networks(
        self, admin_client: Client, settings
    ) -> None:
        settings.DAEMON_ALLOWED_NETWORKS = [ipaddress.ip_network("10.0.0.0/8")]
        r = admin_client.post("/admin/nodes/new/", node_form(host="10.0.0.5"))
        assert r.status_code == 302
        assert Node.objects.get().host == "10.0.0.5"

    def test_it_refuses_a_second_node_on_the_same_host_and_port(
        self, admin_client: Client
    ) -> None:
        admin_client.post("/admin/nodes/new/", node_form())
        r = admin_client.post("/admin/nodes/new/", node_form(name="again"))
        assert "already uses this host and port" in str(r.context["form"].errors)
        assert Node.objects.count() == 1

    def test_it_checks_the_host_live_for_htmx(self, admin_client: Client) -> None:
        r = admin_client.post(
            "/admin/nodes/check-host/", {"host": "169.254.169.254"}, HTTP_HX_REQUEST="1"
        )
        body = r.content.decode()
        assert body.startswith('<p id="host-check"')
        assert "link-local" in body and "<html" not in body

        r = admin_client.post("/admin/nodes/check-host/", {"host": "93.184.215.14"})
        assert "Resolves to 93.184.215.14: allowed." in r.content.decode()


class TestNodeEdit:
    def test_it_changes_only_the_editable_fields(
        self, admin_client: Client, node: Node
    ) -> None:
        before = (node.host, node.port, node.protocol, node.token_id)
        r = admin_client.post(
            f"/admin/nodes/{node.pk}/edit/",
            node_form(
                name="renamed",
                host="93.184.215.99",
                port="9999",
                protocol="HTTP",
                cpu_cores="16",
                memory_gb="64",
                disk_gb="1000",
                sftp_port="2222",
                upload_limit_mb="500",
            ),
        )
        assert r.status_code == 302
        node.refresh_from_db()
        assert (node.host, node.port, node.protocol, node.token_id) == before
        assert node.name == "renamed"
        assert (node.cpu_cores, node.memory_mb, node.disk_mb) == (16, 65536, 1024000)
        assert (node.sftp_port, node.upload_limit_mb) == (2222, 500)

    def test_it_shows_the_fixed_connection_and_current_values(
        self, admin_client: Client, node: Node
    ) -> None:
        r = admin_client.get(f"/admin/nodes/{node.pk}/edit/")
        body = r.content.decode()
        assert "https://203.0.113.10:8080" in body
        assert 'name="host"' not in body and 'name="port"' not in body
        assert r.context["form"]["memory_gb"].value() == 16

    def test_it_refuses_an_sftp_port_equal_to_the_daemon_port(
        self, admin_client: Client, node: Node
    ) -> None:
        r = admin_client.post(
            f"/admin/nodes/{node.pk}/edit/", node_form(sftp_port="8080")
        )
        assert "must differ" in r.context["form"].errors["sftp_port"][0]


class TestNodeDelete:
    def test_it_asks_and_says_the_daemon_keeps_running(
        self, admin_client: Client, node: Node
    ) -> None:
        r = admin_client.get(f"/admin/nodes/{node.pk}/delete/")
        assert "daemon on that machine keeps running" in r.content.decode()
        assert Node.objects.exists()

    def test_it_deletes_a_node_with_its_free_allocations(
        self, admin_client: Client, node: Node
    ) -> None:
        Allocation.objects.create(node=node, ip="203.0.113.10", port=25565)
        r = admin_client.post(f"/admin/nodes/{node.pk}/delete/")
        assert r.status_code == 302
        assert not Node.objects.exists()
        assert not Allocation.objects.exists()

    def test_it_refuses_while_the_node_has_servers(
        self, admin_client: Client, node: Node, owner: User
    ) -> None:
        Server.objects.create(
            name="survival", owner=owner, node=node, cpu=100, memory_mb=1024, disk_mb=1
        )
        r = admin_client.post(f"/admin/nodes/{node.pk}/delete/")
        assert r.status_code == 200
        assert "it has servers (survival)" in r.content.decode()
        assert Node.objects.exists()


class TestNodeDeleteGuard:
    """The database refuses, whatever issues the DELETE."""

    def server_on(self, node: Node, owner: User) -> Server:
        return Server.objects.create(
            name="s", owner=owner, node=node, cpu=100, memory_mb=1024, disk_mb=1
        )

    def raw_delete(self, node: Node) -> None:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("DELETE FROM nodes_node WHERE id = %s", [node.pk])

    def test_it_refuses_a_raw_delete_of_a_node_with_servers(
        self, node: Node, owner: User
    ) -> None:
        self.server_on(node, owner)
        with pytest.raises(IntegrityError, match="stellar: node has servers"):
            self.raw_delete(node)
        assert Node.objects.filter(pk=node.pk).exists()

    def test_it_refuses_a_raw_delete_of_a_node_with_assigned_allocations(
        self, node: Node, owner: User
    ) -> None:
        server = self.server_on(node, owner)
        Allocation.objects.create(node=node, ip="203.0.113.10", port=25565)
        with connection.cursor() as cursor:
            # Leave only the assigned allocation behind the node.
            cursor.execute("UPDATE nodes_allocation SET server_id = %s", [server.pk])
        with pytest.raises(IntegrityError, match="assigned allocations"):
            self.raw_delete(node)
        assert Allocation.objects.count() == 1

    def test_it_removes_free_allocations_with_a_raw_delete(self, node: Node) -> None:
        Allocation.objects.create(node=node, ip="203.0.113.10", port=25565)
        self.raw_delete(node)
        assert not Node.objects.exists()
        assert not Allocation.objects.exists()


class TestRotateToken:
    def test_it_replaces_the_token_and_shows_the_new_one_once(
        self, admin_client: Client, node: Node
    ) -> None:
        old = node.daemon_token()
        r = admin_client.post(f"/admin/nodes/{node.pk}/rotate-token/", follow=True)
        node.refresh_from_db()
        new = TOKEN.search(r.content.decode()).group(1)
        assert new == node.daemon_token() != old
        assert "is refused until its configuration file has the new one" in (
            r.content.decode()
        )
        r = admin_client.get(f"/admin/nodes/{node.pk}/credentials/")
        assert new not in r.content.decode()

    def test_it_only_rotates_on_post(self, admin_client: Client, node: Node) -> None:
        old = node.daemon_token()
        assert (
            admin_client.get(f"/admin/nodes/{node.pk}/rotate-token/").status_code == 405
        )
        node.refresh_from_db()
        assert node.daemon_token() == old


class TestNodePages:
    def test_it_groups_the_list_by_location(
        self, admin_client: Client, location: Location
    ) -> None:
        make_node("la-1", location=location)
        make_node("nowhere", host="93.184.215.20")
        r = admin_client.get("/admin/nodes/")
        body = r.content.decode()
        assert body.index("US West") < body.index("la-1") < body.index("No location")
        assert body.index("No location") < body.index("nowhere")
        assert body.count("badge-offline") == 2

    def test_it_shows_a_nodes_details(self, admin_client: Client, node: Node) -> None:
        r = admin_client.get(f"/admin/nodes/{node.pk}/")
        body = r.content.decode()
        for text in (
            "https://203.0.113.10:8080",
            "8 cores",
            "16 GB",
            "200 GB",
            "2022",
            "100 MB",
            "Offline",
            "No servers on this node.",
            "No allocations on this node.",
        ):
            assert text in body, text

    def test_it_answers_404_for_a_missing_node(self, admin_client: Client) -> None:
        assert admin_client.get("/admin/nodes/999/").status_code == 404


class TestNodePermissions:
    def urls(self, node: Node) -> list[tuple[str, str]]:
        return [
            ("get", "/admin/nodes/"),
            ("get", "/admin/nodes/new/"),
            ("post", "/admin/nodes/new/"),
            ("post", "/admin/nodes/check-host/"),
            ("get", f"/admin/nodes/{node.pk}/"),
            ("get", f"/admin/nodes/{node.pk}/edit/"),
            ("post", f"/admin/nodes/{node.pk}/edit/"),
            ("get", f"/admin/nodes/{node.pk}/credentials/"),
            ("post", f"/admin/nodes/{node.pk}/rotate-token/"),
            ("get", f"/admin/nodes/{node.pk}/delete/"),
            ("post", f"/admin/nodes/{node.pk}/delete/"),
        ]

    def test_it_sends_anonymous_users_to_log_in(
        self, client: Client, node: Node
    ) -> None:
        for method, url in self.urls(node):
            r = getattr(client, method)(url)
            assert r.status_code == 302, url
            assert r["Location"].startswith("/login/?next="), url

    def test_it_refuses_non_staff_users(self, owner_client: Client, node: Node) -> None:
        token = node.daemon_token()
        for method, url in self.urls(node):
            r = getattr(owner_client, method)(url, node_form())
            assert r.status_code == 403, url
            assert token not in r.content.decode()
        node.refresh_from_db()
        assert node.daemon_token() == token
        assert Node.objects.count() == 1

    def test_it_refuses_inactive_staff(self, admin_user: User, node: Node) -> None:
        client = Client()
        client.force_login(admin_user)
        admin_user.is_active = False
        admin_user.save()
        assert client.get("/admin/nodes/").status_code == 302


class TestUnreadableToken:
    def test_it_says_so_instead_of_failing(
        self, admin_client: Client, node: Node, settings
    ) -> None:
        from cryptography.fernet import Fernet

        from nodes.views import REVEAL_KEY

        session = admin_client.session
        session[REVEAL_KEY] = node.pk
        session.save()
        settings.ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
        r = admin_client.get(f"/admin/nodes/{node.pk}/credentials/")
        assert r.status_code == 200
        assert "unreadable" in r.content.decode()
        assert "Rotate token" in r.content.decode()


class TestDaemonConfig:
    @pytest.mark.parametrize("protocol", ["HTTP", "HTTPS", "HTTPS_PROXY"])
    def test_it_writes_a_toml_file_the_daemon_can_read(
        self, node: Node, protocol: str, settings
    ) -> None:
        import tomllib

        settings.PANEL_URL = "https://panel.example.com"
        node.protocol = protocol
        config = tomllib.loads(node.daemon_config("secret-token"))
        assert config["panel"] == {
            "url": "https://panel.example.com",
            "token_id": node.token_id,
            "token": "secret-token",
        }
        assert config["api"]["port"] == 8080
        assert config["api"]["upload_limit_mb"] == 100
        assert ("tls_cert" in config["api"]) == (protocol == "HTTPS")
        assert config["sftp"]["port"] == 2022
        assert config["system"]["data_dir"] == "/var/lib/stellar"


class TestNodeLimits:
    def test_it_refuses_limits_below_what_the_servers_use(
        self, admin_client: Client, node: Node, owner: User
    ) -> None:
        Server.objects.create(
            name="big", owner=owner, node=node, cpu=300, memory_mb=10240, disk_mb=1
        )
        r = admin_client.post(
            f"/admin/nodes/{node.pk}/edit/",
            node_form(cpu_cores="2", memory_gb="8", disk_gb="200"),
        )
        errors = r.context["form"].errors
        assert "use 300 % CPU (3 cores)" in errors["cpu_cores"][0]
        assert "use 10240 MB of memory" in errors["memory_gb"][0]
        node.refresh_from_db()
        assert (node.cpu_cores, node.memory_mb) == (8, 16384)

        r = admin_client.post(
            f"/admin/nodes/{node.pk}/edit/",
            node_form(cpu_cores="3", memory_gb="10", disk_gb="200"),
        )
        assert r.status_code == 302


class TestNodeDeleteWithHistory:
    def test_it_removes_the_status_history_with_a_raw_delete(self, node: Node) -> None:
        from nodes.models import NodeStatusChange

        NodeStatusChange.objects.create(node=node, old="offline", new="online")
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM nodes_node WHERE id = %s", [node.pk])
        assert not NodeStatusChange.objects.exists()
