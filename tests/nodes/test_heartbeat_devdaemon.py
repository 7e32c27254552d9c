"""The heartbeat against a real development daemon: stopped, restarted, re-keyed."""

import ipaddress
from pathlib import Path

import pytest

from locations.models import Location
from nodes.heartbeat import run_sweep
from nodes.models import Node
from tests.conftest import free_port, make_node, running_daemon

pytestmark = pytest.mark.django_db


@pytest.fixture
def local(settings, location: Location) -> Node:
    settings.DAEMON_ALLOWED_NETWORKS = [ipaddress.ip_network("127.0.0.0/8")]
    return make_node(
        "local",
        location=location,
        host="127.0.0.1",
        port=free_port(),
        protocol=Node.Protocol.HTTP,
    )


def sweep(node: Node) -> Node:
    run_sweep()
    node.refresh_from_db()
    return node


class TestHeartbeatWithDevdaemon:
    def test_it_follows_the_daemon_down_and_up(
        self, local: Node, tmp_path: Path
    ) -> None:
        panel = f"http://127.0.0.1:{free_port()}"
        with running_daemon(local, tmp_path / "d", panel):
            node = sweep(local)
            assert node.status == "online"
            assert node.latency_ms is not None
            assert node.daemon_info["cpu_count"] >= 1
            assert abs(node.clock_offset_s) < 5

        node = sweep(local)
        assert (node.status, node.last_error_category) == ("offline", "refused")

        with running_daemon(local, tmp_path / "d", panel):
            assert sweep(local).status == "online"
        changes = list(local.status_changes.order_by("created").values_list("new"))
        assert changes == [("online",), ("offline",), ("online",)]

    def test_it_says_unauthorized_when_the_token_changed(
        self, local: Node, tmp_path: Path
    ) -> None:
        with running_daemon(local, tmp_path / "d", f"http://127.0.0.1:{free_port()}"):
            # The daemon keeps the old token; the panel signs with the new one.
            local.rotate_token()
            node = sweep(local)
        assert (node.status, node.last_error_category) == ("offline", "unauthorized")
        assert "token" in " ".join(node.advice()).lower()
