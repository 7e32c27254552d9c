"""Two panel processes on Redis, one console: each viewer sees each line once."""

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import ROOT, free_port, install_on_daemon, running_daemon, stop
from tests.e2e.conftest import start_daphne
from tests.e2e.test_console_flow import (  # noqa: F401  (fixtures)
    Panel,
    Setup,
    panel_environment,
    setup,
)
from tests.stellarpanel.test_asgi import wait_until_serving

pytestmark = pytest.mark.usefixtures("daemon_on_loopback")

SESSION = """
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore
owner = User.objects.get(username="bob")
session = SessionStore()
session["_auth_user_id"] = str(owner.pk)
session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
session["_auth_user_hash"] = owner.get_session_auth_hash()
session.create()
print(session.session_key)
"""


@pytest.fixture
def redis_environment(
    panel_environment: dict[str, str],  # noqa: F811
) -> dict[str, str]:
    return panel_environment | {"REDIS_URL": "redis://127.0.0.1:6379/3"}


@pytest.fixture
def panels(
    tmp_path: Path,
    redis_environment: dict[str, str],
    setup: Setup,  # noqa: F811
) -> Iterator[list[Panel]]:
    """Two Daphne processes on one database and one Redis channel layer."""
    started: list[tuple[subprocess.Popen, Panel]] = []
    try:
        for name in ("a", "b"):
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            log = tmp_path / f"daphne-{name}.log"
            process = start_daphne(redis_environment | {"PANEL_URL": url}, port, log)
            started.append((process, Panel(url, tmp_path / "db.sqlite3", log)))
        for process, panel in started:
            wait_until_serving(process, panel.url, panel.log)
        yield [panel for _, panel in started]
    finally:
        for process, _ in started:
            stop(process)


def session_key(env: dict[str, str]) -> str:
    made = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", SESSION],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    return made.stdout.split()[-1]


def said_once(lines: list[str]) -> int:
    return sum(line.endswith("[Server] once") for line in lines)


async def watch(panels: list[Panel], server: str, cookie: str) -> list[list[str]]:
    """Open the console on both panels, say one line through the first, and
    return the console lines each viewer saw."""
    seen: list[list[str]] = [[], []]

    async def read(ws: aiohttp.ClientWebSocketResponse, lines: list[str]) -> None:
        async for message in ws:
            data = json.loads(message.data)
            for frame in data if isinstance(data, list) else [data]:
                if frame["event"] == "console output":
                    lines.append(frame["args"][0])
                elif frame["event"] in ("error", "daemon error"):
                    lines.append(f"{frame['event']}: {frame['args'][0]}")

    async with aiohttp.ClientSession() as session:
        sockets = [
            await session.ws_connect(
                f"{panel.url.replace('http', 'ws')}/ws/servers/{server}/",
                origin=panel.url,
                headers={"Cookie": f"sessionid={cookie}"},
            )
            for panel in panels
        ]
        readers = [
            asyncio.create_task(read(ws, lines))
            for ws, lines in zip(sockets, seen, strict=True)
        ]
        await sockets[0].send_json({"event": "set state", "args": ["start"]})
        async with asyncio.timeout(30):
            while not all(any("Done!" in x for x in lines) for lines in seen):
                await asyncio.sleep(0.1)
        await sockets[0].send_json({"event": "send command", "args": ["say once"]})
        try:
            async with asyncio.timeout(10):
                while not all(said_once(lines) for lines in seen):
                    await asyncio.sleep(0.1)
        except TimeoutError:
            raise AssertionError(f"not seen by every viewer: {seen}") from None
        await asyncio.sleep(1)  # time for a duplicate to arrive, if there were one
        for ws in sockets:
            await ws.close()
        for reader in readers:
            reader.cancel()
    return seen


def test_it_gives_each_viewer_each_line_once_across_panel_processes(
    panels: list[Panel],
    setup: Setup,  # noqa: F811
    redis_environment: dict[str, str],
    tmp_path: Path,
) -> None:
    with running_daemon(setup.node, tmp_path / "daemon", panels[0].url):
        daemon = install_on_daemon(setup.node, setup.config)
        panels[0].wait_for(lambda: panels[0].server_status(setup.server) == "offline")
        seen = asyncio.run(watch(panels, setup.server, session_key(redis_environment)))
        daemon.power(setup.server, "kill")

    for lines in seen:
        assert said_once(lines) == 1, lines
