"""The file manager of a server: its owner and admins browse and change its files.

Every path goes to the daemon as given, and the daemon keeps it inside the server's
directory; the panel refuses the obviously bad ones first, to say which field is
wrong.
"""

from contextlib import aclosing
from datetime import datetime
from pathlib import PurePosixPath
from urllib.parse import urlencode

from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    JsonResponse,
    QueryDict,
    StreamingHttpResponse,
)
from django.shortcuts import render
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils.http import content_disposition_header
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_POST

from nodes.daemon import Daemon, DaemonError, stream_file
from nodes.models import Node
from servers.models import Server
from servers.views import server_for

MIB = 1024 * 1024
EDITOR_LIMIT = MIB
EDITOR_LIMIT_TEXT = "1 MiB"
REFUSING = ("bad_request", "forbidden", "not_found", "conflict", "too_large")


class Refusal(Exception):
    """A request the panel will not pass on; the message says why and what to do."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def _trouble(server: Server, error: Exception) -> str:
    if isinstance(error, Refusal):
        return error.message
    assert isinstance(error, DaemonError)
    node = server.node.name
    if error.category in REFUSING:
        return f"The daemon on node {node} refused: {error.message}"
    return f"The daemon on node {node} could not be reached: {error.message}"


def _checked(field: str, value: str, *, required: bool = True) -> str:
    """The path as given, unless it is plainly outside the server's directory."""
    if required and not value.strip("/"):
        raise Refusal(f"{field}: give a path inside the server's directory.")
    if "\0" in value:
        raise Refusal(f"{field}: {value!r} holds a NUL character; remove it.")
    if value.startswith("/"):
        raise Refusal(
            f"{field}: {value!r} is absolute; give a path relative to the server's "
            "directory, without the leading /."
        )
    if ".." in value.split("/"):
        raise Refusal(
            f"{field}: {value!r} climbs out with '..'; give a path inside the "
            "server's directory."
        )
    return value


def _join(directory: str, name: str) -> str:
    directory = directory.strip("/")
    return f"{directory}/{name}" if directory else name


def _parent(path: str) -> str:
    parent = str(PurePosixPath(path).parent)
    return "" if parent == "." else parent


def _browse_url(server: Server, directory: str) -> str:
    url = reverse("servers:files", args=[server.public_id])
    return f"{url}?{urlencode({'directory': directory})}" if directory else url


def _crumbs(directory: str) -> list[tuple[str, str]]:
    """(name, path) of every folder from the server's directory down."""
    parts = [part for part in directory.split("/") if part]
    return [(part, "/".join(parts[: i + 1])) for i, part in enumerate(parts)]


def _entry(directory: str, data: dict) -> dict:
    try:
        modified = datetime.fromisoformat(str(data.get("modified")))
    except ValueError:
        modified = None
    if data.get("is_directory"):
        kind = "Folder"
    elif data.get("is_symlink"):
        kind = "Link"
    else:
        kind = str(data.get("mime_type") or "File")
    return data | {
        "path": _join(directory, data["name"]),
        "modified": modified,
        "kind": kind,
    }


def _find(server: Server, path: str) -> dict | None:
    """The daemon's entry for a path, from a listing of its folder."""
    name = PurePosixPath(path).name
    entries = Daemon(server.node).list_files(server.public_id, _parent(path))
    return next((e for e in entries if e["name"] == name), None)


def _exists(server: Server, path: str) -> bool:
    try:
        return _find(server, path) is not None
    except DaemonError as e:
        if e.category == "not_found":  # its folder does not exist yet
            return False
        raise


def _disk_free(server: Server) -> int:
    """Bytes the server may still store: its disk limit less what it uses."""
    resources = Daemon(server.node).server(server.public_id).get("resources") or {}
    used = resources.get("disk_bytes")
    if isinstance(used, bool) or not isinstance(used, int):
        raise DaemonError(
            "bad_answer", "The daemon did not say how much disk the server uses."
        )
    return max(server.disk_mb * MIB - used, 0)


