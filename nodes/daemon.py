"""The panel's client for the daemons: every call to a daemon goes through here.

Each request is signed with the node's token (nodes.signing), goes to an address
that passed the SSRF policy (nodes.hosts) at that moment, verifies TLS against the
node's host name rather than the address, never follows a redirect, and has explicit
timeouts and a cap on the size of the answer.

Callers see one exception, never a transport one:

    DaemonError
        .category  what went wrong, one of
            policy        the node's host, or an address it resolves to, is refused
                          by the SSRF policy (see DAEMON_ALLOWED_NETWORKS)
            dns           the node's host does not resolve
            refused       nothing accepts connections there, or the connection broke
            timeout       no connection, or no answer, in time
            tls           the TLS handshake failed or the certificate is not trusted
            unauthorized  401: the daemon refused the signature (wrong token, clock
                          skew), or the panel cannot decrypt the node's token
            bad_answer    not JSON, the wrong shape, a redirect, a 5xx or another
                          status the protocol does not use
            bad_request   400 \
            forbidden     403  |
            not_found     404  | the daemon's own error answers, with its message
            conflict      409  |
            too_large     413 /
        .message   a sentence for an admin; never the token
        .status    the HTTP status of the answer, None when there was no answer
"""

import asyncio
import ipaddress
import json as jsonlib
import math
import socket
import ssl
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import IO, Any
from urllib.parse import quote

import httpx
from django.conf import settings

from nodes.credentials import CredentialsUnreadable
from nodes.hosts import HostRefused, IPAddress, check_host
from nodes.models import Node
from nodes.signing import sign

__all__ = [
    "CATEGORIES",
    "Daemon",
    "DaemonError",
    "Ping",
    "async_client",
    "ping",
    "stream_file",
    "websocket_target",
]

CATEGORIES = (
    "policy",
    "dns",
    "refused",
    "timeout",
    "tls",
    "unauthorized",
    "bad_answer",
    "bad_request",
    "forbidden",
    "not_found",
    "conflict",
    "too_large",
)
ERROR_STATUSES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    413: "too_large",
}
TIMEOUT = httpx.Timeout(connect=5.0, read=30.0, write=30.0, pool=5.0)
# A sweep pings each node once, and sweeps are further apart than keep-alive
# lasts; a fresh connection for each request also means that two nodes behind
# one address never share a TLS connection verified for the other's name.
LIMITS = {"max_connections": 100, "max_keepalive_connections": 0}
MAX_ANSWER_BYTES = 8 * 1024 * 1024
MAX_MESSAGE_CHARACTERS = 500
POWER_ACTIONS = ("start", "stop", "restart", "kill")
# Dropped when an answer is rebuilt from the bytes already read and decoded.
ENCODING_HEADERS = ("content-encoding", "content-length", "transfer-encoding")


class DaemonError(Exception):
    """A call to a daemon failed; `category` says how (see the module docstring)."""

    def __init__(self, category: str, message: str, status: int | None = None) -> None:
        if category not in CATEGORIES:
            raise ValueError(f"{category!r} is not a daemon error category.")
        super().__init__(message)
        self.category = category
        self.message = message
        self.status = status

    def __repr__(self) -> str:
        return f"DaemonError({self.category!r}, {self.message!r}, {self.status!r})"


@dataclass(frozen=True)
class Ping:
    """A daemon's answer to the heartbeat."""

    system: dict
    latency_ms: float
    clock_offset_s: float  # the daemon's clock minus the panel's


@dataclass(frozen=True)
class _Endpoint:
    """Where a request goes: the checked address, and the name it is meant for."""

    secure: bool
    authority: str  # the checked address and the port, as the URL holds them
    host: str  # the Host header: the node's host name and port
    sni: str | None  # the name TLS sends and verifies, for https
    where: str  # the daemon, for sentences

    @property
    def base_url(self) -> str:
        return f"{'https' if self.secure else 'http'}://{self.authority}"


