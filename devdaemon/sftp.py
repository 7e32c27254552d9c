"""The SFTP server: a server's files, for the users the panel lets in.

A login is `{server_id}.{user_email}` with the user's panel password. The panel
decides (`POST /api/remote/sftp/auth`); the daemon also wants the server on record.
A session sees its server's directory as "/": the client's paths are read from
there, `..` may climb back up to it but not above, and every path then passes the
checks of the file routes (files.py), symlinks followed. Passwords only: no public
keys, no shell, no commands, no forwarding.

NB: the disk limit is checked against the server's usage as measured when a file
takes its first write; two files written at once each count on the same room.
"""

import asyncio
import logging
import os
import posixpath
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import asyncssh
from aiohttp import web
from asyncssh import (
    SFTPAttrs,
    SFTPFailure,
    SFTPName,
    SFTPNoSuchFile,
    SFTPOpUnsupported,
    SFTPPermissionDenied,
)

from devdaemon.daemon import Daemon
from devdaemon.errors import DaemonError, Forbidden, NotFound
from devdaemon.files import disk_room, entry, resolve
from devdaemon.panel import PanelError
from devdaemon.servers import Server

logger = logging.getLogger(__name__)

HOST_KEY = "ssh_host_ed25519_key"
MB = 1024 * 1024
STOP_TIMEOUT_S = 5


class SFTPUnavailable(Exception):
    """The SFTP server cannot start: its host key or its address is at fault."""


def host_key(data_dir: Path) -> asyncssh.SSHKey:
    """This node's host key, made on the first start and kept for the next ones."""
    path = data_dir / HOST_KEY
    if path.exists():
        try:
            return asyncssh.read_private_key(path)
        except (OSError, asyncssh.KeyImportError) as error:
            raise SFTPUnavailable(f"cannot read the host key {path}: {error}") from None
    key = asyncssh.generate_private_key("ssh-ed25519")
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(key.export_private_key())
    except OSError as error:
        raise SFTPUnavailable(
            f"cannot write the host key {path}: {error.strerror}"
        ) from None
    logger.info("generated the SFTP host key %s", path)
    return key


def inside(path: bytes) -> str:
    """The client's path relative to the server's directory, which it sees as "/"."""
    parts: list[str] = []
    for part in os.fsdecode(path).split("/"):
        if part == "..":
            if not parts:
                raise SFTPPermissionDenied(
                    f"{os.fsdecode(path)!r} climbs out of the server's directory"
                )
            parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    return "/".join(parts)


@contextmanager
def sftp_errors() -> Iterator[None]:
    """The refusals of the file routes' checks, as SFTP errors."""
    try:
        yield
    except Forbidden as error:
        raise SFTPPermissionDenied(str(error)) from None
    except NotFound as error:
        raise SFTPNoSuchFile(str(error)) from None
    except DaemonError as error:
        raise SFTPFailure(str(error)) from None


class Login(asyncssh.SSHServer):
    """One SSH connection: its password login and, once in, its server."""

    def __init__(self, service: "SFTPService") -> None:
        self.service = service
        self.connection: asyncssh.SSHServerConnection | None = None
        self.ip = ""
        self.server: Server | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.connection = conn
        self.ip = str((conn.get_extra_info("peername") or ("",))[0])
        self.service.logins.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.connection = None
        self.service.logins.discard(self)
        if self.server:
            self.server.sessions.discard(self)

    def end(self) -> None:
        if self.connection:
            self.connection.close()

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    async def validate_password(self, username: str, password: str) -> bool:
        try:
            grant = await self.service.daemon.panel.sftp_auth(
                username, password, self.ip
            )
        except PanelError as error:
            logger.warning("SFTP login of %r refused: %s", username, error)
            return False
        if grant is None:
            logger.info(
                "SFTP login of %r from %s refused by the panel", username, self.ip
            )
            return False
        server_id = username.partition(".")[0]
        server = self.service.daemon.servers.get(grant.server)
        if grant.server != server_id or server is None or server.gone:
            logger.warning(
                "SFTP login of %r refused: the panel granted server %r, which is "
                "not this login's or not on this node",
                username,
                grant.server,
            )
            return False
        if self.connection is None:
            return False
        self.server = server
        server.sessions.add(self)
        logger.info(
            "SFTP login of %s to server %s from %s", grant.user, server.id, self.ip
        )
        return True


