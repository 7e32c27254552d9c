"""An admin sets up a location and a node in a real browser, as they would click it."""

import re
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Locator, Page, expect
from pytest_django.live_server_helper import LiveServer

from locations.models import Location
from nodes.models import Node
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = re.compile(r"^[A-Za-z0-9_-]{43}$")


def log_in(page: Page, live_server: LiveServer, username: str) -> None:
    page.goto(live_server.url + "/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()


def nav(page: Page) -> Locator:
    return page.get_by_role("navigation", name="Main")


def clipboard(page: Page) -> str:
    return page.evaluate("navigator.clipboard.readText()")


def fill_node_form(page: Page, host: str) -> None:
    page.get_by_label("Display name").fill("fra-1")
    page.get_by_label("Location").select_option(label="EU Central")
    page.get_by_label("Host", exact=True).fill(host)
    page.get_by_label("Daemon port").fill("8080")
    page.get_by_label("Protocol").select_option(label="HTTP")
    page.get_by_label("CPU cores").fill("4")
    page.get_by_label("Memory (GB)").fill("8")
    page.get_by_label("Disk (GB)").fill("100")


def test_it_walks_an_admin_from_a_new_location_to_a_node_and_its_token(
    page: Page,
    live_server: LiveServer,
    admin_user: User,
    daemon_on_loopback: None,
    artifacts: Path,
) -> None:
    log_in(page, live_server, "alice")

    # A location, with the country given by name.
    nav(page).get_by_role("link", name="Locations").click()
    page.get_by_role("link", name="Add Location").click()
    page.get_by_label("Name", exact=True).fill("EU Central")
    page.get_by_label("Country").fill("Germany")
    page.get_by_label("City").fill("Frankfurt")
    page.get_by_role("button", name="Add Location").click()
    expect(page).to_have_url(live_server.url + "/admin/locations/")
    row = page.get_by_role("row").filter(has_text="EU Central")
    expect(row).to_contain_text("Frankfurt, DE")

    # A node on a link-local host is refused, and the form keeps what was typed.
    nav(page).get_by_role("link", name="Nodes").click()
    page.get_by_role("link", name="Add Node").click()
    fill_node_form(page, host="169.254.169.254")
    page.get_by_role("button", name="Add Node").click()
    expect(page.locator(".field-invalid .error[role=alert]")).to_contain_text(
        "link-local"
    )
    assert not Node.objects.exists()
    expect(page.get_by_label("Display name")).to_have_value("fra-1")
    location = Location.objects.get(name="EU Central")
    expect(page.get_by_label("Location")).to_have_value(str(location.pk))
    expect(page.get_by_label("Memory (GB)")).to_have_value("8")

    # With the host fixed, the node is made and its credentials are shown once.
    page.get_by_label("Host", exact=True).fill("127.0.0.1")
    page.get_by_role("button", name="Add Node").click()
    expect(page).to_have_url(re.compile(r"/admin/nodes/\d+/credentials/$"))
    node = Node.objects.get(name="fra-1")
    assert page.url == f"{live_server.url}/admin/nodes/{node.pk}/credentials/"
    expect(page.locator("#token-id")).to_have_text(node.token_id)
    page.screenshot(path=artifacts / "credentials.png", full_page=True)

    # The buttons say "Copied" for a while, so they are found by what they copy.
    copy = page.locator("button[data-copy='#token']")
    expect(copy).to_have_text("Copy")
    copy.click()
    expect(copy).to_have_text("Copied")
    token = clipboard(page)
    assert TOKEN.match(token), token
    expect(page.locator("#token")).to_have_text(token)
    assert token not in node.token_encrypted
    assert node.daemon_token() == token

    copy_config = page.locator("button[data-copy='#config']")
    expect(copy_config).to_have_text("Copy configuration")
    copy_config.click()
    expect(copy_config).to_have_text("Copied")
    config = clipboard(page)
    assert f'token_id = "{node.token_id}"' in config
    assert f'token = "{token}"' in config
    assert "port = 8080" in config

    shown_config = page.locator("#config").text_content()
    assert shown_config is not None
    assert shown_config.strip() == config
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download config.toml").click()
    download = download_info.value
    assert download.suggested_filename == f"stellar-{node.token_id}.toml"
    assert Path(download.path()).read_text(encoding="utf-8") == shown_config

    # Shown once: a reload no longer carries the token, only the way to rotate it.
    page.reload()
    expect(page.get_by_role("button", name="Rotate token")).to_be_visible()
    assert token not in page.content()

    # The node is listed under its location, offline until its daemon answers.
    nav(page).get_by_role("link", name="Nodes").click()
    group = page.locator("section.group").filter(
        has=page.get_by_role("heading", name="EU Central")
    )
    node_row = group.get_by_role("row").filter(has_text="fra-1")
    expect(node_row.locator(".badge")).to_have_text("Offline")
    expect(node_row).to_contain_text("http://127.0.0.1:8080")

    page.screenshot(path=artifacts / "nodes-list.png", full_page=True)


def test_it_keeps_a_non_staff_user_out_of_the_admin_pages(
    page: Page, live_server: LiveServer
) -> None:
    User.objects.create_user("dora", "dora@example.org", PASSWORD)
    log_in(page, live_server, "dora")

    expect(nav(page).get_by_role("link", name="My servers")).to_be_visible()
    expect(nav(page).get_by_role("link", name="Nodes")).to_have_count(0)

    response = page.goto(live_server.url + "/admin/nodes/")
    assert response is not None
    assert response.status == 403
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
