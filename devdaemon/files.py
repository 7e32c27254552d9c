"""The file routes of a server: every path is relative to the server's directory.

A path is refused (403) when it is absolute, has a `..` part, or leads outside the
directory once symlinks are followed. Writes and uploads store regular files only
and draw on the server's disk quota (quota.py).

NB: a path is checked, then used. A server process that swaps a directory for a
symlink in between can still lead a request outside; a hardened daemon would open
every part with O_NOFOLLOW, or use openat2's RESOLVE_BENEATH.
"""

import asyncio
import errno
import mimetypes
import os
import posixpath
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from email.message import Message
from pathlib import Path, PurePosixPath
from typing import Any

from aiohttp import web

from devdaemon.daemon import server_of
from devdaemon.errors import BadRequest, Conflict, Forbidden, NotFound

routes = web.RouteTableDef()


def checked(relative: str) -> PurePosixPath:
    if "\0" in relative:
        raise BadRequest("a path cannot hold a NUL character")
    path = PurePosixPath(relative)
    if path.is_absolute():
        raise Forbidden(f"{relative!r} is absolute; paths are relative to the server")
    if ".." in path.parts:
        raise Forbidden(f"{relative!r} climbs out with '..'")
    return path


def resolve(root: Path, relative: str) -> Path:
    """The real path of `relative` under `root`, every symlink followed."""
    base = root.resolve()
    path = (base / checked(relative)).resolve()
    if not path.is_relative_to(base):
        raise Forbidden(f"{relative!r} leads outside the server's directory")
    return path


def below(root: Path, relative: str) -> Path:
    """Like resolve(), but never the server's directory itself."""
    path = resolve(root, relative)
    if path == root.resolve():
        raise BadRequest(f"{relative!r} names the server's directory itself")
    return path


def entry(root: Path, relative: str) -> Path:
    """The entry `relative` names, itself: a symlink there is not followed."""
    path = checked(relative)
    if not path.name:
        raise BadRequest(f"{relative!r} names the server's directory itself")
    return resolve(root, str(path.parent)) / path.name


def describe(path: Path) -> dict[str, Any]:
    info = path.lstat()
    is_directory = stat.S_ISDIR(info.st_mode)
    is_symlink = stat.S_ISLNK(info.st_mode)
    if is_directory:
        mime_type = "inode/directory"
    elif is_symlink:
        mime_type = "inode/symlink"
    else:
        mime_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return {
        "name": path.name,
        "size": info.st_size,
        "is_directory": is_directory,
        "is_symlink": is_symlink,
        "modified": datetime.fromtimestamp(info.st_mtime, UTC).isoformat(),
        "mime_type": mime_type,
    }


def list_directory(directory: Path) -> list[dict[str, Any]]:
    entries = []
    for path in directory.iterdir():
        # The server's process may remove an entry after it was listed.
        with suppress(FileNotFoundError):
            entries.append(describe(path))
    return sorted(entries, key=lambda entry: (not entry["is_directory"], entry["name"]))


def shown(root: Path, path: Path) -> str:
    """`path` as the client names it: relative to the server's directory."""
    return str(path.relative_to(root.resolve()))


def replaced_size(root: Path, path: Path) -> int:
    """The size of the file a write replaces, 0 if none; Conflict unless regular."""
    try:
        info = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return 0
    if stat.S_ISDIR(info.st_mode):
        raise Conflict(f"{shown(root, path)!r} is a directory")
    if not stat.S_ISREG(info.st_mode):
        raise Conflict(
            f"{shown(root, path)!r} is not a regular file (a FIFO, socket or device) "
            "and cannot be written"
        )
    return info.st_size


class NotRegular(Exception):
    """What a path names is there, and not a regular file."""


def open_regular(path: Path, flags: int, mode: int = 0o666) -> int:
    """A descriptor of the regular file `path`, opened with `flags`, or NotRegular.

    Non-blocking and not following a last link, so that a FIFO or a link put there
    since the path was checked cannot hang the daemon or lead it astray.
    """
    flags |= os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        descriptor = os.open(path, flags, mode & 0o777)
    except OSError as error:
        if error.errno in (errno.ENXIO, errno.ELOOP):
            raise NotRegular from None
        raise
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        raise NotRegular
    return descriptor