@login_required
@require_GET
def browse(request: HttpRequest, public_id: str) -> HttpResponse:
    server = server_for(request, public_id)
    directory = request.GET.get("directory", "")
    ctx: dict = {
        "server": server,
        "directory": directory,
        "crumbs": _crumbs(directory),
        "upload_limit": server.node.upload_limit_bytes,
        "max_files": settings.DATA_UPLOAD_MAX_NUMBER_FILES,
        "swap": True,
    }
    try:
        _checked("directory", directory, required=False)
        entries = Daemon(server.node).list_files(server.public_id, directory)
        ctx["entries"] = [_entry(directory, e) for e in entries]
        ctx["disk_free"] = _disk_free(server)
    except (Refusal, DaemonError) as e:
        ctx["trouble"] = _trouble(server, e)
    template = "servers/files.html"
    return render(request, template + "#manager" if request.htmx else template, ctx)


@login_required
def edit(request: HttpRequest, public_id: str) -> HttpResponse:
    """Open a text file in the editor (GET) or save it (POST)."""
    server = server_for(request, public_id)
    data = request.POST if request.method == "POST" else request.GET
    file = data.get("file", "")
    ctx: dict = {"server": server, "file": file, "directory": _parent(file)}
    ctx |= {"crumbs": _crumbs(ctx["directory"]), "leaf": PurePosixPath(file).name}
    try:
        _checked("file", file)
        if request.method == "POST":
            return _save(request, server, file)
        ctx |= _open(server, file)
    except (Refusal, DaemonError) as e:
        ctx["trouble"] = _trouble(server, e)
        if request.method == "POST":
            ctx |= {"content": data.get("content", ""), "newline": _newline(data)}
    return render(request, "servers/files_edit.html", ctx)


def _open(server: Server, file: str) -> dict:
    found = _find(server, file)
    if found is None:
        raise Refusal(f"file: there is no {file!r}; pick a file from the list.")
    if found.get("is_directory"):
        raise Refusal(f"file: {file!r} is a folder; open it from the list instead.")
    # A link's size is its own, not its target's; the read finds that out.
    size = found.get("size")
    if not found.get("is_symlink") and isinstance(size, int) and size > EDITOR_LIMIT:
        raise Refusal(_too_big(file, filesizeformat(size)))
    read = async_to_sync(_head)
    content = read(server.node, server.public_id, file, EDITOR_LIMIT + 1)
    if len(content) > EDITOR_LIMIT:
        raise Refusal(_too_big(file, f"more than {EDITOR_LIMIT_TEXT}"))
    try:
        text = content.decode()
    except UnicodeDecodeError:
        text = None
    if text is None or "\0" in text:
        raise Refusal(
            f"{file} is a binary file, not UTF-8 text; the editor opens text only. "
            "Download it instead."
        )
    return {"content": text, "newline": "crlf" if "\r\n" in text else "lf"}


async def _head(node: Node, server_id: str, file: str, most: int) -> bytes:
    """The first `most` bytes of a file, or all of it if shorter."""
    content = bytearray()
    async with aclosing(stream_file(node, server_id, file)) as chunks:
        async for chunk in chunks:
            content += chunk
            if len(content) >= most:
                break
    return bytes(content[:most])


def _too_big(file: str, size: str) -> str:
    return (
        f"{file} is {size}; the editor opens files up to {EDITOR_LIMIT_TEXT}. "
        "Download it instead."
    )


def _newline(data: QueryDict) -> str:
    return "crlf" if data.get("newline") == "crlf" else "lf"


