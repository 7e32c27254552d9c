"""The live pages in Chromium, against the panel served by Daphne and a real daemon.

pytest-django's live server speaks WSGI, without WebSockets, so the panel runs here
as production runs it: Daphne in a subprocess, on a SQLite file of its own (on
every database pass), with the heartbeat every 5 s. The test reads that file to
know when the daemon has reported, and drives only the browser and the daemon.
"""

import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core import serializers
from playwright.sync_api import Browser, BrowserContext, Page, WebSocketRoute, expect

from nodes.models import Node
from servers import relay
from tests.conftest import (
    PASSWORD,
    ROOT,
    free_port,
    install_on_daemon,
    running_daemon,
    stop,
)
from tests.e2e.conftest import TIMEOUT_MS, start_daphne
from tests.stellarpanel.test_asgi import panel_env, wait_until_serving

pytestmark = pytest.mark.usefixtures("daemon_on_loopback")

# Run by `manage.py shell` in the panel's environment: the personas, a node on
# loopback and a server on it; prints what the test needs as JSON.
SETUP = """
import json
from django.contrib.auth.models import User
from django.core import serializers
from locations.models import Location
from nodes.models import Allocation, Node
from servers.models import Server

User.objects.create_user("alice", "alice@example.org", {password!r}, is_staff=True)
owner = User.objects.create_user("bob", "bob@example.org", {password!r})
location = Location.objects.create(name="US West", country="US", city="Los Angeles")
node = Node(name="local", host="127.0.0.1", port={port}, protocol="HTTP",
            cpu_cores=8, memory_mb=16384, disk_mb=204800, status="online",
            location=location)
node.set_new_token()
node.save()
server = Server.objects.create(name="survival", owner=owner, node=node, cpu=100,
                               memory_mb=512, disk_mb=1024)
Allocation.objects.create(node=node, ip="127.0.0.1", port={game_port},
                          server=server, is_primary=True)
print(json.dumps({{
    "node": serializers.serialize("json", [node]),
    "server": server.public_id,
    "config": server.daemon_config(),
}}))
"""


