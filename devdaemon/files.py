"""The file routes of a server: every path is relative to the server's directory.

A path is refused (403) when it is absolute, has a `..` part, or leads outside the
directory once symlinks are followed.

NB: a path is checked, then used. A server process that swaps a directory for a
symlink in between can still lead a request outside; a hardened daemon would open
every part with O_NOFOLLOW, or use openat2's RESOLVE_BENEATH.
"""

import asyncio
import mimetypes
import os
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email.message import Message
from pathlib import Path, PurePosixPath
from typing import Any

from aiohttp import web

from devdaemon.daemon import server_of
from devdaemon.errors import BadRequest, Conflict, Forbidden, NotFound, TooLarge
from devdaemon.servers import Server
from devdaemon.stats import directory_size

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
    entries = [describe(path) for path in directory.iterdir()]
    return sorted(entries, key=lambda entry: (not entry["is_directory"], entry["name"]))


async def disk_room(server: Server) -> int:
    """Bytes the server may still add: below its disk limit, and on the disk."""
    used = await asyncio.to_thread(directory_size, server.directory)
    room = server.config.limits.disk_bytes - used
    return min(room, shutil.disk_usage(server.directory).free)


async def check_room(server: Server, incoming: int, replaced: int = 0) -> None:
    """TooLarge unless `incoming` bytes fit in the server's disk limit and the disk."""
    room = await disk_room(server) + replaced
    if incoming > room:
        raise TooLarge(
            f"{incoming} bytes do not fit: the server has {max(room, 0)} bytes of "
            "disk left"
        )


@contextmanager
def changing(what: str) -> Iterator[None]:
    """The OS errors of a change as the protocol's answers, not as 500s."""
    try:
        yield
    except FileNotFoundError:
        raise NotFound(f"cannot {what}: part of the path does not exist") from None
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
    return web.json_response(await asyncio.to_thread(list_directory, directory))


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
    if path.is_dir():
        raise Conflict("that path is a directory")
    body = await request.read()
    old_size = path.stat().st_size if path.is_file() else 0
    await check_room(server, len(body), replaced=old_size)
    with changing("write the file"):
        path.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(path.write_bytes, body)
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
    await check_room(server, sum(len(content) for _, content in uploads))
    with changing("store the upload"):
        for path, content in targets:
            path.parent.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(path.write_bytes, content)
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