def store(path: Path, content: bytes) -> None:
    """`content` as the whole of the regular file `path`, created with its parents."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = open_regular(path, os.O_WRONLY | os.O_CREAT)
    except NotRegular:
        raise Conflict(f"{path.name!r} is not a regular file") from None
    with open(descriptor, "wb") as file:
        file.truncate(0)
        file.write(content)


def check_move(root: Path, source: Path, target: Path) -> None:
    """Refuse a move into itself, or one after which a symlink may lead outside."""
    base = root.resolve()
    if stat.S_ISDIR(source.lstat().st_mode):
        if target != source and target.is_relative_to(source):
            raise BadRequest(f"cannot move {shown(root, source)!r} into itself")
        link = next(climbing_links(source), None)
        if link is not None:
            raise Forbidden(
                f"cannot move {shown(root, source)!r}: its symlink "
                f"{shown(root, link)!r} climbs with '..' and could lead outside the "
                "server's directory from the new place; move or remove it first"
            )
    elif source.is_symlink():
        lead = os.path.realpath(target.parent / os.readlink(source))
        if not Path(os.path.normpath(lead)).is_relative_to(base):
            raise Forbidden(
                f"cannot move {shown(root, source)!r} there: the symlink would lead "
                "outside the server's directory"
            )


def climbing_links(directory: Path) -> Iterator[Path]:
    """The symlinks under `directory` with a relative target that has a `..` part.

    NB: a directory holding such a link is not moved, even when the link would
    still lead inside from the new place: telling would mean following it through
    the tree as it will be after the move. Absolute targets, and relative ones that
    only descend, lead to the same place from anywhere.
    """
    for parent, directories, files in os.walk(directory, onerror=raise_error):
        for name in directories + files:
            path = Path(parent, name)
            if not path.is_symlink():
                continue
            target = os.readlink(path)
            if not posixpath.isabs(target) and ".." in PurePosixPath(target).parts:
                yield path


def raise_error(error: OSError) -> None:
    raise error


@contextmanager
def changing(what: str) -> Iterator[None]:
    """The OS errors of a change as the protocol's answers, not as 500s."""
    try:
        yield
    except FileNotFoundError:
        raise NotFound(f"cannot {what}: part of the path does not exist") from None
    except PermissionError:
        raise Forbidden(f"cannot {what}: permission denied") from None
    except OSError as error:
        raise Conflict(f"cannot {what}: {error.strerror}") from None


def query(request: web.Request, name: str, default: str | None = None) -> str:
    value = request.query.get(name, default)
    if value is None:
        raise BadRequest(f"the query needs ?{name}=")
    return value


