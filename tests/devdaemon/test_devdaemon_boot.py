"""Boot: the daemon adopts the panel's server list and reports, all signed."""

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp import web
from daemon_harness import (
    AsyncClient,
    DaemonPool,
    free_port,
    is_signed,
    server_config,
)

pytestmark = pytest.mark.asyncio


@dataclass
class FakePanel:
    """The panel's remote API, as far as a booting daemon needs it."""

    servers: list[dict]
    requests: list[tuple[str, str, dict | None, bool]] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/api/remote/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        signed = is_signed(request.method, request.raw_path, request.headers, body)
        payload = json.loads(body) if body else None
        self.requests.append((request.method, request.raw_path, payload, signed))
        if not signed:
            return web.json_response({"error": "unauthorized"}, status=401)
        if request.method == "GET" and request.path == "/api/remote/servers":
            return web.json_response({"servers": self.servers})
        return web.Response(status=204)

    def posted(self, path: str) -> list[dict | None]:
        return [
            p for method, raw, p, _ in self.requests if (method, raw) == ("POST", path)
        ]

    async def until_posted(self, path: str, payload: dict, timeout: float = 10) -> None:
        async with asyncio.timeout(timeout):
            while payload not in self.posted(path):
                await asyncio.sleep(0.05)


@pytest_asyncio.fixture
async def serve() -> AsyncIterator:
    runners: list[web.AppRunner] = []

    async def serve(panel: FakePanel, port: int) -> None:
        runner = web.AppRunner(panel.app())
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)

    yield serve
    for runner in runners:
        await runner.cleanup()


async def wait_for_state(api: AsyncClient, server_id: str, state: str) -> None:
    async with asyncio.timeout(10):
        while (await api.get(f"/api/servers/{server_id}")).json()["state"] != state:
            await asyncio.sleep(0.05)


class TestBoot:
    async def test_it_adopts_the_panels_list_once_the_panel_answers(
        self, daemons: DaemonPool, tmp_path: Path, serve
    ) -> None:
        node = tmp_path / "node"
        # A first life of the node: one installed server, one the panel will drop
        first = daemons.start(node)
        api = AsyncClient(first.url)
        await api.post("/api/servers", json=server_config("kept1"))
        await api.post("/api/servers", json=server_config("old1"))
        await api.post("/api/servers/kept1/install")
        await wait_for_state(api, "kept1", "offline")
        await asyncio.to_thread(first.stop)

        # The panel is down when the node boots again, and comes up a little later
        panel_port = free_port()
        renamed = server_config("kept1") | {"name": "Renamed"}
        panel = FakePanel(servers=[renamed, server_config("new1")])
        daemon = daemons.start(node, panel_url=f"http://127.0.0.1:{panel_port}")
        await asyncio.sleep(1.5)
        await serve(panel, panel_port)
        await panel.until_posted(
            "/api/remote/servers/new1/status", {"state": "install_failed"}
        )
        await panel.until_posted(
            "/api/remote/servers/kept1/status", {"state": "offline"}
        )

        # Every call of the daemon's was signed with the node's token
        assert panel.requests[0][:2] == ("GET", "/api/remote/servers")
        assert all(signed for *_, signed in panel.requests)

        # The list was adopted: kept and updated, created, forgotten (files kept)
        api = AsyncClient(daemon.url)
        kept = (await api.get("/api/servers/kept1")).json()
        assert kept["name"] == "Renamed"
        assert kept["state"] == "offline"
        assert (await api.get("/api/servers/new1")).json()["state"] == "install_failed"
        assert (daemon.data_dir / "servers" / "new1").is_dir()
        assert (await api.get("/api/servers/old1")).status_code == 404
        assert (daemon.data_dir / "servers" / "old1").is_dir()
        assert not (daemon.data_dir / "servers" / "old1.json").exists()
        assert "forgot server old1" in daemon.log

        # The outage was logged once, not once per attempt
        assert daemon.log.count("panel call failed") == 1
        assert "panel calls work again" in daemon.log

        # An install is reported to the panel, as are the states it goes through
        await api.post("/api/servers/new1/install")
        await panel.until_posted(
            "/api/remote/servers/new1/install", {"successful": True}
        )
        states = panel.posted("/api/remote/servers/new1/status")
        assert states[-2:] == [{"state": "installing"}, {"state": "offline"}]
        assert all(signed for *_, signed in panel.requests)
