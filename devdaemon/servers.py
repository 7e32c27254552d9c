"""A game server on this node: its state, process, install, console and watchers.

A server runs as a local process in its own directory and session, so that it and
everything it starts can be signalled as one process group.

NB: a daemon killed with SIGKILL leaves its servers' processes running, out of its
reach; the game server that the install script writes exits when its console closes.

NB: limits are reported, not enforced: a process may use more CPU, memory or disk
than its limits say. The file routes and SFTP refuse writes past the disk limit,
nothing else.
"""

import asyncio
import contextlib
import json
import logging
import os
import re
import shlex
import shutil
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

from devdaemon.console import Console, LineSplitter
from devdaemon.errors import BadRequest, Conflict
from devdaemon.quota import Quota
from devdaemon.serverconfig import ServerConfig
from devdaemon.stats import TreeSampler, directory_size

logger = logging.getLogger(__name__)

INSTALLING = "installing"
INSTALL_FAILED = "install_failed"
OFFLINE = "offline"
STARTING = "starting"
RUNNING = "running"
STOPPING = "stopping"
ALIVE = (STARTING, RUNNING, STOPPING)

HERE = Path(__file__).resolve().parent
INSTALLER = HERE / "installer.py"
GAMESERVER = HERE / "gameserver.py"
# A server that never prints a "Done!" line is taken as running after this long.
RUNNING_GRACE_S = 5.0
DONE = re.compile(r"\bDone\b[^!\n]*!")
TERM_GRACE_S = 5.0
INSTALL_TIMEOUT_S = 300.0
COMMAND_TIMEOUT_S = 5.0
PLACEHOLDER = re.compile(r"\{\{([A-Za-z_][A-Za-z0-9_]*)\}\}")


class Watcher(Protocol):
    """A WebSocket that receives a server's events."""

    def offer(self, frame: str) -> None: ...

    async def close(self) -> None: ...


class Session(Protocol):
    """An SFTP session in a server's files."""

    def end(self) -> None: ...


class Reporter(Protocol):
    def report_state(self, server_id: str, state: str) -> None: ...

    def report_install(self, server_id: str, successful: bool) -> None: ...


def frame(event: str, *args: Any) -> str:
    return json.dumps({"event": event, "args": list(args)}, ensure_ascii=False)


