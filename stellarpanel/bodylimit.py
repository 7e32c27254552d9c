"""Request bodies the panel refuses while Daphne is still receiving them.

Daphne (Twisted, underneath) receives a request's whole body, into memory or a
temporary file, before it starts the ASGI application, and Django's handler then
copies it into a file of its own. No ASGI middleware sees a request before its body
is stored, so the limits are kept where Daphne has a request's headers and none of
its body yet:

- an upload to a server's files over its node's upload limit: 413, the limit looked
  up while the connection waits, unread, for a signed-in user who may see the
  server (to anyone else the server is unknown, and its body held to the next
  limit);
- any other body over DATA_UPLOAD_MAX_MEMORY_SIZE (and room for a form's multipart
  framing): 413;
- a body of unknown length (chunked): 411.

The answer is JSON ({"message"}) for a client that accepts it, as the file manager's
script does, else a short page. What a refused client goes on sending is read and
dropped, for LINGER_SECONDS at most, so that it can read the answer before the
connection closes.

NB: this relies on Daphne building each request from its module's WebRequest, on
Twisted calling gotLength once the headers are in, and on Twisted keeping the
request line in the channel until the body is in; tests/stellarpanel/test_asgi.py
checks all three under Daphne. The panel is assumed to be served at the root of its
host (no --root-path).
"""

import asyncio
import html
import io
import json
import logging
from contextlib import suppress
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from importlib import import_module
from types import SimpleNamespace
from urllib.parse import unquote

from channels.db import database_sync_to_async
from daphne import http_protocol
from django.conf import settings
from django.contrib.auth import get_user
from django.template.defaultfilters import filesizeformat
from django.urls import Resolver404, resolve
from twisted.web.http_headers import Headers

from nodes.models import Node
from servers.files import MIB, over_upload_limit
from servers.models import visible_to

logger = logging.getLogger(__name__)

LINGER_SECONDS = 5.0
SMALLEST_UPLOAD_LIMIT = MIB  # nodes.models: no node's upload limit is below 1 MB
FORM_FRAMING = 64 * 1024  # multipart boundaries and part headers around the fields
PAGE = (
    "<!doctype html><html lang=en><meta charset=utf-8><title>{title}</title>"
    "<h1>{title}</h1><p>{message}</p>"
)


def install() -> None:
    """Have Daphne receive every HTTP request as a LimitedRequest."""
    http_protocol.WebRequest = LimitedRequest


class LimitedRequest(http_protocol.WebRequest):
    line = ""  # the request line, for the log
    refused = False
    checking: asyncio.Task | None = None  # the look-up of a server's upload limit

    def gotLength(self, length: int | None) -> None:
        method = getattr(self.channel, "_command", b"")
        target = getattr(self.channel, "_path", b"")
        self.line = (method + b" " + target[:200]).decode("ascii", "replace")
        server = _uploads_to(method, target)
        limit = _body_limit()
        if length is None:
            self.refuse(411, "Send the body with its size (a Content-Length header).")
        elif server is None and limit is not None and length > limit:
            self.refuse(413, _over_body_limit(length, limit))
        else:
            super().gotLength(length)
            if server is not None and length > SMALLEST_UPLOAD_LIMIT:
                self.channel.transport.pauseProducing()
                checking = self.check_upload(server, length)
                self.checking = asyncio.get_running_loop().create_task(checking)

    async def check_upload(self, server: str, length: int) -> None:
        """Refuse the upload, or read on, once the server's upload limit is known."""
        cookies = self.requestHeaders.getRawHeaders(b"cookie") or []
        try:
            node = await _node_of(server, _session_key(cookies))
        except Exception:
            logger.exception("the upload limit of server %s could not be read", server)
            refusal = (503, "The panel could not check the upload's size; try again.")
        else:
            refusal = _upload_refusal(node, length)
        if self._disconnected:
            return
        if refusal is None:
            self.channel.transport.resumeProducing()
        else:
            self.refuse(*refusal)

    def refuse(self, status: int, message: str) -> None:
        """Answer now, then drop the body until it ends or LINGER_SECONDS pass."""
        logger.info("refused the body of %s: %s", self.line, message)
        self.refused = True
        if self.content is not None:
            self.content.close()
        self.content = io.BytesIO()
        self.requestHeaders.removeHeader(b"Expect")  # no 100 Continue after this
        channel = self.channel
        channel.persistent = False
        channel.transport.write(_answer(status, message, self.requestHeaders))
        channel.transport.resumeProducing()
        asyncio.get_running_loop().call_later(LINGER_SECONDS, channel.loseConnection)

    def handleContentChunk(self, data: bytes) -> None:
        if not self.refused:
            super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self.refused:
            self.channel.loseConnection()
        else:
            super().requestReceived(command, path, version)


def _uploads_to(method: bytes, target: bytes) -> str | None:
    """The public ID of the server a request uploads files to, if it does."""
    if method != b"POST":
        return None
    path = unquote(target.partition(b"?")[0].decode("ascii", "replace"))
    try:
        match = resolve(path)
    except Resolver404:
        return None
    if match.view_name != "servers:files_upload":
        return None
    return match.kwargs["public_id"]


def _body_limit() -> int | None:
    fields = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return None if fields is None else fields + FORM_FRAMING


def _session_key(cookies: list[bytes]) -> str | None:
    jar = SimpleCookie()
    for header in cookies:
        with suppress(CookieError):
            jar.load(header.decode("latin-1"))
    morsel = jar.get(settings.SESSION_COOKIE_NAME)
    return morsel.value if morsel else None


@database_sync_to_async
def _node_of(server: str, session_key: str | None) -> Node | None:
    """The server's node, if the session's user may see the server."""
    if session_key is None:
        return None
    store = import_module(settings.SESSION_ENGINE).SessionStore
    user = get_user(SimpleNamespace(session=store(session_key)))
    servers = visible_to(user.pk).filter(public_id=server)
    nodes = Node.objects.filter(servers__in=servers)
    return nodes.only("name", "upload_limit_mb").first()


def _upload_refusal(node: Node | None, length: int) -> tuple[int, str] | None:
    if node is not None:
        if length > node.upload_limit_bytes:
            return 413, over_upload_limit(node, length)
        return None
    # No such server, or not this user's: the view answers 404 or sends to the
    # login page, and the body is no upload.
    limit = _body_limit()
    if limit is not None and length > limit:
        return 413, _over_body_limit(length, limit)
    return None


def _over_body_limit(length: int, limit: int) -> str:
    return (
        f"The request's body of {filesizeformat(length)} is over the panel's limit "
        f"of {filesizeformat(limit)}."
    )


def _answer(status: int, message: str, headers: Headers) -> bytes:
    """A whole HTTP/1.1 answer that closes the connection."""
    title = HTTPStatus(status).phrase
    accept = (headers.getRawHeaders(b"accept") or [b""])[0]
    if accept.startswith(b"application/json"):
        kind = "application/json"
        body = json.dumps({"message": message}).encode()
    else:
        kind = "text/html; charset=utf-8"
        body = PAGE.format(title=title, message=html.escape(message)).encode()
    head = (
        f"HTTP/1.1 {status} {title}\r\nContent-Type: {kind}\r\n"
        f"Content-Length: {len(body)}\r\nX-Content-Type-Options: nosniff\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body
