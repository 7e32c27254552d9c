"""The remote API: what the daemons ask of the panel (docs/PROTOCOL.md).

Every request is signed with its node's token (nodes.signing), and may name only
that node's servers: another node's server is answered exactly like an unknown one.
Every answer is JSON, errors included.
"""

import ipaddress
import json
import logging
from collections.abc import Callable
from functools import wraps

from django.core.cache import cache
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from nodes.models import Node
from nodes.signing import SignatureRefused, verify
from servers import sftp
from servers.models import Server

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024

RemoteView = Callable[..., HttpResponse]


class _Refusal(Exception):
    """An error answer, raised from the helpers of a view."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": code, "message": message}, status=status)


def remote_view(method: str) -> Callable[[RemoteView], RemoteView]:
    """Answer only `method`, signed by a node; the view gets that node."""

    def decorate(view: RemoteView) -> RemoteView:
        @csrf_exempt
        @wraps(view)
        def answer(request: HttpRequest, **kwargs: str) -> HttpResponse:
            if request.method != method:
                response = _error(405, "bad_request", f"Use {method} for this route.")
                response["Allow"] = method
                return response
            try:
                node = _signer(request, _body(request))
                return view(request, node, **kwargs)
            except _Refusal as refusal:
                return _error(refusal.status, refusal.code, refusal.message)
            except Exception:
                logger.exception("remote API request %s failed", request.path)
                return _error(
                    500, "internal", "The panel failed to handle the request."
                )

        return answer

    return decorate


@remote_view("GET")
def servers(request: HttpRequest, node: Node) -> HttpResponse:
    servers = node.servers.prefetch_related("allocations").order_by("pk")
    return JsonResponse({"servers": [server.daemon_config() for server in servers]})


@remote_view("POST")
def server_status(request: HttpRequest, node: Node, server_id: str) -> HttpResponse:
    state = _payload(request).get("state")
    if state not in Server.Status.values:
        raise _Refusal(
            400,
            "bad_request",
            f"The state must be one of {', '.join(Server.Status.values)}.",
        )
    _set_status(node, server_id, state)
    return HttpResponse(status=204)


@remote_view("POST")
def server_install(request: HttpRequest, node: Node, server_id: str) -> HttpResponse:
    successful = _payload(request).get("successful")
    if not isinstance(successful, bool):
        raise _Refusal(
            400, "bad_request", "The field successful must be true or false."
        )
    status = Server.Status.OFFLINE if successful else Server.Status.INSTALL_FAILED
    _set_status(node, server_id, status)
    return HttpResponse(status=204)


@remote_view("POST")
def sftp_auth(request: HttpRequest, node: Node) -> HttpResponse:
    payload = _payload(request)
    username = _text(payload, "username", sftp.MAX_USERNAME_LENGTH)
    password = _text(payload, "password", sftp.MAX_PASSWORD_LENGTH)
    ip = _text(payload, "ip", 45)
    try:
        ip = str(ipaddress.ip_address(ip))
    except ValueError:
        raise _Refusal(
            400, "bad_request", "The field ip must be an IPv4 or IPv6 address."
        ) from None
    try:
        grant = sftp.log_in(node, username, password, ip)
    except sftp.Refused as refused:
        raise _Refusal(403, "forbidden", refused.message) from None
    return JsonResponse(grant.answer())


@csrf_exempt
def unknown_route(request: HttpRequest) -> HttpResponse:
    return _error(404, "not_found", "The remote API has no such route.")


def _body(request: HttpRequest) -> bytes:
    # NB: the ASGI handler has read the body before the view runs; the limit
    # keeps the panel from parsing, hashing or storing more than a daemon sends.
    too_large = _Refusal(
        413, "too_large", f"The body is larger than {MAX_BODY_BYTES // 1024} KiB."
    )
    length = request.META.get("CONTENT_LENGTH") or "0"
    if not length.isdigit():
        raise _Refusal(400, "bad_request", "Content-Length is not a number.")
    if int(length) > MAX_BODY_BYTES:
        raise too_large
    try:
        body = request.body
    except RequestDataTooBig:
        raise too_large from None
    if len(body) > MAX_BODY_BYTES:
        raise too_large
    return body


def _signer(request: HttpRequest, body: bytes) -> Node:
    """The node whose token signed the request."""
    found: dict[str, Node] = {}

    def token(token_id: str) -> str | None:
        node = Node.objects.filter(token_id=token_id).first()
        if node is None:
            return None
        found[token_id] = node
        return node.daemon_token()

    try:
        token_id = verify(
            request.headers,
            request.method or "",
            _target(request),
            body,
            tokens=token,
            nonces=cache,
        )
    except SignatureRefused as e:
        raise _Refusal(401, "unauthorized", str(e)) from None
    return found[token_id]


def _target(request: HttpRequest) -> str:
    """The path and query exactly as the daemon sent and signed them.

    Under ASGI that is the scope's raw_path and query_string; get_full_path()
    rebuilds the path from its decoded form, which can differ in its escapes.
    """
    scope = getattr(request, "scope", None) or {}
    raw_path = scope.get("raw_path")
    if not raw_path:
        return request.get_full_path()
    target = raw_path.decode("latin-1")
    query = scope.get("query_string") or b""
    return f"{target}?{query.decode('latin-1')}" if query else target


def _payload(request: HttpRequest) -> dict:
    try:
        payload = json.loads(request.body)
    except (ValueError, RecursionError):
        raise _Refusal(400, "bad_request", "The body is not valid JSON.") from None
    if not isinstance(payload, dict):
        raise _Refusal(400, "bad_request", "The body must be a JSON object.")
    return payload


def _text(payload: dict, field: str, longest: int) -> str:
    value = payload.get(field)
    if not isinstance(value, str) or not value:
        raise _Refusal(400, "bad_request", f"The field {field} must be a text.")
    if len(value) > longest:
        message = f"The field {field} is longer than {longest} characters."
        raise _Refusal(400, "bad_request", message)
    return value


def _set_status(node: Node, server_id: str, status: str) -> None:
    updated = Server.objects.filter(public_id=server_id, node=node).update(
        status=status
    )
    if not updated:
        raise _Refusal(404, "not_found", f"This node has no server {server_id}.")
