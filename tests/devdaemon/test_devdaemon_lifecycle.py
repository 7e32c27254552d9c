"""Servers for real: install, start, console, stats, stop, kill, restarts, deletion."""

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from daemon_harness import (
    AsyncClient,
    DaemonPool,
    RunningDaemon,
    Watch,
    free_port,
    server_config,
    watch,
)

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def api(shared_daemon: RunningDaemon) -> AsyncClient:
    return AsyncClient(shared_daemon.url)


async def created(
    api: AsyncClient,
    session: aiohttp.ClientSession,
    daemon: RunningDaemon,
    server_id: str,
    port: int | None = None,
) -> Watch:
    """A new server, and a socket on it."""
    response = await api.post("/api/servers", json=server_config(server_id, port))
    assert response.status_code == 201, response.text
    return await watch(session, daemon, server_id)


async def installed(api: AsyncClient, ws: Watch, server_id: str) -> None:
    install = await api.post(f"/api/servers/{server_id}/install")
    assert install.status_code == 202
    done = await ws.until_event("install completed")
    assert done["args"] == [{"successful": True}]
    await ws.until_event("status", "offline")


async def started(api: AsyncClient, ws: Watch, server_id: str) -> None:
    assert (await api.power(server_id, "start")).status_code == 202
    await ws.until_event("status", "running")