def _save(request: HttpRequest, server: Server, file: str) -> HttpResponse:
    # Browsers send a textarea's lines with CRLF; keep the file's own line ends.
    content = request.POST.get("content", "").replace("\r\n", "\n")
    if _newline(request.POST) == "crlf":
        content = content.replace("\n", "\r\n")
    body = content.encode()
    if len(body) > EDITOR_LIMIT:
        raise Refusal(
            f"content: {filesizeformat(len(body))} is over the editor's "
            f"{EDITOR_LIMIT_TEXT}; make it shorter, or upload the file instead."
        )
    Daemon(server.node).write_file(server.public_id, file, body)
    messages.success(request, f"Saved {file}.")
    url = reverse("servers:files_edit", args=[server.public_id])
    return HttpResponseRedirect(f"{url}?{urlencode({'file': file})}")


@login_required
@require_POST
def create(request: HttpRequest, public_id: str) -> HttpResponse:
    """A new empty file (opened in the editor) or a new folder."""
    server = server_for(request, public_id)
    directory = request.POST.get("directory", "")
    folder = request.POST.get("kind") == "folder"
    try:
        _checked("directory", directory, required=False)
        name = _checked("name", request.POST.get("name", "").strip())
        path = _join(directory, name)
        daemon = Daemon(server.node)
        if folder:
            daemon.create_directory(server.public_id, path)
            messages.success(request, f"Created the folder {path}.")
            return HttpResponseRedirect(_browse_url(server, path))
        if _exists(server, path):
            raise Refusal(f"name: {path} already exists; choose another name.")
        daemon.write_file(server.public_id, path, b"")  # its folders too
    except (Refusal, DaemonError) as e:
        messages.error(request, _trouble(server, e))
        return HttpResponseRedirect(_browse_url(server, directory))
    messages.success(request, f"Created {path}.")
    url = reverse("servers:files_edit", args=[server.public_id])
    return HttpResponseRedirect(f"{url}?{urlencode({'file': path})}")


@login_required
def rename(request: HttpRequest, public_id: str) -> HttpResponse:
    """Rename or move a file or folder: its new path is relative to the server."""
    server = server_for(request, public_id)
    data = request.POST if request.method == "POST" else request.GET
    source = data.get("from", "")
    target = data.get("to", source)
    ctx: dict = {"server": server, "source": source, "target": target}
    ctx["directory"] = _parent(source)
    ctx |= {"crumbs": _crumbs(ctx["directory"]), "leaf": PurePosixPath(source).name}
    try:
        _checked("from", source)
        if request.method == "POST":
            _checked("to", target)
            Daemon(server.node).rename_file(server.public_id, source, target)
            messages.success(request, f"Renamed {source} to {target}.")
            return HttpResponseRedirect(_browse_url(server, _parent(target)))
    except (Refusal, DaemonError) as e:
        ctx["trouble"] = _trouble(server, e)
    return render(request, "servers/files_rename.html", ctx)


@login_required
@require_POST
def delete(request: HttpRequest, public_id: str) -> HttpResponse:
    """Delete the chosen files and folders, once the user has confirmed."""
    server = server_for(request, public_id)
    directory = request.POST.get("directory", "")
    paths = request.POST.getlist("paths")
    try:
        _checked("directory", directory, required=False)
        for path in paths:
            _checked("paths", path)
        if not paths:
            raise Refusal("paths: tick at least one file or folder to delete.")
        if not request.POST.get("confirm"):
            ctx = {"server": server, "directory": directory, "paths": paths}
            ctx["crumbs"] = _crumbs(directory)
            return render(request, "servers/files_delete.html", ctx)
        Daemon(server.node).delete_files(server.public_id, paths)
    except (Refusal, DaemonError) as e:
        messages.error(request, _trouble(server, e))
    else:
        count = f"{len(paths)} items" if len(paths) > 1 else paths[0]
        messages.success(request, f"Deleted {count}.")
    return HttpResponseRedirect(_browse_url(server, directory))