@dataclass
class Panel:
    url: str
    database: Path
    log: Path

    def value(self, query: str, *params: Any) -> Any:
        with sqlite3.connect(self.database) as db:
            row = db.execute(query, params).fetchone()
        return row and row[0]

    def node_status(self, pk: int) -> str:
        return self.value("SELECT status FROM nodes_node WHERE id = ?", pk)

    def server_status(self, public_id: str) -> str:
        return self.value(
            "SELECT status FROM servers_server WHERE public_id = ?", public_id
        )

    def wait_for(self, check: Callable[[], bool], seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        while not check():
            if time.monotonic() > deadline:
                pytest.fail(f"timed out; the panel's log:\n{self.log.read_text()}")
            time.sleep(0.2)


@dataclass
class Setup:
    node: Node
    server: str
    config: dict


@pytest.fixture
def panel_environment(tmp_path: Path) -> dict[str, str]:
    env = panel_env(tmp_path)
    # The test process decrypts the node's token too: the same key on both sides.
    return env | {
        "ENCRYPTION_KEY": ",".join(django_settings.ENCRYPTION_KEYS),
        "DAEMON_ALLOWED_NETWORKS": "127.0.0.0/8",
        "HEARTBEAT_INTERVAL": "5",
        "HEARTBEAT_TIMEOUT": "2",
    }


@pytest.fixture
def setup(panel_environment: dict[str, str]) -> Setup:
    """Migrate the panel's database and make the personas, a node and a server."""
    manage = [sys.executable, "manage.py"]
    run = {"cwd": ROOT, "env": panel_environment, "capture_output": True}
    migrate = subprocess.run([*manage, "migrate", "--no-input"], **run, timeout=120)
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    script = SETUP.format(password=PASSWORD, port=free_port(), game_port=free_port())
    made = subprocess.run([*manage, "shell", "-c", script], **run, timeout=60)
    assert made.returncode == 0, made.stdout + made.stderr
    answer = json.loads(made.stdout.splitlines()[-1])
    (node,) = serializers.deserialize("json", answer["node"])
    return Setup(node.object, answer["server"], answer["config"])


@pytest.fixture
def panel(
    tmp_path: Path, panel_environment: dict[str, str], setup: Setup
) -> Iterator[Panel]:
    """Daphne serving the panel, with its heartbeat scheduler."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "daphne.log"
    process = start_daphne(panel_environment | {"PANEL_URL": url}, port, log)
    try:
        wait_until_serving(process, url, log)
        yield Panel(url, tmp_path / "db.sqlite3", log)
    finally:
        stop(process)


@pytest.fixture
def context(browser: Browser, panel: Panel) -> Iterator[BrowserContext]:
    context = browser.new_context(base_url=panel.url)
    context.set_default_timeout(TIMEOUT_MS)
    yield context
    context.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


def log_in(page: Page, username: str) -> None:
    page.goto("/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()


def test_it_runs_a_server_from_its_console(
    page: Page, panel: Panel, setup: Setup, tmp_path: Path, artifacts: Path
) -> None:
    with running_daemon(setup.node, tmp_path / "daemon", panel.url):
        install_on_daemon(setup.node, setup.config)
        # The daemon reports the install; the heartbeat finds the node online.
        panel.wait_for(lambda: panel.server_status(setup.server) == "offline")
        panel.wait_for(lambda: panel.node_status(setup.node.pk) == "online")

        log_in(page, "bob")
        page.goto(f"/servers/{setup.server}/")
        console = page.locator("[data-console]")
        output = console.get_by_role("log", name="Console output")
        badge = page.locator("h1 [data-server-status]")
        expect(console.locator("[data-console-connection]")).to_have_text("Live")
        expect(badge).to_have_text("Offline")

        # Start goes over the socket: the boot lines stream in, no reload.
        page.evaluate("window.notReloaded = true")
        page.get_by_role("button", name="Start", exact=True).click()
        expect(output).to_contain_text("Done!", timeout=30_000)
        expect(badge).to_have_text("Running")
        expect(console.locator("[data-stat=cpu]")).to_contain_text("%")

        command = console.get_by_role("textbox", name="Command")
        command.fill("say hello")
        command.press("Enter")
        expect(output).to_contain_text("[Server] hello")
        expect(command).to_have_value("")
        page.screenshot(path=artifacts / "console-running.png", full_page=True)

        page.get_by_role("button", name="Stop", exact=True).click()
        expect(badge).to_have_text("Offline", timeout=30_000)
        expect(page.get_by_role("button", name="Start", exact=True)).to_be_enabled()
        assert page.evaluate("window.notReloaded") is True
        page.screenshot(path=artifacts / "console-stopped.png", full_page=True)


def test_it_shows_a_node_going_offline_without_a_reload(
    page: Page, panel: Panel, setup: Setup, tmp_path: Path, artifacts: Path
) -> None:
    with running_daemon(setup.node, tmp_path / "daemon", panel.url):
        panel.wait_for(lambda: panel.node_status(setup.node.pk) == "online")
        log_in(page, "alice")
        page.goto("/admin/nodes/")
        row = page.locator(f"tr[data-node-id='{setup.node.pk}']")
        expect(row.locator("[data-node-status]")).to_have_text("Online")
        expect(row.locator("[data-node-latency]")).to_contain_text("ms")
        page.evaluate("window.notReloaded = true")

    # The daemon is down: the next sweep says so, and the row follows.
    expect(row.locator("[data-node-status]")).to_have_text("Offline", timeout=20_000)
    expect(row.locator("[data-node-latency]")).to_have_text("—")
    assert page.evaluate("window.notReloaded") is True
    page.screenshot(path=artifacts / "nodes-live-offline.png", full_page=True)


def test_it_colours_escapes_and_bounds_what_the_daemon_prints(
    page: Page, panel: Panel, setup: Setup, artifacts: Path
) -> None:
    # The socket is played by the test: each frame is exactly what it says.
    sockets: list[WebSocketRoute] = []
    page.route_web_socket(
        lambda url: f"/ws/servers/{setup.server}/" in url, lambda s: sockets.append(s)
    )
    log_in(page, "bob")
    page.goto(f"/servers/{setup.server}/")
    expect(page.locator("[data-console-connection]")).to_have_text("Live")
    (socket,) = sockets

    def say(event: str, *args: Any) -> None:
        socket.send(json.dumps({"event": event, "args": list(args)}))

    # Colours become classes; markup and other escapes are text or nothing.
    output = page.get_by_role("log", name="Console output")
    say("console output", "\x1b[1;31mred\x1b[0m plain \x1b[92mgreen\x1b[2K")
    say("console output", "<img src=x onerror=alert(1)>")
    expect(output.locator(".ansi-31.ansi-bold")).to_have_text("red")
    expect(output.locator(".ansi-92")).to_have_text("green")
    expect(output).to_contain_text("<img src=x onerror=alert(1)>")
    assert output.locator("img").count() == 0
    assert "\x1b" not in output.inner_text()

    # Install lines and errors are lines of their own kind, not dialogs.
    say("install output", "Fetching files")
    say("error", "The server is offline; it cannot stop now.")
    expect(output.locator(".console-install")).to_have_text("Fetching files")
    expect(output.locator(".console-error")).to_contain_text("cannot stop now")

    # Busy output comes raw-deflated, and is shown in order with what follows it.
    assert socket.url.endswith("?batches=deflate-raw")
    batch = [relay.frame("console output", f"deflated {i}") for i in range(3)]
    (deflated,) = relay.deflate(batch)
    socket.send(deflated)
    say("console output", "after the deflated")
    expect(output.locator(".console-line").last).to_have_text("after the deflated")
    assert output.locator(".console-line").all_inner_texts()[-4:] == [
        "deflated 0",
        "deflated 1",
        "deflated 2",
        "after the deflated",
    ]

    # The scrollback keeps the last 1,000 lines, and follows the tail.
    for start in range(0, 1200, 200):
        for i in range(start, start + 200):
            say("console output", f"line {i}")
    expect(output.locator(".console-line").last).to_have_text("line 1199")
    expect(output.locator(".console-line")).to_have_count(1000)
    expect(output.locator(".console-line").first).to_have_text("line 200")
    jump = page.get_by_role("button", name="Jump to bottom")
    expect(jump).to_be_hidden()

    # Scrolled up, new lines leave the view alone and offer a way back.
    output.evaluate("element => { element.scrollTop = 0; }")
    say("console output", "line 1200")
    expect(jump).to_be_visible()
    assert output.evaluate("element => element.scrollTop") == 0
    page.screenshot(path=artifacts / "console-scrolled-up.png", full_page=True)
    jump.click()
    expect(jump).to_be_hidden()

    # The command line sends, and remembers for the arrow keys.
    received: list[str] = []
    socket.on_message(lambda message: received.append(str(message)))
    command = page.get_by_role("textbox", name="Command")
    for text in ("say one", "say two"):
        command.fill(text)
        command.press("Enter")
    command.press("ArrowUp")
    expect(command).to_have_value("say two")
    command.press("ArrowUp")
    expect(command).to_have_value("say one")
    assert {"event": "send command", "args": ["say one"]} in map(json.loads, received)

    # The relay's state shows; a dropped socket is opened again.
    say("relay", "reconnecting")
    connection = page.locator("[data-console-connection]")
    expect(connection).to_have_text("Daemon reconnecting…")
    say("relay", "connected")
    expect(connection).to_have_text("Live")
    socket.close()
    expect(connection).to_have_text("Reconnecting…")
    expect(connection).to_have_text("Live", timeout=5_000)
    assert len(sockets) == 2
