"""A real development daemon in a subprocess, and clients that sign like the panel.

The signing here is written from PROTOCOL.md on its own, not imported from the daemon,
so that the two implementations hold each other to the contract.
"""

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx

REPO = Path(__file__).resolve().parents[2]
TOKEN_ID = "testnode0000node"
TOKEN = secrets.token_urlsafe(32)
CLOSED_PANEL = "http://127.0.0.1:1"
STARTUP = (
    "{{PYTHON}} gameserver.py --ip {{SERVER_IP}} --port {{SERVER_PORT}} "
    "--memory {{SERVER_MEMORY}}"
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def sign(
    method: str, path: str, body: bytes, timestamp: str, nonce: str, token: str
) -> str:
    message = "\n".join(
        [method, path, timestamp, nonce, hashlib.sha256(body).hexdigest()]
    )
    return b64url(hmac.digest(token.encode(), message.encode(), "sha256"))


def signed_headers(
    method: str,
    path: str,
    body: bytes = b"",
    *,
    token_id: str = TOKEN_ID,
    token: str = TOKEN,
    timestamp: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    nonce = nonce or b64url(secrets.token_bytes(16))
    mac = sign(method, path, body, stamp, nonce, token)
    return {
        "Authorization": f"Bearer {token_id}.{mac}",
        "X-Stellar-Timestamp": stamp,
        "X-Stellar-Nonce": nonce,
    }


def is_signed(method: str, path: str, headers: Mapping[str, str], body: bytes) -> bool:
    """Whether a request to the fake panel is signed with our node's token."""
    scheme, _, credentials = headers.get("Authorization", "").partition(" ")
    token_id, _, mac = credentials.partition(".")
    stamp = headers.get("X-Stellar-Timestamp", "")
    nonce = headers.get("X-Stellar-Nonce", "")
    if scheme != "Bearer" or token_id != TOKEN_ID or not stamp.isdigit() or not nonce:
        return False
    if abs(int(stamp) - time.time()) > 60:
        return False
    return hmac.compare_digest(mac, sign(method, path, body, stamp, nonce, TOKEN))


def server_config(server_id: str, port: int | None = None, **changes: Any) -> dict:
    return {
        "id": server_id,
        "name": f"Server {server_id}",
        "limits": {"cpu": 100, "memory_mb": 256, "disk_mb": 64},
        "allocations": {
            "default": {"ip": "127.0.0.1", "port": port or free_port()},
            "additional": [],
        },
        "startup": STARTUP,
        "environment": {"MOTD": "Harness World"},
    } | changes


class Client:
    """httpx, with every request signed as the panel signs."""

    def __init__(self, base_url: str, verify: ssl.SSLContext | bool = True) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=10, verify=verify)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        request = self.http.build_request(method, path, **kwargs)
        body = request.read()
        raw_path = request.url.raw_path.decode()
        request.headers.update(signed_headers(method, raw_path, body))
        return self.http.send(request)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", path, **kwargs)


class AsyncClient:
    """The same for async tests, which must not block their event loop."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.AsyncClient(base_url=base_url, timeout=10)

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        request = self.http.build_request(method, path, **kwargs)
        body = request.read()
        raw_path = request.url.raw_path.decode()
        request.headers.update(signed_headers(method, raw_path, body))
        return await self.http.send(request)

    async def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("POST", path, **kwargs)

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("GET", path, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("DELETE", path, **kwargs)

    async def power(self, server_id: str, action: str) -> httpx.Response:
        return await self.post(
            f"/api/servers/{server_id}/power", json={"action": action}
        )


@dataclass
class RunningDaemon:
    directory: Path
    port: int
    process: subprocess.Popen
    log_path: Path
    scheme: str = "http"
    sftp_port: int = 2022

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def log(self) -> str:
        """What this daemon, not an earlier one in the same directory, logged."""
        return self.log_path.read_text()

    def stop(self, number: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.process.poll() is None:
            self.process.send_signal(number)
        return self.process.wait(timeout)


def write_config(
    directory: Path,
    port: int,
    panel_url: str,
    upload_limit_mb: int = 2,
    tls: tuple[Path, Path] | None = None,
    sftp_port: int = 2022,
) -> Path:
    config = directory / "node.toml"
    tls_lines = f'tls_cert = "{tls[0]}"\ntls_key = "{tls[1]}"\n' if tls else ""
    config.write_text(
        f"""[panel]
url = "{panel_url}"
token_id = "{TOKEN_ID}"
token = "{TOKEN}"

[api]
host = "127.0.0.1"
port = {port}
upload_limit_mb = {upload_limit_mb}
{tls_lines}
[sftp]
host = "127.0.0.1"
port = {sftp_port}

[system]
data_dir = "{directory / "data"}"
stop_timeout = 5
"""
    )
    return config


def run_daemon(config: Path, log: Path) -> subprocess.Popen:
    with log.open("wb") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "devdaemon", "--config", str(config)],
            cwd=REPO,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


def wait_until_up(daemon: RunningDaemon, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if daemon.process.poll() is not None:
            raise AssertionError(f"the daemon exited early:\n{daemon.log}")
        try:
            # Any answer will do, so the probe need not trust a test certificate.
            httpx.get(f"{daemon.url}/api/system", timeout=1, verify=False)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError(f"the daemon did not answer in {timeout} s:\n{daemon.log}")


@dataclass
class DaemonPool:
    """Starts daemons; kills whatever is left of them when the test is done."""

    started: list[RunningDaemon] = field(default_factory=list)

    def start(
        self,
        directory: Path,
        panel_url: str = CLOSED_PANEL,
        port: int | None = None,
        upload_limit_mb: int = 2,
        tls: tuple[Path, Path] | None = None,
        sftp_port: int | None = None,
    ) -> RunningDaemon:
        port = port or free_port()
        # Every daemon serves SFTP; each gets a port of its own unless told one.
        sftp_port = sftp_port or free_port()
        directory.mkdir(parents=True, exist_ok=True)
        config = write_config(
            directory, port, panel_url, upload_limit_mb, tls, sftp_port
        )
        log = directory / f"daemon-{len(self.started)}.log"
        process = run_daemon(config, log)
        scheme = "https" if tls else "http"
        daemon = RunningDaemon(directory, port, process, log, scheme, sftp_port)
        self.started.append(daemon)
        wait_until_up(daemon)
        return daemon

    def kill_all(self) -> None:
        """Gracefully, so that the daemons stop their game servers too."""
        for daemon in self.started:
            try:
                daemon.stop(timeout=10)
            except subprocess.TimeoutExpired:
                daemon.process.kill()
                daemon.process.wait(10)


class Watch:
    """A signed WebSocket on a server, and every frame it has received."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.frames: list[dict] = []

    async def send(self, event: str, *args: Any) -> None:
        await self.ws.send_str(json.dumps({"event": event, "args": list(args)}))

    async def until(self, wanted: Callable[[dict], bool], timeout: float = 15) -> dict:
        """The first frame from now on that is `wanted`."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self.ws.receive()
                assert message.type == aiohttp.WSMsgType.TEXT, message
                received = json.loads(message.data)
                self.frames.append(received)
                if wanted(received):
                    return received

    async def until_event(self, event: str, *args: Any, timeout: float = 15) -> dict:
        return await self.until(
            lambda f: f["event"] == event and (not args or f["args"] == list(args)),
            timeout,
        )

    async def until_line(self, text: str, timeout: float = 15) -> dict:
        return await self.until(
            lambda f: f["event"] == "console output" and text in f["args"][0],
            timeout,
        )


async def watch(
    session: aiohttp.ClientSession, daemon: RunningDaemon, server_id: str
) -> Watch:
    path = f"/api/servers/{server_id}/ws"
    ws = await session.ws_connect(
        f"{daemon.url}{path}", headers=signed_headers("GET", path)
    )
    return Watch(ws)
