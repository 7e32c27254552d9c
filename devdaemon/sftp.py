"""The SFTP server: a server's files, for the users the panel lets in.

A login is `{server_id}.{user_email}` with the user's panel password. The panel
decides (`POST /api/remote/sftp/auth`); the daemon also wants the server on record.
A session sees its server's directory as "/": the client's paths are read from
there, `..` may climb back up to it but not above, and every path then passes the
checks of the file routes (files.py), symlinks followed. Passwords only: no public
keys, no shell, no commands, no forwarding. Every write draws on the server's disk
quota (quota.py), shared with the file routes and the server's other sessions.
"""

import asyncio
import copy
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
    FXF_APPEND,
    FXF_CREAT,
    FXF_EXCL,
    FXF_READ,
    FXF_TRUNC,
    FXF_WRITE,
    SFTPAttrs,
    SFTPFailure,
    SFTPName,
    SFTPNoSuchFile,
    SFTPOpUnsupported,
    SFTPPermissionDenied,
)

from devdaemon.daemon import Daemon
from devdaemon.errors import DaemonError, Forbidden, NotFound
from devdaemon.files import NotRegular, check_move, entry, open_regular, resolve
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
        # Server ids are lowercase; the panel reads a username in any case.
        server_id = username.partition(".")[0].lower()
        server = self.service.daemon.servers.get(grant.server)
        if grant.server.lower() != server_id or server is None or server.gone:
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

    def open(self, path: bytes, pflags: int, attrs: SFTPAttrs) -> Any:
        real = self.real(path)
        if real.exists() and not real.is_file():
            raise not_regular(path)
        flags, mode = open_mode(pflags)
        permissions = 0o666 if attrs.permissions is None else attrs.permissions
        try:
            descriptor = open_regular(real, flags, permissions)
        except NotRegular:
            raise not_regular(path) from None
        return open(descriptor, mode, buffering=0)

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
                # The server's process may remove an entry after it was listed.
                try:
                    attrs = SFTPAttrs.from_local(item.stat(follow_symlinks=False))
                except FileNotFoundError:
                    continue
                yield SFTPName(os.fsencode(item.name), attrs=attrs)

    def remove(self, path: bytes) -> None:
        os.remove(self.entry(path))

    def mkdir(self, path: bytes, attrs: SFTPAttrs) -> None:
        mode = 0o777 if attrs.permissions is None else attrs.permissions & 0o777
        os.mkdir(self.entry(path), mode)

    def rmdir(self, path: bytes) -> None:
        os.rmdir(self.entry(path))

    async def rename(self, oldpath: bytes, newpath: bytes) -> None:
        source, target = self.entry(oldpath), self.entry(newpath)
        if os.path.lexists(target):
            raise SFTPFailure(f"{os.fsdecode(newpath)!r} exists already")
        await self.check_move(source, target)
        os.rename(source, target)

    async def posix_rename(self, oldpath: bytes, newpath: bytes) -> None:
        source, target = self.entry(oldpath), self.entry(newpath)
        await self.check_move(source, target)
        os.replace(source, target)

    async def check_move(self, source: Path, target: Path) -> None:
        with sftp_errors():
            await asyncio.to_thread(check_move, self.root, source, target)

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
        # The real target, checked to be inside: an absolute path leads there from
        # wherever the link is moved to.
        os.symlink(self.real(oldpath), link)

    def link(self, oldpath: bytes, newpath: bytes) -> None:
        raise SFTPOpUnsupported("hard links are not supported here")

    async def write(self, file_obj: Any, offset: int, data: bytes) -> int:
        size = os.fstat(file_obj.fileno()).st_size
        end = size + len(data) if "a" in file_obj.mode else offset + len(data)
        await self.check_growth(file_obj, size, end)
        return super().write(file_obj, offset, data)

    async def setstat(self, path: bytes, attrs: SFTPAttrs) -> None:
        with self.server.quota.writer() as writer:
            if attrs.size is not None:
                real = self.real(path)
                size = real.stat().st_size if real.is_file() else 0
                await self.check_growth(writer, size, attrs.size)
            super().setstat(path, permitted(attrs))

    async def lsetstat(self, path: bytes, attrs: SFTPAttrs) -> None:
        if os.path.islink(self.entry(path)):
            raise SFTPOpUnsupported("a symlink's own attributes cannot change here")
        await self.setstat(path, attrs)

    async def fsetstat(self, file_obj: Any, attrs: SFTPAttrs) -> None:
        if attrs.size is not None:
            size = os.fstat(file_obj.fileno()).st_size
            await self.check_growth(file_obj, size, attrs.size)
        super().fsetstat(file_obj, permitted(attrs))

    async def check_growth(self, writer: object, size: int, end: int) -> None:
        """SFTPFailure unless a file may grow from `size` to `end` bytes."""
        # A file over the upload limit already may still be written in place.
        if end > max(size, self.upload_limit_mb * MB):
            raise SFTPFailure(
                f"the file would be over this node's upload limit of "
                f"{self.upload_limit_mb} MB"
            )
        with sftp_errors():
            await self.server.quota.reserve(writer, end - size)

    def close(self, file_obj: Any) -> None:
        self.server.quota.release(file_obj)
        super().close(file_obj)


def open_mode(pflags: int) -> tuple[int, str]:
    """The flags of os.open and the mode of open() for SFTP's open flags."""
    if not pflags & FXF_WRITE:
        flags, mode = os.O_RDONLY, "rb"
    else:
        # On a descriptor, "w" truncates nothing: it only says the file writes.
        reads = bool(pflags & FXF_READ)
        flags = os.O_RDWR if reads else os.O_WRONLY
        mode = ("a" if pflags & FXF_APPEND else "w") + ("+b" if reads else "b")
    if pflags & FXF_APPEND:
        flags |= os.O_APPEND
    if pflags & FXF_CREAT:
        flags |= os.O_CREAT
    if pflags & FXF_TRUNC:
        flags |= os.O_TRUNC
    if pflags & FXF_EXCL:
        flags |= os.O_CREAT | os.O_EXCL
    return flags, mode


def not_regular(path: bytes) -> SFTPFailure:
    return SFTPFailure(
        f"{os.fsdecode(path)!r} is not a regular file (a directory, FIFO, socket or "
        "device)"
    )


def permitted(attrs: SFTPAttrs) -> SFTPAttrs:
    """The attributes a client may set: no owner, no set-id or sticky bits."""
    safe = copy.copy(attrs)
    safe.uid = safe.gid = safe.owner = safe.group = None
    if safe.permissions is not None:
        safe.permissions &= 0o777
    return safe


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