class Server:
    def __init__(
        self,
        config: ServerConfig,
        servers_dir: Path,
        panel: Reporter,
        stop_timeout: float,
        install: str = "pending",
        state: str = OFFLINE,
    ) -> None:
        self.config = config
        self.directory = servers_dir / config.id
        self.record = servers_dir / f"{config.id}.json"
        self.panel = panel
        self.stop_timeout = stop_timeout
        # "pending" (never run), "running", "done" or "failed".
        self.install_status = install
        self.state = state
        self.console = Console()
        self.watchers: set[Watcher] = set()
        self.sessions: set[Session] = set()
        self.quota = Quota(self)
        self.tasks: set[asyncio.Task] = set()
        self.process: asyncio.subprocess.Process | None = None
        self.installer: asyncio.subprocess.Process | None = None
        self.sampler: TreeSampler | None = None
        self.started_at = 0.0
        self.last_stats: dict[str, Any] | None = None
        self.spawned = asyncio.Event()
        self.exited = asyncio.Event()
        self.exit_expected = False
        self.restart_pending = False
        self.gone = False

    @property
    def id(self) -> str:
        return self.config.id

    def set_state(self, state: str) -> None:
        if state == self.state or self.gone:
            return
        logger.info("server %s is %s (was %s)", self.id, state, self.state)
        self.state = state
        self.broadcast("status", state)
        self.panel.report_state(self.id, state)

    def broadcast(self, event: str, *args: Any) -> None:
        message = frame(event, *args)
        for watcher in list(self.watchers):
            watcher.offer(message)

    def console_line(self, line: str) -> None:
        self.console.add(line)
        self.broadcast("console output", line)

    def daemon_line(self, text: str) -> None:
        self.console_line(f"[daemon] {text}")

    def save(self) -> None:
        record = {"config": self.config.as_json(), "install": self.install_status}
        temporary = self.record.with_suffix(".tmp")
        # The environment may hold secrets: the record is for the daemon's user only.
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            json.dump(record, file, indent=2)
        temporary.replace(self.record)

    def update(self, config: ServerConfig) -> None:
        # NB: a running process keeps the command line, environment and ports it
        # was started with; the new ones apply from its next start.
        self.config = config
        self.save()

    def spawn_task(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.task_done)

    def task_done(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception():
            logger.error(
                "server %s: a background task failed",
                self.id,
                exc_info=task.exception(),
            )

    async def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.config.name,
            "state": self.state,
            "limits": asdict(self.config.limits),
            "allocations": self.config.allocations(),
            "resources": await self.resources(),
        }

    async def resources(self) -> dict[str, Any]:
        if self.last_stats is not None and self.process:
            return self.last_stats
        return await self.measure()

    async def measure(self) -> dict[str, Any]:
        cpu, rss = self.sampler.sample() if self.sampler else (0.0, 0)
        disk = await asyncio.to_thread(directory_size, self.directory)
        uptime = time.monotonic() - self.started_at if self.process else 0
        return {
            "cpu_percent": cpu,
            "memory_bytes": rss,
            "memory_limit_bytes": self.config.limits.memory_bytes,
            "disk_bytes": disk,
            "disk_limit_bytes": self.config.limits.disk_bytes,
            # NB: the OS counts network traffic per interface or namespace, not per
            # process, so a process on the host's network has no numbers of its own.
            "network_rx_bytes": 0,
            "network_tx_bytes": 0,
            "uptime_ms": int(uptime * 1000),
        }

    def power(self, action: Any) -> None:
        actions = {
            "start": self.start,
            "stop": self.stop,
            "restart": self.restart,
            "kill": self.kill,
        }
        if action not in actions:
            raise BadRequest("action must be one of start, stop, restart, kill")
        actions[action]()

    def start(self) -> None:
        if self.state != OFFLINE:
            raise Conflict(f"the server is {self.state}; it starts only when offline")
        if self.install_status != "done":
            raise Conflict("the server is not installed; install it first")
        self.exit_expected = False
        self.spawned = asyncio.Event()
        self.exited = asyncio.Event()
        self.set_state(STARTING)
        self.spawn_task(self.run())

    def stop(self) -> None:
        if self.state not in (STARTING, RUNNING):
            raise Conflict(f"the server is {self.state}; only a running server stops")
        self.exit_expected = True
        self.set_state(STOPPING)
        self.spawn_task(self.stop_process())

    def restart(self) -> None:
        if self.state == OFFLINE:
            self.start()
            return
        self.stop()
        self.restart_pending = True

    def kill(self) -> None:
        if self.state not in ALIVE:
            raise Conflict(f"the server is {self.state}; there is nothing to kill")
        self.exit_expected = True
        self.restart_pending = False
        self.spawn_task(self.kill_process())

    async def send_command(self, command: str) -> None:
        stdin = self.process.stdin if self.process else None
        if stdin is None or self.state not in (STARTING, RUNNING):
            raise Conflict(f"the server is {self.state}; commands need it running")
        if "\n" in command or "\r" in command:
            raise BadRequest("a command is one line")
        stdin.write(command.encode() + b"\n")
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT_S):
                await stdin.drain()
        except (OSError, TimeoutError):
            raise Conflict("the server does not read its console") from None

    async def run(self) -> None:
        process = await self.spawn()
        if process is None or process.stdout is None:
            self.set_state(OFFLINE)
            return
        grace = asyncio.get_running_loop().call_later(RUNNING_GRACE_S, self.up)
        pump = asyncio.create_task(self.pump(process.stdout))
        stats = asyncio.create_task(self.report_stats())
        code = await process.wait()
        grace.cancel()
        stats.cancel()
        # Whatever the server left behind in its process group goes with it.
        self.signal(signal.SIGKILL)
        await asyncio.wait([pump], timeout=2)
        pump.cancel()
        self.ended(code)

    async def spawn(self) -> asyncio.subprocess.Process | None:
        try:
            self.process = await asyncio.create_subprocess_exec(
                *self.command_line(),
                cwd=self.directory,
                env=self.environment(),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        except (OSError, ValueError) as error:
            logger.info("server %s could not start: %s", self.id, error)
            self.daemon_line(f"the server could not start: {error}")
            return None
        finally:
            self.spawned.set()
        self.started_at = time.monotonic()
        self.sampler = TreeSampler(self.process.pid)
        return self.process

    def ended(self, code: int) -> None:
        self.process = None
        self.sampler = None
        self.last_stats = None
        self.exited.set()
        if not self.exit_expected:
            logger.info("server %s exited by itself with code %s", self.id, code)
            self.daemon_line(f"the server exited by itself with code {code}")
        self.set_state(OFFLINE)
        if self.restart_pending:
            self.restart_pending = False
            self.start()

    def up(self) -> None:
        if self.state == STARTING:
            self.set_state(RUNNING)

    async def pump(self, stream: asyncio.StreamReader) -> None:
        splitter = LineSplitter()
        while chunk := await stream.read(64 * 1024):
            for line in splitter.feed(chunk):
                self.output(line)
        for line in splitter.close():
            self.output(line)

    def output(self, line: str) -> None:
        self.console_line(line)
        if DONE.search(line):
            self.up()

    async def report_stats(self) -> None:
        while True:
            await asyncio.sleep(1)
            self.last_stats = await self.measure()
            self.broadcast("stats", self.last_stats)

    async def stop_process(self) -> None:
        await self.spawned.wait()
        process = self.process
        if process is None or process.stdin is None:
            return
        # NB: every server is asked to stop with the `stop` console command.
        try:
            process.stdin.write(b"stop\n")
            async with asyncio.timeout(COMMAND_TIMEOUT_S):
                await process.stdin.drain()
        except (OSError, TimeoutError):
            pass  # it no longer reads its console: the signals below still work
        if await self.exits_within(self.stop_timeout):
            return
        self.signal(signal.SIGTERM)
        if not await self.exits_within(TERM_GRACE_S):
            self.signal(signal.SIGKILL)

    async def kill_process(self) -> None:
        await self.spawned.wait()
        self.signal(signal.SIGKILL)

    async def exits_within(self, seconds: float) -> bool:
        try:
            async with asyncio.timeout(seconds):
                await self.exited.wait()
        except TimeoutError:
            return False
        return True

    def signal(self, number: signal.Signals) -> None:
        """Send `number` to the server's process group."""
        if self.process is not None:
            signal_group(self.process.pid, number)

    def kill_installer(self) -> None:
        if self.installer is not None:
            signal_group(self.installer.pid, signal.SIGKILL)

    def command_line(self) -> list[str]:
        variables = self.config.environment | {
            "SERVER_IP": self.config.default.ip,
            "SERVER_PORT": str(self.config.default.port),
            "SERVER_MEMORY": str(self.config.limits.memory_mb),
            "PYTHON": sys.executable,
        }

        def value(match: re.Match) -> str:
            if match[1] not in variables:
                raise ValueError(f"the startup command names an unknown {match[0]}")
            return variables[match[1]]

        # Filled in after splitting, so that a value with spaces stays one argument.
        return [
            PLACEHOLDER.sub(value, word) for word in shlex.split(self.config.startup)
        ]

    def environment(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", os.defpath),
            "HOME": str(self.directory),
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            "SERVER_IP": self.config.default.ip,
            "SERVER_PORT": str(self.config.default.port),
            "SERVER_MEMORY": str(self.config.limits.memory_mb),
        } | self.config.environment

    def install(self) -> None:
        if self.state not in (OFFLINE, INSTALL_FAILED):
            raise Conflict(f"the server is {self.state}; it installs only when offline")
        self.install_status = "running"
        self.save()
        self.set_state(INSTALLING)
        self.broadcast("install started")
        self.spawn_task(self.run_install())

    async def run_install(self) -> None:
        try:
            successful = await self.run_installer()
        except Exception:
            # Whatever went wrong, the server must not stay "installing" for good.
            logger.exception("the install of server %s failed", self.id)
            successful = False
        self.install_status = "done" if successful else "failed"
        self.save()
        self.broadcast("install completed", {"successful": successful})
        self.set_state(OFFLINE if successful else INSTALL_FAILED)
        if not self.gone:
            self.panel.report_install(self.id, successful)

    async def run_installer(self) -> bool:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.installer = await asyncio.create_subprocess_exec(
            sys.executable,
            INSTALLER,
            "--gameserver",
            GAMESERVER,
            cwd=self.directory,
            env=self.environment(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            async with asyncio.timeout(INSTALL_TIMEOUT_S):
                return await self.follow_installer(self.installer)
        except TimeoutError:
            self.kill_installer()
            self.broadcast("install output", "the install took too long and was killed")
            return False
        finally:
            self.installer = None

    async def follow_installer(self, process: asyncio.subprocess.Process) -> bool:
        assert process.stdout is not None
        splitter = LineSplitter()
        while chunk := await process.stdout.read(64 * 1024):
            for line in splitter.feed(chunk):
                self.broadcast("install output", line)
        for line in splitter.close():
            self.broadcast("install output", line)
        code = await process.wait()
        if code != 0:
            self.broadcast("install output", f"the install script exited with {code}")
        return code == 0

    async def shutdown(self) -> None:
        """Stop everything this server runs: SIGTERM, then SIGKILL."""
        self.restart_pending = False
        self.exit_expected = True
        self.end_sessions()
        await self.close_watchers()
        self.signal(signal.SIGTERM)
        self.kill_installer()
        if not self.tasks:
            return
        _, pending = await asyncio.wait(self.tasks, timeout=TERM_GRACE_S)
        if pending:
            self.signal(signal.SIGKILL)
            await asyncio.wait(pending, timeout=2)

    async def close_watchers(self) -> None:
        await asyncio.gather(*(watcher.close() for watcher in list(self.watchers)))

    def end_sessions(self) -> None:
        for session in list(self.sessions):
            session.end()
        self.sessions.clear()

    async def destroy(self) -> None:
        """Stop everything at once and remove the server's files and record."""
        self.gone = True
        self.end_sessions()
        self.restart_pending = False
        self.exit_expected = True
        self.signal(signal.SIGKILL)
        self.kill_installer()
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=5)
        for task in self.tasks:
            task.cancel()
        await self.close_watchers()
        await asyncio.to_thread(shutil.rmtree, self.directory, ignore_errors=True)
        self.record.unlink(missing_ok=True)


def signal_group(pid: int, number: signal.Signals) -> None:
    # The group may be gone already, which is what we wanted.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, number)