class Daemon:
    """The daemon of one node, for views. Each method is one signed request."""

    def __init__(
        self,
        node: Node,
        *,
        timeout: float | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.node = node
        self.timeout = TIMEOUT if timeout is None else httpx.Timeout(timeout)
        self._transport = transport  # only tests give one

    def system(self) -> dict:
        return _system(self.request("GET", "/api/system"), _where(self.node))

    def create_server(self, config: dict) -> dict:
        return self._server_answer("POST", "/api/servers", json=config)

    def server(self, server_id: str) -> dict:
        return self._server_answer("GET", _server_path(server_id))

    def install(self, server_id: str) -> None:
        self.request("POST", _server_path(server_id, "/install"))

    def power(self, server_id: str, action: str) -> None:
        if action not in POWER_ACTIONS:
            raise ValueError(f"{action!r} is not a power action.")
        self.request("POST", _server_path(server_id, "/power"), json={"action": action})

    def sync(self, server_id: str, config: dict) -> dict:
        return self._server_answer(
            "POST", _server_path(server_id, "/sync"), json=config
        )

    def delete_server(self, server_id: str) -> None:
        self.request("DELETE", _server_path(server_id))

    def list_files(self, server_id: str, directory: str) -> list[dict]:
        response = self.request(
            "GET", _files_path(server_id, "list"), params={"directory": directory}
        )
        return _entries(response, _where(self.node))

    def write_file(self, server_id: str, file: str, content: bytes) -> None:
        path = _files_path(server_id, "write")
        self.request("POST", path, content=content, params={"file": file})

    def upload_files(
        self, server_id: str, directory: str, files: Sequence[tuple[str, IO[bytes]]]
    ) -> None:
        """Send (name, file) pairs as one multipart body to the directory.

        NB: the body is built in memory, whole, to be signed; the node's upload
        limit bounds it.
        """
        parts = [
            ("files", (name, file, "application/octet-stream")) for name, file in files
        ]
        path = _files_path(server_id, "upload")
        self.request("POST", path, params={"directory": directory}, files=parts)

    def create_directory(self, server_id: str, path: str) -> None:
        self.request(
            "POST", _files_path(server_id, "create-directory"), json={"path": path}
        )

    def rename_file(self, server_id: str, source: str, target: str) -> None:
        body = {"from": source, "to": target}
        self.request("POST", _files_path(server_id, "rename"), json=body)

    def delete_files(self, server_id: str, paths: list[str]) -> None:
        self.request("POST", _files_path(server_id, "delete"), json={"paths": paths})

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        params: dict[str, str] | None = None,
        files: Any = None,
    ) -> httpx.Response:
        """Send one signed request; return a 2xx answer, its body read.

        NB: the body is read whole, up to MAX_ANSWER_BYTES; stream_file streams
        a file's contents.
        """
        endpoint = _endpoint(self.node, _checked_address(self.node))
        token = _token(self.node)
        with self._client() as client:
            request = _signed_request(
                client,
                self.node,
                endpoint,
                token,
                method,
                path,
                json=json,
                content=content,
                params=params,
                files=files,
            )
            return _send(client, request, endpoint)

    def check_file(self, server_id: str, file: str) -> None:
        """Raise DaemonError unless the daemon starts sending the file.

        Only the status is read; the connection closes before the body comes.
        """
        endpoint = _endpoint(self.node, _checked_address(self.node))
        path = _files_path(server_id, "contents")
        with self._client() as client:
            request = _signed_request(
                client,
                self.node,
                endpoint,
                _token(self.node),
                "GET",
                path,
                params={"file": file},
            )
            with _transport_errors(request, endpoint):
                response = client.send(request, stream=True)
                try:
                    if 200 <= response.status_code < 300:
                        return
                    body = bytearray()
                    for chunk in response.iter_bytes():
                        body += chunk
                        _check_size(body, endpoint)
                finally:
                    response.close()
        _answer(response, bytes(body), endpoint)

    def _client(self) -> httpx.Client:
        return httpx.Client(
            verify=_tls(),
            timeout=self.timeout,
            follow_redirects=False,
            trust_env=False,
            transport=self._transport,
        )

    def _server_answer(self, method: str, path: str, json: Any = None) -> dict:
        return _server(self.request(method, path, json=json), _where(self.node))


async def ping(node: Node, client: httpx.AsyncClient, timeout: float) -> Ping:
    """Ask a node's daemon for `/api/system`, within `timeout` seconds in all.

    The clock offset compares the daemon's `time` with the panel's clock at the
    midpoint of the request.
    """
    try:
        async with asyncio.timeout(timeout):
            return await _ping(node, client, timeout)
    except TimeoutError:
        raise DaemonError(
            "timeout", f"{_where(node)} did not answer within {timeout:g} seconds."
        ) from None


