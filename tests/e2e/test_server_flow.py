"""An admin creates a server in a real browser; the allocations follow the node."""

from pathlib import Path

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect
from pytest_django.live_server_helper import LiveServer

from nodes.models import Allocation, Node
from servers.models import Server
from tests.conftest import PASSWORD, free_port, make_node, running_daemon

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_creates_a_server_on_the_chosen_nodes_allocation(
    page: Page,
    live_server: LiveServer,
    admin_user: User,
    owner: User,
    artifacts: Path,
    daemon_on_loopback: None,
    tmp_path: Path,
) -> None:
    alpha = make_node(
        "alpha",
        host="127.0.0.1",
        port=free_port(),
        protocol=Node.Protocol.HTTP,
        status=Node.Status.ONLINE,
    )
    beta = make_node("beta", host="203.0.113.20", status=Node.Status.ONLINE)
    Allocation.objects.create(node=alpha, ip="127.0.0.1", port=25565)
    Allocation.objects.create(node=beta, ip="203.0.113.20", port=27015)
    with running_daemon(alpha, tmp_path / "daemon", live_server.url):
        create_in_browser(page, live_server, owner, alpha, beta, artifacts)


def create_in_browser(
    page: Page,
    live_server: LiveServer,
    owner: User,
    alpha: Node,
    beta: Node,
    artifacts: Path,
) -> None:
    page.goto(live_server.url + "/login/")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("navigation", name="Main").get_by_role(
        "link", name="Servers", exact=True
    ).click()
    page.get_by_role("link", name="Create Server").click()

    # Choosing a node swaps in its free allocations, without a reload.
    page.get_by_label("Node").select_option(str(beta.pk))
    primary = page.get_by_label("Primary allocation")
    expect(primary.locator("option", has_text="27015")).to_have_count(1)
    expect(primary.locator("option", has_text="25565")).to_have_count(0)
    page.get_by_label("Node").select_option(str(alpha.pk))
    expect(primary.locator("option", has_text="25565")).to_have_count(1)
    expect(primary.locator("option", has_text="27015")).to_have_count(0)

    # Too much memory is refused, naming what is free; nothing is written.
    page.get_by_label("Name").fill("survival")
    page.get_by_label("Owner").select_option(label=owner.username)
    primary.select_option(label="127.0.0.1:25565")
    page.get_by_label("CPU (%)").fill("200")
    page.get_by_label("Memory (MB)").fill("99999")
    page.get_by_label("Disk (MB)").fill("10240")
    page.get_by_role("button", name="Create Server").click()
    expect(page.get_by_text("Node alpha has 16384 MB of memory free")).to_be_visible()
    assert not Server.objects.exists()
    page.screenshot(path=artifacts / "server-create-refused.png", full_page=True)

    page.get_by_label("Memory (MB)").fill("4096")
    page.get_by_role("button", name="Create Server").click()
    expect(page.get_by_role("heading", name="survival")).to_be_visible()
    expect(page.get_by_text("127.0.0.1:25565")).to_be_visible()
    server = Server.objects.get()
    assert (server.node, server.owner, server.memory_mb) == (alpha, owner, 4096)
    assert server.primary_allocation.port == 25565
