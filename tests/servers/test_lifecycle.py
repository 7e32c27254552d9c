"""A server's whole life, from the panel's views, against a real development daemon."""

import asyncio
import ipaddress
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
from django.contrib.auth.models import User
from django.test import Client
from pytest_django.live_server_helper import LiveServer

from locations.models import Location
from nodes.daemon import Daemon, DaemonError, websocket_target
from nodes.models import Allocation, Node
from servers.models import Server
from tests.conftest import free_port, make_node, running_daemon

pytestmark = pytest.mark.django_db(transaction=True)


def wait_for(check: Callable[[], bool], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


@pytest.fixture
def reporting_node(
    loopback_node: Node, tmp_path: Path, live_server: LiveServer
) -> Iterator[Node]:
    """A node whose daemon reports back to the panel, served by the live server."""
    with running_daemon(loopback_node, tmp_path / "daemon", live_server.url):
        yield loopback_node


def create(client: Client, node: Node, owner: User, port: int) -> Server:
    allocation = Allocation.objects.create(node=node, ip="127.0.0.1", port=port)
    r = client.post(
        "/admin/servers/new/",
        {
            "name": "survival",
            "owner": owner.pk,
            "node": node.pk,
            "allocation": allocation.pk,
            "cpu": "100",
            "memory_mb": "512",
            "disk_mb": "1024",
        },
    )
    assert r.status_code == 302, r.context["form"].errors
    return Server.objects.get()


def status_of(server: Server) -> str:
    return Server.objects.values_list("status", flat=True).get(pk=server.pk)


class TestServerLifecycle:
    def test_it_creates_installs_starts_stops_and_deletes(
        self, admin_client: Client, reporting_node: Node, owner: User
    ) -> None:
        port = free_port()
        server = create(admin_client, reporting_node, owner, port)
        daemon = Daemon(reporting_node)
        assert daemon.server(server.public_id)["limits"]["memory_mb"] == 512

        # The daemon installs it and says so through the remote API.
        wait_for(lambda: status_of(server) == "offline")

        owner_client = Client()
        owner_client.force_login(owner)
        r = owner_client.post(
            f"/servers/{server.public_id}/power/", {"action": "start"}
        )
        assert r.status_code == 302
        wait_for(lambda: status_of(server) == "running")
        # The game server really listens at its allocation, and its console
        # reaches the panel over the signed WebSocket.
        wait_for(lambda: _answers(port))
        lines = asyncio.run(_console(reporting_node, server.public_id))
        assert any("Done!" in line for line in lines), lines

        r = admin_client.post(
            f"/servers/{server.public_id}/power/",
            {"action": "stop", "next": f"/admin/nodes/{reporting_node.pk}/"},
        )
        assert r["Location"] == f"/admin/nodes/{reporting_node.pk}/"
        wait_for(lambda: status_of(server) == "offline")

        r = admin_client.post(f"/admin/servers/{server.public_id}/delete/")
        assert r.status_code == 302
        assert not Server.objects.exists()
        with pytest.raises(DaemonError) as gone:
            daemon.server(server.public_id)
        assert gone.value.category == "not_found"

    def test_it_resizes_on_the_daemon_too(
        self, admin_client: Client, reporting_node: Node, owner: User
    ) -> None:
        server = create(admin_client, reporting_node, owner, free_port())
        allocation = server.allocations.get()
        r = admin_client.post(
            f"/admin/servers/{server.public_id}/edit/",
            {
                "name": "survival",
                "owner": owner.pk,
                "allocation": allocation.pk,
                "cpu": "150",
                "memory_mb": "2048",
                "disk_mb": "1024",
            },
        )
        assert r.status_code == 302
        limits = Daemon(reporting_node).server(server.public_id)["limits"]
        assert (limits["cpu"], limits["memory_mb"]) == (150, 2048)

    def test_it_refuses_a_second_start_with_the_daemons_reason(
        self, admin_client: Client, reporting_node: Node, owner: User
    ) -> None:
        server = create(admin_client, reporting_node, owner, free_port())
        wait_for(lambda: status_of(server) == "offline")
        admin_client.post(f"/servers/{server.public_id}/power/", {"action": "start"})
        r = admin_client.post(
            f"/servers/{server.public_id}/power/", {"action": "start"}, follow=True
        )
        assert "refused" in r.content.decode()
        admin_client.post(f"/servers/{server.public_id}/power/", {"action": "kill"})
        wait_for(lambda: status_of(server) == "offline")


async def _console(node: Node, server_id: str) -> list[str]:
    url, headers, _ = await asyncio.to_thread(websocket_target, node, server_id)
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url, headers=headers) as ws,
    ):
        await ws.send_json({"event": "send logs", "args": []})
        lines: list[str] = []
        while not any("Done!" in line for line in lines):
            frame = await ws.receive_json(timeout=10)
            if frame["event"] == "console output":
                lines.extend(frame["args"])
        return lines


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.mark.django_db
class TestDaemonTrouble:
    @pytest.fixture
    def silent_node(self, settings, location: Location) -> Node:
        """Marked online, but nothing listens at its port."""
        settings.DAEMON_ALLOWED_NETWORKS = [ipaddress.ip_network("127.0.0.0/8")]
        return make_node(
            "silent",
            location=location,
            host="127.0.0.1",
            port=free_port(),
            protocol=Node.Protocol.HTTP,
            status=Node.Status.ONLINE,
        )

    def test_it_keeps_no_half_made_server(
        self, admin_client: Client, silent_node: Node, owner: User
    ) -> None:
        allocation = Allocation.objects.create(
            node=silent_node, ip="127.0.0.1", port=25565
        )
        r = admin_client.post(
            "/admin/servers/new/",
            {
                "name": "survival",
                "owner": owner.pk,
                "node": silent_node.pk,
                "allocation": allocation.pk,
                "cpu": "100",
                "memory_mb": "512",
                "disk_mb": "1024",
            },
        )
        assert r.status_code == 200
        assert "The daemon on node silent could not be reached" in str(
            r.context["form"].non_field_errors()
        )
        assert not Server.objects.exists()
        allocation.refresh_from_db()
        assert allocation.server is None

    def test_it_offers_to_delete_from_the_panel_only(
        self, admin_client: Client, silent_node: Node, owner: User
    ) -> None:
        server = Server.objects.create(
            name="stuck", owner=owner, node=silent_node, cpu=1, memory_mb=1, disk_mb=1
        )
        r = admin_client.post(f"/admin/servers/{server.public_id}/delete/")
        assert r.status_code == 200
        assert "could not be reached" in r.content.decode()
        assert Server.objects.exists()

        r = admin_client.post(
            f"/admin/servers/{server.public_id}/delete/", {"force": "1"}
        )
        assert r.status_code == 302
        assert not Server.objects.exists()

    def test_it_refuses_power_while_the_node_is_offline(
        self, owner_client: Client, node: Node, owner: User
    ) -> None:
        server = Server.objects.create(
            name="s", owner=owner, node=node, cpu=1, memory_mb=1, disk_mb=1
        )
        r = owner_client.post(
            f"/servers/{server.public_id}/power/", {"action": "start"}, follow=True
        )
        assert "alpha is offline" in r.content.decode()

    def test_it_refuses_power_on_someone_elses_server(
        self, client: Client, outsider: User, node: Node, owner: User
    ) -> None:
        server = Server.objects.create(
            name="s", owner=owner, node=node, cpu=1, memory_mb=1, disk_mb=1
        )
        client.force_login(outsider)
        r = client.post(f"/servers/{server.public_id}/power/", {"action": "kill"})
        assert r.status_code == 404
        assert client.get(f"/servers/{server.public_id}/power/").status_code == 405


class TestReinstall:
    def test_it_installs_again(
        self, admin_client: Client, reporting_node: Node, owner: User
    ) -> None:
        server = create(admin_client, reporting_node, owner, free_port())
        wait_for(lambda: status_of(server) == "offline")
        r = admin_client.post(f"/admin/servers/{server.public_id}/reinstall/")
        assert r.status_code == 302
        assert status_of(server) in ("installing", "offline")
        wait_for(lambda: status_of(server) == "offline")

    def test_it_is_for_admins_only(
        self, owner_client: Client, node: Node, owner: User
    ) -> None:
        server = Server.objects.create(
            name="s", owner=owner, node=node, cpu=1, memory_mb=1, disk_mb=1
        )
        r = owner_client.post(f"/admin/servers/{server.public_id}/reinstall/")
        assert r.status_code == 403