async def json_object(request: web.Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except ValueError:
        raise BadRequest("the body is not JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    return data


def string_field(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise BadRequest(f"{key} must be a string")
    return value


@routes.get("/api/servers/{id}/files/list")
async def list_files(request: web.Request) -> web.Response:
    server = server_of(request)
    directory = resolve(server.directory, query(request, "directory", ""))
    if not directory.is_dir():
        raise NotFound("no such directory")
    with changing("list the directory"):
        listing = await asyncio.to_thread(list_directory, directory)
    return web.json_response(listing)


@routes.get("/api/servers/{id}/files/contents")
async def file_contents(request: web.Request) -> web.StreamResponse:
    server = server_of(request)
    path = below(server.directory, query(request, "file"))
    if path.is_dir():
        raise BadRequest("that path is a directory")
    if not path.is_file():
        raise NotFound("no such file")
    headers = {"Content-Type": "application/octet-stream"}
    return web.FileResponse(path, chunk_size=256 * 1024, headers=headers)


@routes.post("/api/servers/{id}/files/write")
async def write_file(request: web.Request) -> web.Response:
    server = server_of(request)
    path = below(server.directory, query(request, "file"))
    replaced = replaced_size(server.directory, path)
    body = await request.read()
    with server.quota.writer() as writer:
        await server.quota.reserve(writer, len(body) - replaced)
        with changing("write the file"):
            await asyncio.to_thread(store, path, body)
    return web.Response(status=204)


@routes.post("/api/servers/{id}/files/upload")
async def upload_files(request: web.Request) -> web.Response:
    server = server_of(request)
    directory = resolve(server.directory, query(request, "directory", ""))
    uploads = parse_multipart(
        request.headers.get("Content-Type", ""), await request.read()
    )
    if not uploads:
        raise BadRequest("the body holds no files")
    targets = [(below(directory, name), content) for name, content in uploads]
    replaced = {path: replaced_size(server.directory, path) for path, _ in targets}
    growth = sum(len(content) for _, content in targets) - sum(replaced.values())
    with server.quota.writer() as writer:
        await server.quota.reserve(writer, growth)
        with changing("store the upload"):
            for path, content in targets:
                await asyncio.to_thread(store, path, content)
    return web.Response(status=204)


@routes.post("/api/servers/{id}/files/create-directory")
async def create_directory(request: web.Request) -> web.Response:
    server = server_of(request)
    path = below(server.directory, string_field(await json_object(request), "path"))
    with changing("create the directory"):
        path.mkdir(parents=True, exist_ok=True)
    return web.Response(status=204)


@routes.post("/api/servers/{id}/files/rename")
async def rename(request: web.Request) -> web.Response:
    server = server_of(request)
    data = await json_object(request)
    source = entry(server.directory, string_field(data, "from"))
    target = entry(server.directory, string_field(data, "to"))
    if not os.path.lexists(source):
        raise NotFound("no such file or directory to rename")
    if os.path.lexists(target):
        raise Conflict("the new name is taken")
    with changing("rename"):
        await asyncio.to_thread(check_move, server.directory, source, target)
        target.parent.mkdir(parents=True, exist_ok=True)
        source.rename(target)
    return web.Response(status=204)


@routes.post("/api/servers/{id}/files/delete")
async def delete_files(request: web.Request) -> web.Response:
    server = server_of(request)
    paths = (await json_object(request)).get("paths")
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise BadRequest("paths must be a list of strings")
    targets = [entry(server.directory, path) for path in paths]
    for path, target in zip(paths, targets, strict=True):
        if not os.path.lexists(target):
            raise NotFound(f"no such file or directory: {path!r}")
    with changing("delete"):
        for target in targets:
            if target.is_dir() and not target.is_symlink():
                await asyncio.to_thread(shutil.rmtree, target)
            elif os.path.lexists(target):
                target.unlink()
    return web.Response(status=204)


def parse_multipart(content_type: str, body: bytes) -> list[tuple[str, bytes]]:
    """(file name, content) of every file in a multipart/form-data body."""
    header = Message()
    header["Content-Type"] = content_type
    boundary = header.get_param("boundary")
    if header.get_content_type() != "multipart/form-data" or not isinstance(
        boundary, str
    ):
        raise BadRequest("the body must be multipart/form-data with a boundary")
    files = []
    # Every part follows a CRLF, "--" and the boundary; the first CRLF is optional.
    for part in (b"\r\n" + body).split(b"\r\n--" + boundary.encode())[1:]:
        if part.startswith(b"--"):
            break
        head, separator, content = part.partition(b"\r\n\r\n")
        if not separator:
            raise BadRequest("a part of the multipart body has no headers")
        name = part_filename(head)
        if name is not None:
            files.append((name, content))
    return files


# Browsers and httpx write these three characters of a file name percent-encoded
# (the HTML standard's multipart/form-data encoding); every other byte is as is.
FILENAME_ESCAPES = {"%22": '"', "%0D": "\r", "%0A": "\n"}


def part_filename(head: bytes) -> str | None:
    disposition = Message()
    for line in head.decode("utf-8", "replace").split("\r\n"):
        key, _, value = line.partition(":")
        if key.strip().lower() == "content-disposition":
            disposition["Content-Disposition"] = value.strip()
    name = disposition.get_filename()
    if name is None:
        return None
    for escaped, character in FILENAME_ESCAPES.items():
        name = name.replace(escaped, character).replace(escaped.lower(), character)
    return name