async def _ping(node: Node, client: httpx.AsyncClient, timeout: float) -> Ping:
    # check_host resolves the name; a thread keeps that off the event loop.
    address = await asyncio.to_thread(_checked_address, node)
    endpoint = _endpoint(node, address)
    request = _signed_request(
        client, node, endpoint, _token(node), "GET", "/api/system", timeout=timeout
    )

    sent = time.time()
    started = time.perf_counter()
    response = await _asend(client, request, endpoint)
    latency = time.perf_counter() - started
    received = time.time()

    system = _system(response, _where(node))
    return Ping(
        system=system,
        latency_ms=latency * 1000,
        clock_offset_s=system["time"] - (sent + received) / 2,
    )


def async_client(
    limits: httpx.Limits | None = None,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    **limit_values: float | None,
) -> httpx.AsyncClient:
    """A client for `ping`, to share across a heartbeat sweep.

    Give `limits` whole, or some of httpx.Limits' values to change in LIMITS.
    """
    if limits is None:
        limits = httpx.Limits(**(LIMITS | limit_values))
    elif limit_values:
        raise TypeError("Give limits, or some of its values, not both.")
    return httpx.AsyncClient(
        verify=_tls(),
        timeout=TIMEOUT,
        limits=limits,
        follow_redirects=False,
        trust_env=False,
        transport=transport,  # only tests give one
    )


async def stream_file(node: Node, server_id: str, file: str) -> AsyncIterator[bytes]:
    """A file's bytes as the daemon sends them, for a download of any size.

    Nothing is sent until the first chunk is asked for; an error answer raises
    DaemonError then.
    """
    address = await asyncio.to_thread(_checked_address, node)
    endpoint = _endpoint(node, address)
    path = _files_path(server_id, "contents")
    async with async_client() as client:
        request = _signed_request(
            client, node, endpoint, _token(node), "GET", path, params={"file": file}
        )
        with _transport_errors(request, endpoint):
            response = await client.send(request, stream=True)
            try:
                if not 200 <= response.status_code < 300:
                    body = bytearray()
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        _check_size(body, endpoint)
                    _answer(response, bytes(body), endpoint)
                async for chunk in response.aiter_bytes():
                    yield chunk
            finally:
                await response.aclose()


def websocket_target(
    node: Node, server_id: str
) -> tuple[str, dict[str, str], str | None]:
    """The console WebSocket of a server: URL, signed upgrade headers, SNI name.

    The URL holds the checked address; the headers carry the Host of the node's
    name. It resolves the host, so async code calls it in a thread.
    """
    endpoint = _endpoint(node, _checked_address(node))
    path = _server_path(server_id, "/ws")
    url = f"{'wss' if endpoint.secure else 'ws'}://{endpoint.authority}{path}"
    headers = {"Host": endpoint.host} | sign(node.token_id, _token(node), "GET", path)
    return url, headers, endpoint.sni


# Where to connect.


def _where(node: Node) -> str:
    return f"The daemon at {node.address}:{node.port}"


def _checked_address(node: Node) -> IPAddress:
    """The first address of the node's host that the SSRF policy lets through."""
    try:
        return check_host(node.host, resolver=_resolve)[0]
    except HostRefused as e:
        raise DaemonError("policy", str(e)) from None


def _resolve(host: str) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        reason = e.strerror if isinstance(e, socket.gaierror) else str(e)
        raise DaemonError(
            "dns", f"The host {host} does not resolve: {reason}."
        ) from None
    return [info[4][0] for info in infos]


def _endpoint(node: Node, address: IPAddress) -> _Endpoint:
    secure = node.protocol != Node.Protocol.HTTP
    ip = f"[{address}]" if address.version == 6 else str(address)
    where = _where(node)
    if _is_name(node.host):
        where += f" ({address})"
    return _Endpoint(
        secure=secure,
        authority=f"{ip}:{node.port}",
        host=f"{node.address}:{node.port}",
        sni=node.host if secure else None,
        where=where,
    )


