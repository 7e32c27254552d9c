"""The daemon: its servers, their records on disk, its boot-time sync with the panel.

Each server has a record, `{data_dir}/servers/{id}.json` (its config and how far its
install got), and a directory, `{data_dir}/servers/{id}/`.

NB: processes do not survive the daemon. A restarted daemon finds every server
offline (or install_failed, if its install never finished) and tells the panel so.
"""

import asyncio
import json
import logging
from typing import Any

from aiohttp import web

from devdaemon.config import Config
from devdaemon.errors import BadRequest, Conflict, NotFound
from devdaemon.panel import Panel
from devdaemon.serverconfig import ServerConfig, parse_server_config
from devdaemon.servers import INSTALL_FAILED, OFFLINE, Server
from devdaemon.signing import Verifier

logger = logging.getLogger(__name__)


class Daemon:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.panel = Panel(config.panel_url, config.token_id, config.token)
        self.verifier = Verifier(config.token_id, config.token)
        self.servers: dict[str, Server] = {}
        self.boot_task: asyncio.Task | None = None
        self.background: set[asyncio.Task] = set()
        self.deleting: set[str] = set()

    def server(self, config: ServerConfig, install: str, state: str) -> Server:
        return Server(
            config,
            self.config.servers_dir,
            self.panel,
            self.config.stop_timeout,
            install=install,
            state=state,
        )

    def get(self, server_id: str) -> Server:
        try:
            return self.servers[server_id]
        except KeyError:
            raise NotFound(f"no server {server_id!r} on this node") from None

    def load(self) -> None:
        """Read the records of the servers this node had before it stopped."""
        for path in sorted(self.config.servers_dir.glob("*.json")):
            try:
                record = json.loads(path.read_text())
                config = parse_server_config(record["config"])
                install = record["install"]
            except (OSError, ValueError, KeyError, TypeError, BadRequest) as error:
                logger.warning(
                    "skipped the unreadable server record %s: %s", path, error
                )
                continue
            self.servers[config.id] = self.revived(config, install)
        logger.info("%d servers on record", len(self.servers))

    def revived(self, config: ServerConfig, install: str) -> Server:
        if install == "done":
            return self.server(config, install, OFFLINE)
        # An install that was running when the daemon stopped never finished.
        server = self.server(config, "failed", INSTALL_FAILED)
        if install == "running":
            server.save()
        return server

    async def start(self) -> None:
        await self.panel.open()
        self.boot_task = asyncio.create_task(self.sync_with_panel())

    async def create(self, config: ServerConfig) -> Server:
        if config.id in self.servers:
            raise Conflict(f"server {config.id!r} exists already")
        if config.id in self.deleting:
            raise Conflict(f"server {config.id!r} is being deleted; try again")
        server = self.server(config, "pending", OFFLINE)
        server.directory.mkdir(parents=True, exist_ok=True)
        server.save()
        self.servers[config.id] = server
        logger.info("created server %s", config.id)
        return server

    async def delete(self, server_id: str) -> None:
        server = self.get(server_id)
        del self.servers[server_id]
        self.deleting.add(server_id)
        try:
            await server.destroy()
        finally:
            self.deleting.discard(server_id)
        logger.info("deleted server %s and its files", server_id)

    async def sync_with_panel(self) -> None:
        """Adopt the panel's list of our servers, however long it takes to get it."""
        # Servers created while the list is on its way are not the list's to forget.
        known = set(self.servers)
        configs = await self.panel.fetch_servers()
        self.adopt(configs, known)
        for server in self.servers.values():
            self.panel.report_state(server.id, server.state)

    def adopt(self, configs: list[Any], known: set[str]) -> None:
        listed = set()
        for data in configs:
            if isinstance(data, dict) and isinstance(data.get("id"), str):
                listed.add(data["id"])
            try:
                config = parse_server_config(data)
            except BadRequest as error:
                logger.warning(
                    "the panel's config of a server is invalid: %s: %.200r", error, data
                )
                continue
            if config.id in self.servers:
                self.servers[config.id].update(config)
            else:
                self.adopt_new(config)
        for server_id in known - listed:
            self.forget(server_id)

    def adopt_new(self, config: ServerConfig) -> None:
        server = self.server(config, "pending", INSTALL_FAILED)
        server.directory.mkdir(parents=True, exist_ok=True)
        server.save()
        self.servers[config.id] = server
        logger.info("adopted server %s from the panel; it needs an install", config.id)

    def forget(self, server_id: str) -> None:
        server = self.servers.pop(server_id, None)
        if server is None:
            return
        server.gone = True
        stopping = asyncio.create_task(server.shutdown())
        self.background.add(stopping)
        stopping.add_done_callback(self.background.discard)
        server.record.unlink(missing_ok=True)
        logger.info(
            "forgot server %s, which the panel no longer has; its files stay in %s",
            server_id,
            server.directory,
        )

    async def shutdown(self) -> None:
        if self.boot_task:
            self.boot_task.cancel()
        await asyncio.gather(
            *(server.shutdown() for server in self.servers.values()),
            *self.background,
        )
        await self.panel.close()


DAEMON = web.AppKey("daemon", Daemon)


def server_of(request: web.Request) -> Server:
    return request.app[DAEMON].get(request.match_info["id"])
