"""A stand-in panel that answers SFTP logins, and the two SFTP clients of the tests.

The panel runs in a thread of its own, so that it answers the daemon while a test
blocks, and checks every request's signature as PROTOCOL.md says.
"""

import asyncio
import json
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh
from aiohttp import web
from daemon_harness import RunningDaemon, free_port, is_signed

SFTP = "/usr/bin/sftp"
MAX_PASSWORD_LENGTH = 4096


@dataclass
class StandInPanel:
    """The panel's remote API: a table of SFTP logins, an empty server list."""

    # username -> (password, the server the panel grants)
    logins: dict[str, tuple[str, str]] = field(default_factory=dict)
    requests: list[tuple[str, str, dict | None, bool]] = field(default_factory=list)
    port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def allow(self, username: str, password: str, server_id: str) -> None:
        self.logins[username] = (password, server_id)

    def auth_requests(self) -> list[dict | None]:
        return [p for _, path, p, _ in self.requests if path.endswith("/sftp/auth")]

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        signed = is_signed(request.method, request.raw_path, request.headers, body)
        payload = json.loads(body) if body else None
        self.requests.append((request.method, request.raw_path, payload, signed))
        if not signed:
            return web.json_response(
                {"error": "unauthorized", "message": "bad signature"}, status=401
            )
        if request.path == "/api/remote/servers":
            return web.json_response({"servers": []})
        if request.path == "/api/remote/sftp/auth":
            return self.sftp_auth(payload or {})
        return web.Response(status=204)

    def sftp_auth(self, payload: dict) -> web.Response:
        username = payload.get("username", "")
        if len(payload.get("password", "")) > MAX_PASSWORD_LENGTH:
            return web.json_response(
                {"error": "bad_request", "message": "the password is too long"},
                status=400,
            )
        password, server_id = self.logins.get(username, (None, None))
        if password is None or payload.get("password") != password:
            return web.json_response(
                {"error": "forbidden", "message": "wrong username or password"},
                status=403,
            )
        return web.json_response(
            {
                "server": server_id,
                "user": username.partition(".")[2],
                "permissions": ["file.read", "file.write"],
            }
        )

    def start(self) -> None:
        started = threading.Event()
        self.loop = asyncio.new_event_loop()

        async def serve() -> None:
            app = web.Application()
            app.router.add_route("*", "/api/remote/{tail:.*}", self.handle)
            self.runner = web.AppRunner(app)
            await self.runner.setup()
            await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
            started.set()

        def run() -> None:
            self.loop.run_until_complete(serve())
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert started.wait(10), "the stand-in panel did not start"

    def stop(self) -> None:
        future = asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop)
        future.result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


async def connect(
    daemon: RunningDaemon, username: str, password: str
) -> asyncssh.SSHClientConnection:
    return await asyncssh.connect(
        "127.0.0.1",
        daemon.sftp_port,
        username=username,
        password=password,
        known_hosts=None,
        client_keys=None,
        agent_path=None,
        preferred_auth="password",
        connect_timeout=10,
    )


def openssh_sftp(
    daemon: RunningDaemon,
    username: str,
    password: str,
    commands: list[str],
    workdir: Path,
) -> subprocess.CompletedProcess:
    """OpenSSH's sftp in batch mode, in `workdir`, the password from SSH_ASKPASS."""
    askpass = workdir / "askpass.sh"
    askpass.write_text(f"#!/bin/sh\necho '{password}'\n")
    askpass.chmod(0o700)
    batch = workdir / "batch"
    batch.write_text("\n".join(commands) + "\n")
    return subprocess.run(
        # -b turns BatchMode on, which forbids passwords; the first value wins.
        [SFTP, "-o", "BatchMode=no", "-b", str(batch), "-P", str(daemon.sftp_port)]
        + ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
        + ["-o", "PreferredAuthentications=password"]
        + ["-o", "PubkeyAuthentication=no", "-o", "NumberOfPasswordPrompts=1"]
        + ["-o", f"User={username}", "127.0.0.1"],
        cwd=workdir,
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(workdir),
            "SSH_ASKPASS": str(askpass),
            "SSH_ASKPASS_REQUIRE": "force",
            "DISPLAY": ":0",
        },
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
    )