async def greeting(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    line = await reader.readline()
    writer.close()
    return line


class TestLifecycle:
    async def test_it_runs_a_server_from_install_to_deletion(
        self, api: AsyncClient, shared_daemon: RunningDaemon, session
    ) -> None:
        port = free_port()
        ws = await created(api, session, shared_daemon, "life1", port)
        directory = shared_daemon.data_dir / "servers" / "life1"

        # Install writes the game server's files and reports its progress
        await installed(api, ws, "life1")
        events = [f["event"] for f in ws.frames]
        assert events.index("install started") < events.index("install output")
        assert {"gameserver.py", "server.properties", "eula.txt"} <= {
            path.name for path in directory.iterdir()
        }
        assert f"server-port={port}" in (directory / "server.properties").read_text()

        # Start goes through starting to running on the boot log's Done! line
        assert (await api.power("life1", "start")).status_code == 202
        await ws.until_event("status", "starting")
        await ws.until_line("Starting StellarCraft")
        await ws.until_line(f"Done! Listening on 127.0.0.1:{port}")
        await ws.until_event("status", "running")

        # The game server really listens on its allocation
        assert b"Welcome to Harness World" in await greeting(port)

        # Console commands reach it, and its answers come back
        await ws.send("send command", "say hi")
        await ws.until_line("[Server] hi")

        # Stats come about once a second, with real memory use
        stats = await ws.until_event("stats")
        assert stats["args"][0]["memory_bytes"] > 1024 * 1024
        assert stats["args"][0]["uptime_ms"] > 0
        assert stats["args"][0]["disk_bytes"] > 0
        described = (await api.get("/api/servers/life1")).json()
        assert described["state"] == "running"
        assert described["resources"]["memory_bytes"] > 0

        # While it runs, it cannot start again or be reinstalled
        assert (await api.power("life1", "start")).status_code == 409
        reinstall = await api.post("/api/servers/life1/install")
        assert reinstall.status_code == 409
        assert reinstall.json()["error"] == "conflict"

        # Stop asks it nicely, with its `stop` command, and it goes offline
        assert (await api.power("life1", "stop")).status_code == 202
        await ws.until_event("status", "stopping")
        await ws.until_line("Stopping the server")
        await ws.until_event("status", "offline")
        lines = [f["args"][0] for f in ws.frames if f["event"] == "console output"]
        assert not any("exited by itself" in line for line in lines)
        with pytest.raises(OSError):
            await greeting(port)

        # Delete removes it and its files, and closes its sockets
        assert (await api.delete("/api/servers/life1")).status_code == 204
        assert not directory.exists()
        assert (await api.get("/api/servers/life1")).status_code == 404
        assert (await ws.ws.receive()).type in (
            aiohttp.WSMsgType.CLOSE,
            aiohttp.WSMsgType.CLOSED,
        )

    async def test_it_kills_a_server(
        self, api: AsyncClient, shared_daemon: RunningDaemon, session
    ) -> None:
        port = free_port()
        ws = await created(api, session, shared_daemon, "kill1", port)
        await installed(api, ws, "kill1")
        await started(api, ws, "kill1")

        response = await api.power("kill1", "kill")

        assert response.status_code == 202
        await ws.until_event("status", "offline")
        with pytest.raises(OSError):
            await greeting(port)
        assert (await api.power("kill1", "kill")).status_code == 409

    async def test_it_restarts_a_server(
        self, api: AsyncClient, shared_daemon: RunningDaemon, session
    ) -> None:
        ws = await created(api, session, shared_daemon, "restart1")
        await installed(api, ws, "restart1")
        await started(api, ws, "restart1")

        response = await api.power("restart1", "restart")

        # It stops, then starts again by itself
        assert response.status_code == 202
        await ws.until_event("status", "stopping")
        await ws.until_event("status", "offline")
        await ws.until_event("status", "starting")
        await ws.until_event("status", "running")
        await api.power("restart1", "kill")
        await ws.until_event("status", "offline")

    async def test_it_notices_a_server_that_exits_by_itself(
        self, api: AsyncClient, shared_daemon: RunningDaemon, session
    ) -> None:
        ws = await created(api, session, shared_daemon, "crash1")
        await installed(api, ws, "crash1")
        await started(api, ws, "crash1")

        # `stop` sent as a plain command is the server's own decision to exit
        await ws.send("send command", "stop")

        await ws.until_line("exited by itself with code 0")
        await ws.until_event("status", "offline")

    async def test_it_reports_a_failed_install(
        self, api: AsyncClient, shared_daemon: RunningDaemon, session
    ) -> None:
        await api.post("/api/servers", json=server_config("broken1"))
        # A directory where the install script must write a file makes it fail.
        await api.post(
            "/api/servers/broken1/files/create-directory",
            json={"path": "gameserver.py"},
        )
        ws = await watch(session, shared_daemon, "broken1")

        await api.post("/api/servers/broken1/install")

        done = await ws.until_event("install completed")
        assert done["args"] == [{"successful": False}]
        await ws.until_event("status", "install_failed")
        assert (await api.power("broken1", "start")).status_code == 409


class TestWebSocket:
    async def test_it_answers_logs_and_stats_requests(
        self, api: AsyncClient, shared_daemon: RunningDaemon, session
    ) -> None:
        ws = await created(api, session, shared_daemon, "socket1")
        await installed(api, ws, "socket1")
        await started(api, ws, "socket1")
        late = await watch(session, shared_daemon, "socket1")

        # A socket opened later gets the console so far on request
        await late.send("send logs")
        await late.until_line("Done! Listening")
        await late.send("send stats")
        stats = await late.until_event("stats")
        assert set(stats["args"][0]) == {
            "cpu_percent",
            "memory_bytes",
            "memory_limit_bytes",
            "disk_bytes",
            "disk_limit_bytes",
            "network_rx_bytes",
            "network_tx_bytes",
            "uptime_ms",
        }

        # Both sockets get what is broadcast
        await late.send("send command", "list")
        await ws.until_line("players online")
        await late.until_line("players online")

        await api.power("socket1", "kill")
        await ws.until_event("status", "offline")

    async def test_it_answers_bad_frames_with_daemon_errors(
        self, api: AsyncClient, shared_daemon: RunningDaemon, session
    ) -> None:
        await api.post("/api/servers", json=server_config("socket2"))
        ws = await watch(session, shared_daemon, "socket2")
        bad_frames = [
            "not json",
            json.dumps(["a list"]),
            json.dumps({"event": "dance", "args": []}),
            json.dumps({"event": "send command", "args": "not a list"}),
            json.dumps({"event": "send command", "args": [1]}),
            json.dumps({"event": "set state", "args": ["explode"]}),
        ]

        for bad in bad_frames:
            await ws.ws.send_str(bad)
            await ws.until_event("daemon error")
        await ws.ws.send_bytes(b"\x00")
        await ws.until_event("daemon error")

        # A command for a server that is not running is an error, not a crash
        await ws.send("send command", "say hi")
        error = await ws.until_event("daemon error")
        assert "offline" in error["args"][0]

        # The socket is still open and answering
        await ws.send("send stats")
        await ws.until_event("stats")

    async def test_it_takes_power_actions_over_the_socket(
        self, api: AsyncClient, shared_daemon: RunningDaemon, session
    ) -> None:
        ws = await created(api, session, shared_daemon, "socket3")
        await installed(api, ws, "socket3")

        await ws.send("set state", "start")
        await ws.until_event("status", "running")
        await ws.send("set state", "start")
        error = await ws.until_event("daemon error")
        await ws.send("set state", "kill")
        await ws.until_event("status", "offline")

        assert "running" in error["args"][0]


class TestDaemonRestart:
    async def test_it_keeps_its_servers_and_brings_them_back_offline(
        self, daemons: DaemonPool, tmp_path: Path, session
    ) -> None:
        daemon = daemons.start(tmp_path / "node")
        api = AsyncClient(daemon.url)
        port = free_port()
        ws = await created(api, session, daemon, "keep1", port)
        await installed(api, ws, "keep1")
        await started(api, ws, "keep1")
        await api.post("/api/servers", json=server_config("keep2"))

        # A graceful shutdown stops the game servers and closes the sockets
        assert await asyncio.to_thread(daemon.stop) == 0
        assert (await ws.ws.receive()).type in (
            aiohttp.WSMsgType.CLOSE,
            aiohttp.WSMsgType.CLOSED,
        )
        with pytest.raises(OSError):
            await greeting(port)

        again = daemons.start(tmp_path / "node", port=daemon.port)
        api = AsyncClient(again.url)

        # The servers are still there; the one that ran is offline and can start
        assert (await api.get("/api/system")).json()["server_count"] == 2
        server = (await api.get("/api/servers/keep1")).json()
        assert server["state"] == "offline"
        assert server["allocations"]["default"]["port"] == port
        never_installed = (await api.get("/api/servers/keep2")).json()
        assert never_installed["state"] == "install_failed"
        ws = await watch(session, again, "keep1")
        await started(api, ws, "keep1")
        assert b"Welcome" in await greeting(port)
        await api.power("keep1", "kill")
        await ws.until_event("status", "offline")