class Jail(asyncssh.SFTPServer):
    """The SFTP requests of a session, inside its server's directory."""

    def __init__(self, chan: asyncssh.SSHServerChannel) -> None:
        super().__init__(chan)
        login = chan.get_connection().get_owner()
        assert isinstance(login, Login) and login.server, "a login comes first"
        self.server = login.server
        self.upload_limit_mb = login.service.daemon.config.upload_limit_mb
        self.rooms: dict[Any, int] = {}

    @property
    def root(self) -> Path:
        if self.server.gone:
            raise SFTPNoSuchFile(f"server {self.server.id} was deleted")
        return self.server.directory

    def real(self, path: bytes) -> Path:
        """Where `path` leads, every symlink followed; never outside."""
        relative = inside(path)
        with sftp_errors():
            return resolve(self.root, relative)

    def entry(self, path: bytes) -> Path:
        """The entry `path` names, itself; never the server's directory."""
        relative = inside(path)
        if not relative:
            raise SFTPPermissionDenied("the server's directory itself cannot change")
        with sftp_errors():
            return entry(self.root, relative)

    def virtual(self, real: Path) -> bytes:
        """The path the client sees for `real`, which is in the server's directory."""
        relative = real.relative_to(self.root.resolve())
        return os.fsencode("/" + "/".join(relative.parts))

    def map_path(self, path: bytes) -> bytes:
        return os.fsencode(self.real(path))

    def realpath(self, path: bytes) -> bytes:
        return self.virtual(self.real(path))

    def lstat(self, path: bytes) -> os.stat_result:
        if not inside(path):
            return os.stat(self.root)
        return os.lstat(self.entry(path))

    def scandir(self, path: bytes) -> AsyncIterator[SFTPName]:
        directory = self.real(path)
        if not directory.is_dir():
            raise SFTPNoSuchFile(f"no directory {os.fsdecode(path)!r}")
        return self.names(directory)

    async def names(self, directory: Path) -> AsyncIterator[SFTPName]:
        attrs = SFTPAttrs.from_local(os.stat(directory))
        for dot in (b".", b".."):
            yield SFTPName(dot, attrs=attrs)
        with os.scandir(directory) as entries:
            for item in entries:
                attrs = SFTPAttrs.from_local(item.stat(follow_symlinks=False))
                yield SFTPName(os.fsencode(item.name), attrs=attrs)

    def remove(self, path: bytes) -> None:
        os.remove(self.entry(path))

    def mkdir(self, path: bytes, attrs: SFTPAttrs) -> None:
        mode = 0o777 if attrs.permissions is None else attrs.permissions
        os.mkdir(self.entry(path), mode)

    def rmdir(self, path: bytes) -> None:
        os.rmdir(self.entry(path))

    def rename(self, oldpath: bytes, newpath: bytes) -> None:
        source, target = self.entry(oldpath), self.entry(newpath)
        if os.path.lexists(target):
            raise SFTPFailure(f"{os.fsdecode(newpath)!r} exists already")
        os.rename(source, target)

    def posix_rename(self, oldpath: bytes, newpath: bytes) -> None:
        os.replace(self.entry(oldpath), self.entry(newpath))

    def readlink(self, path: bytes) -> bytes:
        link = self.entry(path)
        target = (link.parent / os.readlink(link)).resolve()
        if not target.is_relative_to(self.root.resolve()):
            raise SFTPPermissionDenied(
                f"{os.fsdecode(path)!r} leads outside the server's directory"
            )
        return self.virtual(target)

    def symlink(self, oldpath: bytes, newpath: bytes) -> None:
        link = self.entry(newpath)
        if not oldpath.startswith(b"/"):
            parent = posixpath.dirname(inside(newpath))
            oldpath = posixpath.join(b"/", os.fsencode(parent), oldpath)
        # The target must lead inside, through whatever links lie on its way.
        self.real(oldpath)
        target = self.root.resolve() / inside(oldpath)
        os.symlink(os.path.relpath(target, link.parent), link)

    def link(self, oldpath: bytes, newpath: bytes) -> None:
        raise SFTPOpUnsupported("hard links are not supported here")

    async def write(self, file_obj: Any, offset: int, data: bytes) -> int:
        size = os.fstat(file_obj.fileno()).st_size
        end = size + len(data) if "a" in file_obj.mode else offset + len(data)
        await self.check_growth(file_obj, size, end)
        return super().write(file_obj, offset, data)

    async def setstat(self, path: bytes, attrs: SFTPAttrs) -> None:
        if attrs.size is not None:
            real = self.real(path)
            size = real.stat().st_size if real.is_file() else 0
            await self.check_growth(None, size, attrs.size)
        super().setstat(path, attrs)

    async def fsetstat(self, file_obj: Any, attrs: SFTPAttrs) -> None:
        if attrs.size is not None:
            size = os.fstat(file_obj.fileno()).st_size
            await self.check_growth(file_obj, size, attrs.size)
        super().fsetstat(file_obj, attrs)

    async def check_growth(self, file_obj: Any, size: int, end: int) -> None:
        """SFTPFailure unless a file may grow from `size` to `end` bytes."""
        if end > self.upload_limit_mb * MB:
            raise SFTPFailure(
                f"the file would be over this node's upload limit of "
                f"{self.upload_limit_mb} MB"
            )
        growth = end - size
        if growth <= 0:
            return
        room = self.rooms.get(file_obj)
        if room is None:
            room = await disk_room(self.server)
        if growth > room:
            raise SFTPFailure(
                f"disk quota exceeded: server {self.server.id} may use "
                f"{self.server.config.limits.disk_mb} MB and has {max(room, 0)} "
                "bytes left"
            )
        if file_obj is not None:
            self.rooms[file_obj] = room - growth

    def close(self, file_obj: Any) -> None:
        self.rooms.pop(file_obj, None)
        super().close(file_obj)


