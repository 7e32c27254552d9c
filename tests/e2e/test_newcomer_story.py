"""A newcomer's first hour, in Chromium, against the panel as production runs it.

A fresh database, Daphne in a subprocess with its heartbeat every 5 s, and a
development daemon started from the configuration file the credentials page hands
out. The admin sets up a location, a node and its allocations and creates a server;
its owner runs it from the console; the admin meets every refusal on the way out.
The screenshots the README shows are taken here: they land with the other test
artifacts, and in docs/screenshots when README_SCREENSHOTS=1 is set.
"""

import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.conftest import PASSWORD, ROOT, free_port, stop
from tests.e2e.conftest import TIMEOUT_MS, start_daphne
from tests.stellarpanel.test_asgi import panel_env, wait_until_serving

README_SCREENSHOTS = ROOT / "docs" / "screenshots"
OWNER = """
from django.contrib.auth.models import User
User.objects.create_user("bob", "bob@example.org", {password!r})
"""


class Panel:
    def __init__(self, url: str, database: Path, log: Path) -> None:
        self.url, self.database, self.log = url, database, log

    def value(self, query: str, *params: object) -> object:
        with sqlite3.connect(self.database) as db:
            row = db.execute(query, params).fetchone()
        return row and row[0]

    def wait_for(self, check: Callable[[], bool], seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while not check():
            if time.monotonic() > deadline:
                pytest.fail(f"timed out; the panel's log:\n{self.log.read_text()}")
            time.sleep(0.2)


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture
def panel(tmp_path: Path) -> Iterator[Panel]:
    """A migrated empty database, its first admin and a user, and Daphne on it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = panel_env(tmp_path) | {
        "ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "DAEMON_ALLOWED_NETWORKS": "127.0.0.0/8",
        "HEARTBEAT_INTERVAL": "5",
        "HEARTBEAT_TIMEOUT": "2",
        "PANEL_URL": url,
    }
    manage(env, "migrate", "--no-input")
    admin = env | {"STELLAR_ADMIN_PASSWORD": PASSWORD}
    manage(admin, "createadmin", "--username", "alice", "--email", "alice@example.org")
    manage(env, "shell", "-c", OWNER.format(password=PASSWORD))

    log = tmp_path / "daphne.log"
    process = start_daphne(env, port, log)
    try:
        wait_until_serving(process, url, log)
        yield Panel(url, tmp_path / "db.sqlite3", log)
    finally:
        stop(process)


def new_page(browser: Browser, panel: Panel) -> tuple[BrowserContext, Page]:
    context = browser.new_context(
        base_url=panel.url,
        accept_downloads=True,
        viewport={"width": 1440, "height": 900},
    )
    context.set_default_timeout(TIMEOUT_MS)
    return context, context.new_page()


def log_in(page: Page, username: str) -> None:
    page.goto("/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()


def nav(page: Page, name: str) -> None:
    page.get_by_role("navigation", name="Main").get_by_role(
        "link", name=name, exact=True
    ).click()


def message(page: Page, text: str) -> None:
    expect(page.locator(".messages")).to_contain_text(text)


def for_this_machine(config: str, data_dir: Path) -> str:
    """The downloaded file, on loopback only, with its data in a test folder."""
    config = config.replace('host = "0.0.0.0"', 'host = "127.0.0.1"')
    return re.sub(r'(?m)^data_dir = ".*"$', f'data_dir = "{data_dir}"', config)


@pytest.fixture
def daemon_process() -> Iterator[list[subprocess.Popen[bytes]]]:
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        stop(process)


def test_it_takes_a_newcomer_from_an_empty_panel_to_a_running_server_and_back(
    browser: Browser,
    panel: Panel,
    tmp_path: Path,
    daemon_process: list[subprocess.Popen[bytes]],
    artifacts: Path,
) -> None:
    def screenshot(shown: Page, name: str, full_page: bool = True) -> None:
        taken = artifacts / f"newcomer-{name}"
        shown.screenshot(path=taken, full_page=full_page)
        if os.environ.get("README_SCREENSHOTS") == "1":
            README_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(taken, README_SCREENSHOTS / name)

    daemon_port, sftp_port = free_port(), free_port()
    game_ports = sorted({free_port() for _ in range(3)})
    while len(game_ports) < 3:
        game_ports = sorted({*game_ports, free_port()})
    first, second, third = (f"127.0.0.1:{p}" for p in game_ports)
    context, page = new_page(browser, panel)
    log_in(page, "alice")

    # A location, then a node in it for a daemon on this machine.
    nav(page, "Locations")
    page.get_by_role("link", name="Add Location").click()
    page.get_by_label("Name", exact=True).fill("EU Central")
    page.get_by_label("Country").fill("Germany")
    page.get_by_label("City").fill("Frankfurt")
    page.get_by_role("button", name="Add Location").click()
    nav(page, "Nodes")
    page.get_by_role("link", name="Add Node").click()
    page.get_by_label("Display name").fill("fra-1")
    page.get_by_label("Location").select_option(label="EU Central")
    page.get_by_label("Host", exact=True).fill("127.0.0.1")
    page.get_by_label("Daemon port").fill(str(daemon_port))
    page.get_by_label("Protocol").select_option(label="HTTP")
    page.get_by_label("CPU cores").fill("1")
    page.get_by_label("Memory (GB)").fill("4")
    page.get_by_label("Disk (GB)").fill("20")
    page.get_by_label("SFTP port").fill(str(sftp_port))
    page.get_by_role("button", name="Add Node").click()
    expect(page).to_have_url(re.compile(r"/admin/nodes/\d+/credentials/$"))
    node_url = page.url.removesuffix("credentials/")
    node_id = node_url.rstrip("/").rsplit("/", 1)[1]

    # The daemon's configuration, downloaded from the credentials page.
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download config.toml").click()
    config = Path(download_info.value.path()).read_text(encoding="utf-8")
    assert f'url = "{panel.url}"' in config
    assert f"port = {daemon_port}" in config
    config_file = tmp_path / "node.toml"
    config_file.write_text(for_this_machine(config, tmp_path / "stellar"))

    # The nodes list shows it offline; started, the daemon turns it online live.
    nav(page, "Nodes")
    row = page.locator("tr[data-node-id]").filter(has_text="fra-1")
    expect(row.locator("[data-node-status]")).to_have_text("Offline")
    page.evaluate("window.notReloaded = true")
    daemon_process.append(
        subprocess.Popen(
            [sys.executable, "-m", "devdaemon", "--config", str(config_file)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    )
    expect(row.locator("[data-node-status]")).to_have_text("Online", timeout=30_000)
    expect(row.locator("[data-node-latency]")).to_contain_text("ms")
    assert page.evaluate("window.notReloaded") is True
    screenshot(page, "nodes-list.png", full_page=False)

    # Allocations carved on the node's page.
    row.get_by_role("link", name="fra-1").click()
    page.get_by_label("IP address").fill("127.0.0.1")
    page.get_by_label("Ports").fill(", ".join(map(str, game_ports)))
    page.get_by_role("button", name="Add allocations").click()
    message(page, "3 allocations added on 127.0.0.1.")
    page.goto(node_url)
    screenshot(page, "node-page.png")

    # A server for bob on the first of them.
    create_server(page, node_id, memory_mb="1024", allocation=first)
    expect(page.get_by_role("heading", name="survival")).to_be_visible()
    server_url = page.url
    public_id = server_url.rstrip("/").rsplit("/", 1)[1]
    panel.wait_for(lambda: server_status(panel, public_id) == "offline")

    # Bob starts it, talks to it in the console, and sees its stats.
    owner_context, owner_page = new_page(browser, panel)
    log_in(owner_page, "bob")
    owner_page.get_by_role("link", name="survival").click()
    console = owner_page.locator("[data-console]")
    output = console.get_by_role("log", name="Console output")
    expect(console.locator("[data-console-connection]")).to_have_text("Live")
    owner_page.get_by_role("button", name="Start", exact=True).click()
    expect(output).to_contain_text("Done!", timeout=30_000)
    expect(owner_page.locator("h1 [data-server-status]")).to_have_text("Running")
    command = console.get_by_role("textbox", name="Command")
    command.fill("say hello")
    command.press("Enter")
    expect(output).to_contain_text("[Server] hello")
    expect(console.locator("[data-stat=cpu]")).to_contain_text("%")
    expect(console.locator("[data-stat=uptime]")).not_to_have_text("—")
    screenshot(owner_page, "console.png")
    owner_context.close()

    # More memory than the node has is refused, saying how much is free.
    create_server(page, node_id, memory_mb="99999", allocation=second)
    expect(
        page.get_by_text(
            "Node fra-1 has 3072 MB of memory free; this server asks for 99999 MB."
        )
    ).to_be_visible()

    # A location with nodes, and a node with servers, are kept.
    nav(page, "Locations")
    page.get_by_role("row").filter(has_text="EU Central").get_by_role(
        "link", name="Delete"
    ).click()
    expect(page.get_by_role("alert")).to_contain_text(
        "EU Central cannot be deleted while it has nodes: fra-1."
    )
    page.goto(node_url)
    page.locator(".head-actions, .page-head").get_by_role("link", name="Delete").click()
    expect(page.get_by_role("alert")).to_contain_text(
        "fra-1 cannot be deleted: it has servers (survival)"
    )

    # An allocation ticked while free but given to the server meanwhile is kept.
    page.goto(node_url)
    page.get_by_label(f"Select {second}").check()
    other = context.new_page()
    other.goto(server_url)
    other.locator(".head-actions").get_by_role("link", name="Edit").click()
    other.get_by_label("Additional allocations").select_option(label=second)
    other.get_by_role("button", name="Save").click()
    message(other, "Server survival was saved.")
    other.close()
    page.get_by_role("button", name="Delete selected").click()
    message(page, f"Nothing was deleted: {second} is assigned to survival.")

    # The server goes, then the free allocations, the node, and the location.
    page.goto(server_url)
    page.locator(".head-actions").get_by_role("link", name="Delete").click()
    page.get_by_role("button", name="Delete server").click()
    message(page, "Server survival was deleted and its allocations are free again.")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete all free allocations").click()
    message(page, "3 allocations deleted.")
    page.locator(".head-actions, .page-head").get_by_role("link", name="Delete").click()
    page.get_by_role("button", name="Delete node").click()
    message(page, "Node fra-1 was deleted.")
    nav(page, "Locations")
    page.get_by_role("row").filter(has_text="EU Central").get_by_role(
        "link", name="Delete"
    ).click()
    page.get_by_role("button", name="Delete location").click()
    message(page, "Location EU Central was deleted.")
    expect(page.get_by_role("row").filter(has_text="EU Central")).to_have_count(0)
    assert panel.value("SELECT count(*) FROM nodes_node") == 0
    assert panel.value("SELECT count(*) FROM servers_server") == 0
    context.close()


def create_server(page: Page, node_id: str, memory_mb: str, allocation: str) -> None:
    nav(page, "Servers")
    page.get_by_role("link", name="Create Server").click()
    page.get_by_label("Name").fill("survival")
    page.get_by_label("Owner").select_option(label="bob")
    page.get_by_label("Node").select_option(node_id)
    page.get_by_label("Primary allocation").select_option(label=allocation)
    page.get_by_label("CPU (%)").fill("100")
    page.get_by_label("Memory (MB)").fill(memory_mb)
    page.get_by_label("Disk (MB)").fill("2048")
    page.get_by_role("button", name="Create Server").click()


def server_status(panel: Panel, public_id: str) -> object:
    return panel.value(
        "SELECT status FROM servers_server WHERE public_id = ?", public_id
    )
