from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from nodes.models import Node
from servers.models import SftpLogin
from tests.conftest import PASSWORD, make_user
from tests.nodes.test_remote_api import make_server

pytestmark = pytest.mark.django_db

LOG = "/admin/servers/sftp-logins/"


def log(result: str = "granted", **fields) -> SftpLogin:
    values = {
        "username": "abcdefghij.bob@example.org",
        "ip": "203.0.113.7",
        "node_name": "alpha",
        "server_public_id": "abcdefghij",
        "user_name": "bob",
        "result": result,
    } | fields
    return SftpLogin.objects.create(**values)


class TestServerPage:
    def test_it_shows_the_owner_ready_to_copy_connection_details(
        self, owner_client: Client, node: Node, owner: User
    ) -> None:
        server = make_server(node, owner)

        page = owner_client.get(f"/servers/{server.public_id}/").content.decode()

        username = f"{server.public_id}.{owner.email}"
        assert f'<span class="mono" id="sftp-host">{node.host}</span>' in page
        assert f'<span class="mono" id="sftp-port">{node.sftp_port}</span>' in page
        assert f'<span class="mono" id="sftp-username">{username}</span>' in page
        assert f"sftp -P {node.sftp_port} {username}@{node.host}" in page
        # Owners do not read the login log.
        assert "Recent logins" not in page

    def test_it_brackets_an_ipv6_host_in_the_command_line(
        self, owner_client: Client, node: Node, owner: User
    ) -> None:
        Node.objects.filter(pk=node.pk).update(host="2001:db8::1")
        server = make_server(node, owner)

        page = owner_client.get(f"/servers/{server.public_id}/").content.decode()

        username = f"{server.public_id}.{owner.email}"
        assert f"sftp -P {node.sftp_port} {username}@[2001:db8::1]</code>" in page
        # The host on its own stays bare, as SFTP clients ask for it.
        assert '<span class="mono" id="sftp-host">2001:db8::1</span>' in page

    def test_an_admin_sees_their_own_username_and_recent_logins(
        self, admin_client: Client, node: Node, owner: User, admin_user: User
    ) -> None:
        server = make_server(node, owner)
        log("refused", server_public_id=server.public_id, ip="198.51.100.9")
        log(server_public_id="otherserve", ip="198.51.100.77")

        page = admin_client.get(f"/servers/{server.public_id}/").content.decode()

        assert f"{server.public_id}.{admin_user.email}@{node.host}" in page
        assert "Recent logins" in page
        assert "198.51.100.9" in page
        assert "198.51.100.77" not in page
        assert f"{LOG}?server={server.public_id}" in page

    def test_a_user_without_an_address_is_told_what_to_ask_for(
        self, node: Node
    ) -> None:
        user = make_user("noaddress")
        User.objects.filter(pk=user.pk).update(email="")
        server = make_server(node, user)
        client = Client()
        client.login(username="noaddress", password=PASSWORD)

        page = client.get(f"/servers/{server.public_id}/").content.decode()

        assert "Your account has no e-mail address" in page
        assert "sftp -P" not in page


class TestLoginLog:
    def test_it_is_for_admins_only(self, owner_client: Client) -> None:
        assert Client().get(LOG).status_code == 302
        assert owner_client.get(LOG).status_code == 403

    def test_it_lists_who_which_server_from_where_when_and_the_result(
        self, admin_client: Client
    ) -> None:
        log("refused", reason="wrong password", ip="2001:db8::5")

        page = admin_client.get(LOG).content.decode()

        for text in ("abcdefghij.bob@example.org", "bob", "abcdefghij", "alpha"):
            assert text in page
        assert "2001:db8::5" in page
        assert "wrong password" in page
        assert "badge-sftp-refused" in page

    def test_it_filters_by_result_server_and_search(self, admin_client: Client) -> None:
        log("granted", ip="198.51.100.1")
        log("throttled", ip="198.51.100.2", server_public_id="zzzzzzzzzz")
        log("refused", ip="198.51.100.3", node_name="beta")

        def shown(query: str) -> set[str]:
            page = admin_client.get(LOG + query).content.decode()
            return {f"198.51.100.{n}" for n in (1, 2, 3) if f"198.51.100.{n}<" in page}

        assert shown("") == {"198.51.100.1", "198.51.100.2", "198.51.100.3"}
        assert shown("?result=throttled") == {"198.51.100.2"}
        assert shown("?server=zzzzzzzzzz") == {"198.51.100.2"}
        assert shown("?q=beta") == {"198.51.100.3"}
        assert shown("?q=198.51.100.1") == {"198.51.100.1"}
        # An unknown result shows everything rather than failing.
        assert len(shown("?result=bogus")) == 3

    def test_it_pages_newest_first_keeping_the_filters(
        self, admin_client: Client
    ) -> None:
        now = timezone.now()
        for n in range(60):
            entry = log("refused", ip=f"10.0.0.{n}")
            SftpLogin.objects.filter(pk=entry.pk).update(
                created=now - timedelta(minutes=n)
            )

        first = admin_client.get(LOG + "?result=refused").content.decode()
        second = admin_client.get(LOG + "?result=refused&page=2").content.decode()

        assert "10.0.0.0<" in first and "10.0.0.59<" not in first
        assert "10.0.0.59<" in second
        assert "?result=refused&amp;page=2" in first