class SFTPService:
    """The listener and its connections."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.acceptor: asyncssh.SSHAcceptor | None = None
        self.logins: set[Login] = set()

    async def start(self) -> None:
        config = self.daemon.config
        key = host_key(config.data_dir)
        if not logger.isEnabledFor(logging.DEBUG):
            logging.getLogger("asyncssh").setLevel(logging.WARNING)
        try:
            self.acceptor = await asyncssh.listen(
                config.sftp_host,
                config.sftp_port,
                server_factory=lambda: Login(self),
                server_host_keys=[key],
                sftp_factory=Jail,
                allow_scp=False,
                password_auth=True,
                public_key_auth=False,
                kbdint_auth=False,
                host_based_auth=False,
                gss_kex=False,
                gss_auth=False,
                agent_forwarding=False,
                allow_pty=False,
            )
        except OSError as error:
            raise SFTPUnavailable(
                f"cannot serve SFTP on {config.sftp_host}:{config.sftp_port}: "
                f"{error.strerror or error}"
            ) from None
        logger.info(
            "SFTP on %s:%d, host key %s",
            config.sftp_host,
            config.sftp_port,
            key.get_fingerprint(),
        )

    async def stop(self) -> None:
        if self.acceptor is None:
            return
        self.acceptor.close()
        for login in list(self.logins):
            login.end()
        with suppress(TimeoutError):
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await self.acceptor.wait_closed()


def serve_sftp(app: web.Application, daemon: Daemon) -> None:
    """Serve SFTP from once the daemon has started until it begins to stop."""
    service = SFTPService(daemon)

    async def start(_: web.Application) -> None:
        await service.start()

    async def stop(_: web.Application) -> None:
        await service.stop()

    app.on_startup.append(start)
    app.on_shutdown.insert(0, stop)