@login_required
@require_GET
def download(request: HttpRequest, public_id: str) -> HttpResponse:
    """The file, streamed from the daemon through the panel as an attachment."""
    server = server_for(request, public_id)
    file = request.GET.get("file", "")
    try:
        _checked("file", file)
        Daemon(server.node).check_file(server.public_id, file)
    except (Refusal, DaemonError) as e:
        messages.error(request, _trouble(server, e))
        return HttpResponseRedirect(_browse_url(server, _parent(file)))
    response = StreamingHttpResponse(
        stream_file(server.node, server.public_id, file),
        content_type="application/octet-stream",
    )
    # NB: the check above and the stream are two requests; a file removed in
    # between ends the download early, as a broken one.
    name = PurePosixPath(file).name
    response["Content-Disposition"] = content_disposition_header(True, name)
    response["X-Content-Type-Options"] = "nosniff"
    return response


# The body is not read here until its size is known to fit: the CSRF check, which
# reads it, runs after (in _store).
@csrf_exempt
@login_required
@require_POST
def upload(request: HttpRequest, public_id: str) -> HttpResponse:
    """Files from the browser, relayed to the daemon in one multipart body.

    Under Daphne, a body over the node's upload limit is refused before it is
    received (stellarpanel.bodylimit). NB: what fits that limit is received whole
    (in memory, or a temporary file past FILE_UPLOAD_MAX_MEMORY_SIZE) before any
    view runs; what this refuses for want of disk is never parsed, nor sent to
    the daemon.
    """
    server = server_for(request, public_id)
    directory = request.GET.get("directory", "")
    try:
        _checked("directory", directory, required=False)
        _check_room(request, server)
    except (Refusal, DaemonError) as e:
        return _uploaded(request, server, directory, e)
    return _store(request, server, directory)


def _check_room(request: HttpRequest, server: Server) -> None:
    try:
        length = int(request.META.get("CONTENT_LENGTH") or "")
    except ValueError:
        raise Refusal(
            "files: the upload came without its size (Content-Length); send it "
            "from the file manager's form.",
            411,
        ) from None
    if length > server.node.upload_limit_bytes:
        raise Refusal(over_upload_limit(server.node, length), 413)
    free = _disk_free(server)
    if length > free:
        raise Refusal(
            f"files: {filesizeformat(length)} do not fit in the {filesizeformat(free)}"
            f" left of {server.name}'s {server.disk_mb} MB disk; delete some files "
            "first.",
            413,
        )


def over_upload_limit(node: Node, length: int) -> str:
    """Why an upload of `length` bytes is refused on the node, for the user."""
    return (
        f"files: {filesizeformat(length)} is over node {node.name}'s upload limit "
        f"of {node.upload_limit_mb} MB; upload fewer or smaller files at a time."
    )


@csrf_protect
def _store(request: HttpRequest, server: Server, directory: str) -> HttpResponse:
    files = request.FILES.getlist("files")
    try:
        if not files:
            raise Refusal("files: choose one or more files to upload.")
        uploads = [(_checked("files", f.name or ""), f) for f in files]
        Daemon(server.node).upload_files(server.public_id, directory, uploads)
    except (Refusal, DaemonError) as e:
        return _uploaded(request, server, directory, e)
    names = ", ".join(name for name, _ in uploads)
    return _uploaded(request, server, directory, f"Uploaded {names}.")


def _uploaded(
    request: HttpRequest, server: Server, directory: str, outcome: Exception | str
) -> HttpResponse:
    """The answer to an upload: JSON for the page's script, else back to the list."""
    location = _browse_url(server, directory)
    failed = isinstance(outcome, Exception)
    message = _trouble(server, outcome) if failed else outcome
    if request.headers.get("Accept", "").startswith("application/json"):
        if failed:
            status = 502  # the daemon could not be reached, or answered wrongly
            if isinstance(outcome, Refusal):
                status = outcome.status
            elif isinstance(outcome, DaemonError) and outcome.category in REFUSING:
                status = outcome.status or 400
            return JsonResponse({"message": message}, status=status)
        messages.success(request, message)
        return JsonResponse({"message": message, "location": location})
    (messages.error if failed else messages.success)(request, message)
    return HttpResponseRedirect(location)