def _is_name(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return True
    return False


@cache
def _ssl_context(bundle: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if bundle:
        context.load_verify_locations(cafile=bundle)
    return context


def _tls() -> ssl.SSLContext:
    """The system's CAs, and those of DAEMON_CA_BUNDLE where it names a file."""
    try:
        return _ssl_context(settings.DAEMON_CA_BUNDLE)
    except (OSError, ValueError) as e:  # ssl.SSLError is an OSError
        raise DaemonError(
            "tls", f"The CA bundle in DAEMON_CA_BUNDLE cannot be loaded: {e}."
        ) from None


def _token(node: Node) -> str:
    try:
        return node.daemon_token()
    except CredentialsUnreadable as e:
        raise DaemonError(
            "unauthorized", f"The panel cannot sign requests for this node: {e}"
        ) from None


def _server_path(server_id: str, suffix: str = "") -> str:
    return f"/api/servers/{quote(server_id, safe='')}{suffix}"


def _files_path(server_id: str, route: str) -> str:
    return _server_path(server_id, f"/files/{route}")


# Sending.


def _signed_request(
    client: httpx.Client | httpx.AsyncClient,
    node: Node,
    endpoint: _Endpoint,
    token: str,
    method: str,
    path: str,
    *,
    json: Any = None,
    content: bytes | None = None,
    params: dict[str, str] | None = None,
    files: Any = None,
    timeout: float | None = None,
) -> httpx.Request:
    extensions: dict[str, Any] = {}
    if endpoint.sni:
        extensions["sni_hostname"] = endpoint.sni
    if timeout is not None:
        extensions["timeout"] = httpx.Timeout(timeout).as_dict()
    request = client.build_request(
        method,
        endpoint.base_url + path,
        json=json,
        content=content,
        params=params,
        files=files,
        headers={"Host": endpoint.host},
        extensions=extensions,
    )
    request.read()  # a multipart body is a stream until read; the signature needs it
    # The target is signed as it goes on the wire: path and query, encoded.
    target = request.url.raw_path.decode("ascii")
    request.headers.update(
        sign(node.token_id, token, request.method, target, request.content)
    )
    return request


def _send(
    client: httpx.Client, request: httpx.Request, endpoint: _Endpoint
) -> httpx.Response:
    with _transport_errors(request, endpoint):
        response = client.send(request, stream=True)
        try:
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                _check_size(body, endpoint)
        finally:
            response.close()
    return _answer(response, bytes(body), endpoint)


async def _asend(
    client: httpx.AsyncClient, request: httpx.Request, endpoint: _Endpoint
) -> httpx.Response:
    with _transport_errors(request, endpoint):
        response = await client.send(request, stream=True)
        try:
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                _check_size(body, endpoint)
        finally:
            await response.aclose()
    return _answer(response, bytes(body), endpoint)


def _check_size(body: bytearray, endpoint: _Endpoint) -> None:
    if len(body) > MAX_ANSWER_BYTES:
        raise DaemonError(
            "bad_answer",
            f"{endpoint.where} answered with more than "
            f"{MAX_ANSWER_BYTES // 1024 // 1024} MB.",
        )


@contextmanager
def _transport_errors(request: httpx.Request, endpoint: _Endpoint) -> Iterator[None]:
    """Turn httpx's exceptions into DaemonErrors."""
    where = endpoint.where
    timeouts = request.extensions.get("timeout", {})
    try:
        yield
    except httpx.ConnectTimeout:
        raise DaemonError(
            "timeout",
            f"{where} did not accept a connection{_within(timeouts.get('connect'))}.",
        ) from None
    except httpx.TimeoutException:
        raise DaemonError(
            "timeout", f"{where} did not answer{_within(timeouts.get('read'))}."
        ) from None
    except httpx.ConnectError as e:
        failure = _ssl_failure(e)
        if failure is not None:
            raise DaemonError("tls", _tls_sentence(failure, endpoint)) from None
        raise DaemonError(
            "refused", f"{where} cannot be reached: {_reason(e)}."
        ) from None
    except httpx.NetworkError as e:
        raise DaemonError(
            "refused", f"{where} was reached, but the connection broke: {_reason(e)}."
        ) from None
    except httpx.HTTPError as e:
        raise DaemonError(
            "bad_answer", f"{where} did not answer in HTTP: {_reason(e)}."
        ) from None


def _within(seconds: float | None) -> str:
    return "" if seconds is None else f" within {seconds:g} seconds"


def _reason(error: Exception) -> str:
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror.lower()
        cause = cause.__cause__ or cause.__context__
    return str(error) or type(error).__name__


def _ssl_failure(error: Exception) -> ssl.SSLError | None:
    cause: BaseException | None = error
    for _ in range(10):
        if cause is None or isinstance(cause, ssl.SSLError):
            return cause
        cause = cause.__cause__ or cause.__context__
    return None


def _tls_sentence(failure: ssl.SSLError, endpoint: _Endpoint) -> str:
    if isinstance(failure, ssl.SSLCertVerificationError):
        reason = getattr(failure, "verify_message", None) or failure.reason
        return (
            f"{endpoint.where} presented a TLS certificate that is not trusted: "
            f"{reason or 'it does not verify'}. Give the daemon a certificate for "
            f"{endpoint.sni} from a public CA, or add its CA to DAEMON_CA_BUNDLE."
        )
    reason = getattr(failure, "reason", None) or failure.strerror or failure
    return (
        f"{endpoint.where} failed the TLS handshake ({reason}); does the "
        "node's protocol match how the daemon listens?"
    )


# Reading answers.


def _answer(
    response: httpx.Response, body: bytes, endpoint: _Endpoint
) -> httpx.Response:
    headers = [
        (name, value)
        for name, value in response.headers.multi_items()
        if name.lower() not in ENCODING_HEADERS
    ]
    answer = httpx.Response(
        response.status_code,
        headers=headers,
        content=body,
        request=response.request,
    )
    _raise_for_status(answer, endpoint)
    return answer


def _raise_for_status(response: httpx.Response, endpoint: _Endpoint) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    where = endpoint.where
    if 300 <= status < 400:
        location = response.headers.get("Location", "nowhere")
        raise DaemonError(
            "bad_answer",
            f"{where} answered with a redirect ({status}) to {location[:200]}; "
            "the panel does not follow redirects.",
            status,
        )
    said = _daemon_message(response)
    category = ERROR_STATUSES.get(status)
    if category == "unauthorized":
        raise DaemonError(
            category,
            f"{where} refused the panel's signature: {said or 'it gave no reason.'}",
            status,
        )
    if category is not None:
        raise DaemonError(
            category, said or f"{where} answered {_status(response)}.", status
        )
    raise DaemonError(
        "bad_answer",
        f"{where} answered {_status(response)}" + (f": {said}" if said else "."),
        status,
    )


def _status(response: httpx.Response) -> str:
    return f"{response.status_code} {response.reason_phrase}".strip()


def _daemon_message(response: httpx.Response) -> str | None:
    """The message of a daemon's error answer, tidied up to show to an admin."""
    try:
        data = jsonlib.loads(response.content)
    except ValueError:
        return None
    message = data.get("message") if isinstance(data, dict) else None
    if not isinstance(message, str):
        return None
    message = " ".join(message.split())[:MAX_MESSAGE_CHARACTERS]
    return message or None


def _json(response: httpx.Response, where: str) -> Any:
    try:
        return jsonlib.loads(response.content)
    except ValueError:
        kind = response.headers.get("Content-Type", "no content type")
        raise DaemonError(
            "bad_answer",
            f"{where} answered with something that is not JSON ({kind[:100]}).",
            response.status_code,
        ) from None


def _system(response: httpx.Response, where: str) -> dict:
    data = _json(response, where)
    moment = data.get("time") if isinstance(data, dict) else None
    if isinstance(moment, bool) or not isinstance(moment, int | float):
        moment = None
    if moment is None or not math.isfinite(moment):
        raise DaemonError(
            "bad_answer",
            f"{where} answered /api/system without its time as a number.",
            response.status_code,
        )
    return data


def _entries(response: httpx.Response, where: str) -> list[dict]:
    data = _json(response, where)
    if not (
        isinstance(data, list)
        and all(isinstance(e, dict) and isinstance(e.get("name"), str) for e in data)
    ):
        raise DaemonError(
            "bad_answer",
            f"{where} answered without a list of files (objects with a name).",
            response.status_code,
        )
    return data


def _server(response: httpx.Response, where: str) -> dict:
    data = _json(response, where)
    if not (
        isinstance(data, dict)
        and isinstance(data.get("id"), str)
        and isinstance(data.get("state"), str)
    ):
        raise DaemonError(
            "bad_answer",
            f"{where} answered without a server (an object with an id and a state).",
            response.status_code,
        )
    return data
