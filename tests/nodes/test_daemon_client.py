import asyncio
import datetime
import gzip
import ipaddress
import json
import logging
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from nodes import daemon as daemon_module
from nodes.daemon import (
    CATEGORIES,
    Daemon,
    DaemonError,
    Ping,
    async_client,
    ping,
    websocket_target,
)
from nodes.models import Node
from nodes.signing import verify
from tests.conftest import make_node

REPO_ROOT = Path(__file__).resolve().parents[2]
SYSTEM = {
    "version": "1.0.0",
    "os": "linux",
    "architecture": "amd64",
    "kernel_version": "6.8.0",
    "cpu_count": 8,
    "memory_bytes": 16 * 2**30,
    "disk_bytes": 200 * 2**30,
    "server_count": 0,
    "time": 0.0,
}
SERVER = {
    "id": "abc123defg",
    "name": "survival",
    "state": "installing",
    "limits": {"cpu": 100, "memory_mb": 1024, "disk_mb": 1024},
    "allocations": {"default": None, "additional": []},
    "resources": {},
}
ALLOWED = ["203.0.113.0/24", "198.51.100.0/24", "2001:db8::/32", "127.0.0.0/8"]

Answer = httpx.Response | Callable[[httpx.Request], httpx.Response]

pytestmark = pytest.mark.django_db


class Nonces:
    def __init__(self) -> None:
        self.keys: set[str] = set()

    def add(self, key: str, value: int, timeout: int) -> bool:
        if key in self.keys:
            return False
        self.keys.add(key)
        return True


def system(**changes: object) -> dict:
    return SYSTEM | {"time": time.time()} | changes


def fake(answer: Answer) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    """A transport that answers every request alike and keeps the requests."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer(request) if callable(answer) else answer

    return httpx.MockTransport(handler), seen


def daemon(node: Node, answer: Answer) -> tuple[Daemon, list[httpx.Request]]:
    transport, seen = fake(answer)
    return Daemon(node, transport=transport), seen


def raising(error: type[httpx.RequestError], cause: Exception | None = None):
    def handler(request: httpx.Request) -> httpx.Response:
        if cause is None:
            raise error("it failed", request=request)
        raise error("it failed", request=request) from cause

    return handler


def failure(call: Callable[[], object]) -> DaemonError:
    with pytest.raises(DaemonError) as caught:
        call()
    return caught.value


def verified(node: Node, request: httpx.Request) -> str:
    """The token ID of a request that nodes.signing accepts; raises otherwise."""
    return verify(
        request.headers,
        request.method,
        request.url.raw_path.decode("ascii"),
        request.content,
        tokens={node.token_id: node.daemon_token()}.get,
        nonces=Nonces(),
    )


@pytest.fixture(autouse=True)
def allowed_networks(settings) -> None:
    settings.DAEMON_ALLOWED_NETWORKS = [ipaddress.ip_network(n) for n in ALLOWED]


@pytest.fixture
def dns(monkeypatch) -> dict[str, list[str]]:
    """Answers for host names: a list of addresses, empty for a name that fails."""
    answers: dict[str, list[str]] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host: str, port: object, *args: object, **kwargs: object):
        if host not in answers:
            return real(host, port, *args, **kwargs)
        if not answers[host]:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, 1, 6, "", (a, 0))
            for a in answers[host]
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers


@pytest.fixture
def named_node(db, dns: dict[str, list[str]]) -> Node:
    dns["node1.example.com"] = ["198.51.100.7"]
    return make_node("named", host="node1.example.com")


class TestDaemonClient:
    def test_it_has_exactly_the_protocols_error_categories(self) -> None:
        assert set(CATEGORIES) == {
            "policy",
            "dns",
            "refused",
            "timeout",
            "tls",
            "unauthorized",
            "bad_answer",
            "conflict",
            "not_found",
            "bad_request",
            "too_large",
            "forbidden",
        }
        with pytest.raises(ValueError):
            DaemonError("internal", "Something else.")

    def test_it_signs_every_request(self, node: Node) -> None:
        def answer(request: httpx.Request) -> httpx.Response:
            path = request.url.path
            if path == "/api/system":
                return httpx.Response(200, json=system())
            if path == "/api/servers":
                return httpx.Response(201, json=SERVER)
            return httpx.Response(204 if "files" in path else 202)

        client, seen = daemon(node, answer)
        client.system()
        client.create_server({"id": "abc123defg", "name": "survival"})
        client.power("abc123defg", "start")
        client.request(
            "POST",
            "/api/servers/abc123defg/files/write",
            content=b"motd=Welcome",
            params={"file": "world/server settings.txt"},
        )

        # Each request verifies for the node, over its method, target and body.
        assert [verified(node, r) for r in seen] == [node.token_id] * 4
        assert seen[1].content == b'{"id":"abc123defg","name":"survival"}'
        assert seen[2].content == b'{"action":"start"}'
        assert seen[3].url.raw_path == (
            b"/api/servers/abc123defg/files/write?file=world%2Fserver+settings.txt"
        )
        # The token itself never travels.
        for request in seen:
            assert node.daemon_token() not in str(request.headers.raw)

    def test_it_quotes_a_server_id_into_the_path(self, node: Node) -> None:
        client, seen = daemon(node, httpx.Response(200, json=SERVER))
        client.server("a/b?c")

        assert seen[0].url.raw_path == b"/api/servers/a%2Fb%3Fc"
        assert verified(node, seen[0]) == node.token_id

    def test_it_connects_to_the_checked_address_with_the_host_name(
        self, named_node: Node
    ) -> None:
        client, seen = daemon(named_node, httpx.Response(200, json=system()))
        client.system()

        # The address in the URL; the name in Host and for TLS.
        [request] = seen
        assert str(request.url) == "https://198.51.100.7:8080/api/system"
        assert request.headers["Host"] == "node1.example.com:8080"
        assert request.extensions["sni_hostname"] == "node1.example.com"

    def test_it_puts_an_ipv6_address_in_brackets(
        self, db, dns: dict[str, list[str]]
    ) -> None:
        dns["v6.example.com"] = ["2001:db8::7"]
        node = make_node("v6", host="v6.example.com", port=8443)
        client, seen = daemon(node, httpx.Response(200, json=system()))
        client.system()

        assert str(seen[0].url) == "https://[2001:db8::7]:8443/api/system"
        assert seen[0].headers["Host"] == "v6.example.com:8443"

    def test_it_sends_no_server_name_over_http(self, db) -> None:
        node = make_node("plain", protocol=Node.Protocol.HTTP)
        client, seen = daemon(node, httpx.Response(200, json=system()))
        client.system()

        assert str(seen[0].url) == "http://203.0.113.10:8080/api/system"
        assert seen[0].headers["Host"] == "203.0.113.10:8080"
        assert "sni_hostname" not in seen[0].extensions

    def test_it_verifies_an_address_host_against_its_address(self, node: Node) -> None:
        client, seen = daemon(node, httpx.Response(200, json=system()))
        client.system()

        assert seen[0].extensions["sni_hostname"] == "203.0.113.10"

    def test_it_checks_every_address_a_host_resolves_to(
        self, named_node: Node, dns: dict[str, list[str]]
    ) -> None:
        dns["node1.example.com"] = ["198.51.100.7", "10.0.0.5"]
        client, seen = daemon(named_node, httpx.Response(200, json=system()))

        error = failure(client.system)
        assert error.category == "policy"
        assert "10.0.0.5" in error.message
        assert error.status is None
        assert seen == []

    def test_it_refuses_loopback_unless_it_is_allowed(self, db, settings) -> None:
        settings.DAEMON_ALLOWED_NETWORKS = []
        node = make_node("local", host="localhost")
        client, seen = daemon(node, httpx.Response(200, json=system()))

        error = failure(client.system)
        assert error.category == "policy"
        assert "loopback" in error.message
        assert seen == []

    def test_it_says_when_a_host_does_not_resolve(
        self, db, dns: dict[str, list[str]]
    ) -> None:
        dns["gone.example.com"] = []
        node = make_node("gone", host="gone.example.com")

        error = failure(Daemon(node).system)
        assert error.category == "dns"
        assert error.message == (
            "The host gone.example.com does not resolve: Name or service not known."
        )

    def test_it_never_follows_a_redirect(self, node: Node) -> None:
        redirect = httpx.Response(302, headers={"Location": "http://169.254.169.254/"})
        client, seen = daemon(node, redirect)

        error = failure(client.system)
        assert (error.category, error.status) == ("bad_answer", 302)
        assert "redirect" in error.message
        assert len(seen) == 1

    def test_it_keeps_the_daemons_reason_for_refusing_the_signature(
        self, node: Node
    ) -> None:
        said = "The timestamp is 90 seconds behind the receiver's clock."
        answer = httpx.Response(401, json={"error": "unauthorized", "message": said})
        client, _ = daemon(node, answer)

        error = failure(client.system)
        assert (error.category, error.status) == ("unauthorized", 401)
        assert error.message == (
            "The daemon at 203.0.113.10:8080 refused the panel's signature: " + said
        )

    @pytest.mark.parametrize(
        ("status", "code", "category"),
        [
            (400, "bad_request", "bad_request"),
            (403, "forbidden", "forbidden"),
            (404, "not_found", "not_found"),
            (409, "conflict", "conflict"),
            (413, "too_large", "too_large"),
        ],
    )
    def test_it_passes_on_the_daemons_error_answers(
        self, node: Node, status: int, code: str, category: str
    ) -> None:
        said = "The server is already running."
        answer = httpx.Response(status, json={"error": code, "message": said})
        client, _ = daemon(node, answer)

        error = failure(lambda: client.power("abc123defg", "start"))
        assert (error.category, error.message, error.status) == (category, said, status)

    @pytest.mark.parametrize(
        ("answer", "said"),
        [
            (httpx.Response(500, json={"error": "internal", "message": "Disk full."}),
             "answered 500 Internal Server Error: Disk full."),
            (httpx.Response(502, html="<h1>Bad gateway</h1>"),
             "answered 502 Bad Gateway."),
            (httpx.Response(418), "answered 418 I'm a teapot."),
            (httpx.Response(200, html="<h1>It works!</h1>"),
             "not JSON (text/html; charset=utf-8)."),
            (httpx.Response(200, json=[1, 2]), "without its time as a number."),
            (httpx.Response(200, json=SYSTEM | {"time": "now"}), "without its time"),
            (httpx.Response(200, json=SYSTEM | {"time": True}), "without its time"),
            (httpx.Response(200, content=b'{"time": NaN}'), "without its time"),
        ],
    )  # fmt: skip
    def test_it_calls_anything_else_a_bad_answer(
        self, node: Node, answer: httpx.Response, said: str
    ) -> None:
        client, _ = daemon(node, answer)

        error = failure(client.system)
        assert error.category == "bad_answer"
        assert error.status == answer.status_code
        assert said in error.message

    def test_it_wants_a_server_where_one_is_due(self, node: Node) -> None:
        client, _ = daemon(node, httpx.Response(201, json={"name": "survival"}))

        error = failure(lambda: client.create_server({"id": "abc123defg"}))
        assert error.category == "bad_answer"
        assert "without a server" in error.message

    def test_it_returns_the_answers_of_the_protocol(self, node: Node) -> None:
        client, _ = daemon(node, httpx.Response(200, json=SERVER))
        assert client.server("abc123defg") == SERVER
        assert client.sync("abc123defg", {"id": "abc123defg"}) == SERVER

        client, _ = daemon(node, httpx.Response(204))
        assert client.delete_server("abc123defg") is None
        assert client.install("abc123defg") is None

    def test_it_refuses_an_unknown_power_action(self, node: Node) -> None:
        with pytest.raises(ValueError, match="'explode' is not a power action"):
            Daemon(node).power("abc123defg", "explode")

    def test_it_reads_a_compressed_answer_once(self, node: Node) -> None:
        body = gzip.compress(json.dumps(system()).encode())
        answer = httpx.Response(200, content=body, headers={"Content-Encoding": "gzip"})
        client, _ = daemon(node, answer)

        assert client.system()["version"] == "1.0.0"

    def test_it_refuses_an_answer_too_large(self, node: Node, monkeypatch) -> None:
        monkeypatch.setattr(daemon_module, "MAX_ANSWER_BYTES", 1000)
        client, _ = daemon(node, httpx.Response(200, content=b" " * 1001))

        error = failure(client.system)
        assert error.category == "bad_answer"
        assert "answered with more than" in error.message

    @pytest.mark.parametrize(
        "error",
        [
            httpx.ConnectTimeout,
            httpx.ReadTimeout,
            httpx.WriteTimeout,
            httpx.PoolTimeout,
        ],
    )
    def test_it_calls_every_timeout_a_timeout(
        self, node: Node, error: type[httpx.TimeoutException]
    ) -> None:
        client, _ = daemon(node, raising(error))

        caught = failure(client.system)
        assert (caught.category, caught.status) == ("timeout", None)
        assert "within" in caught.message

    def test_it_says_when_the_connection_is_refused(self, node: Node) -> None:
        cause = ConnectionRefusedError(111, "Connection refused")
        client, _ = daemon(node, raising(httpx.ConnectError, cause))

        error = failure(client.system)
        assert error.category == "refused"
        assert error.message == (
            "The daemon at 203.0.113.10:8080 cannot be reached: connection refused."
        )

    def test_it_says_when_the_connection_breaks(self, node: Node) -> None:
        client, _ = daemon(node, raising(httpx.ReadError))

        assert failure(client.system).category == "refused"

    def test_it_calls_what_is_not_http_a_bad_answer(self, node: Node) -> None:
        client, _ = daemon(node, raising(httpx.RemoteProtocolError))

        assert failure(client.system).category == "bad_answer"

    def test_it_says_when_the_certificate_is_not_trusted(
        self, named_node: Node
    ) -> None:
        cause = ssl.SSLCertVerificationError(1, "certificate verify failed")
        cause.verify_message = "self-signed certificate"
        client, _ = daemon(named_node, raising(httpx.ConnectError, cause))

        error = failure(client.system)
        assert error.category == "tls"
        assert error.message == (
            "The daemon at node1.example.com:8080 (198.51.100.7) presented a TLS "
            "certificate that is not trusted: self-signed certificate. Give the "
            "daemon a certificate for node1.example.com from a public CA, or add its "
            "CA to DAEMON_CA_BUNDLE."
        )

    def test_it_says_when_the_tls_handshake_fails(self, node: Node) -> None:
        cause = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")
        client, _ = daemon(node, raising(httpx.ConnectError, cause))

        error = failure(client.system)
        assert error.category == "tls"
        assert "does the node's protocol match" in error.message

    def test_it_says_when_the_token_cannot_be_read(self, node: Node) -> None:
        node.token_encrypted = "not a fernet token"
        client, seen = daemon(node, httpx.Response(200, json=system()))

        error = failure(client.system)
        assert error.category == "unauthorized"
        assert "cannot be decrypted" in error.message
        assert seen == []

    def test_it_never_tells_the_token(
        self, node: Node, caplog: pytest.LogCaptureFixture
    ) -> None:
        for name in ("", "httpx", "httpcore", "nodes"):
            caplog.set_level(logging.DEBUG, logger=name)
        token = node.daemon_token()
        answers: list[Answer] = [
            httpx.Response(200, json=system()),
            httpx.Response(401, json={"error": "unauthorized", "message": "No."}),
            httpx.Response(500, text="Traceback"),
            httpx.Response(302, headers={"Location": "/elsewhere"}),
            raising(httpx.ReadTimeout),
            raising(httpx.ConnectError, ConnectionRefusedError(111, "refused")),
        ]
        told = []
        for answer in answers:
            client, _ = daemon(node, answer)
            try:
                client.system()
            except DaemonError as e:
                told += [str(e), repr(e), e.message, repr(e.__cause__)]

        assert len(told) == 4 * (len(answers) - 1)
        assert not [sentence for sentence in told if token in sentence]
        assert caplog.records
        assert token not in caplog.text
        assert not [r for r in caplog.records if token in str(r.args)]

    def test_it_offers_the_console_websocket(self, named_node: Node) -> None:
        url, headers, sni = websocket_target(named_node, "abc123defg")

        assert url == "wss://198.51.100.7:8080/api/servers/abc123defg/ws"
        assert headers["Host"] == "node1.example.com:8080"
        assert sni == "node1.example.com"
        upgrade = httpx.Request("GET", url, headers=headers)
        assert verified(named_node, upgrade) == named_node.token_id

    def test_it_offers_a_plain_websocket_over_http(self, db) -> None:
        node = make_node("plain", protocol=Node.Protocol.HTTP)
        url, headers, sni = websocket_target(node, "abc123defg")

        assert url == "ws://203.0.113.10:8080/api/servers/abc123defg/ws"
        assert sni is None


class TestPing:
    @pytest.mark.asyncio
    async def test_it_measures_latency_and_clock_offset(self, node: Node) -> None:
        transport, seen = fake(
            lambda r: httpx.Response(200, json=system(time=time.time() + 42))
        )
        async with async_client(transport=transport) as client:
            answer = await ping(node, client, timeout=5)

        assert isinstance(answer, Ping)
        assert answer.system["version"] == "1.0.0"
        assert 0 <= answer.latency_ms < 1000
        assert 41 < answer.clock_offset_s < 43
        assert verified(node, seen[0]) == node.token_id

    @pytest.mark.asyncio
    async def test_it_connects_to_the_checked_address(self, named_node: Node) -> None:
        transport, seen = fake(httpx.Response(200, json=system()))
        async with async_client(transport=transport) as client:
            await ping(named_node, client, timeout=5)

        assert str(seen[0].url) == "https://198.51.100.7:8080/api/system"
        assert seen[0].headers["Host"] == "node1.example.com:8080"
        assert seen[0].extensions["sni_hostname"] == "node1.example.com"
        assert seen[0].extensions["timeout"]["read"] == 5

    @pytest.mark.asyncio
    async def test_it_raises_only_daemon_errors(self, node: Node) -> None:
        cases = [
            (httpx.Response(302, headers={"Location": "/"}), "bad_answer"),
            (httpx.Response(401, json={"message": "Stale."}), "unauthorized"),
            (httpx.Response(200, text="garbage"), "bad_answer"),
            (raising(httpx.ConnectTimeout), "timeout"),
            (raising(httpx.ConnectError), "refused"),
        ]
        for answer, category in cases:
            transport, _ = fake(answer)
            async with async_client(transport=transport) as client:
                with pytest.raises(DaemonError) as caught:
                    await ping(node, client, timeout=5)
            assert caught.value.category == category

    @pytest.mark.asyncio
    async def test_it_resolves_without_blocking_the_event_loop(
        self, named_node: Node, monkeypatch
    ) -> None:
        resolve = daemon_module._resolve

        def slow(host: str) -> list[str]:
            time.sleep(0.3)
            return resolve(host)

        monkeypatch.setattr(daemon_module, "_resolve", slow)
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(tick())
        transport, _ = fake(httpx.Response(200, json=system()))
        async with async_client(transport=transport) as client:
            await ping(named_node, client, timeout=5)
        ticker.cancel()

        assert ticks >= 10

    @pytest.mark.asyncio
    async def test_its_timeout_covers_resolving(
        self, named_node: Node, monkeypatch
    ) -> None:
        monkeypatch.setattr(daemon_module, "_resolve", lambda host: time.sleep(1))
        transport, seen = fake(httpx.Response(200, json=system()))

        started = time.monotonic()
        async with async_client(transport=transport) as client:
            with pytest.raises(DaemonError) as caught:
                await ping(named_node, client, timeout=0.2)

        assert caught.value.category == "timeout"
        assert caught.value.message == (
            "The daemon at node1.example.com:8080 did not answer within 0.2 seconds."
        )
        assert time.monotonic() - started < 0.9
        assert seen == []

    def test_it_takes_limits_whole_or_in_part(self) -> None:
        limits = httpx.Limits(max_connections=5)
        assert isinstance(async_client(limits), httpx.AsyncClient)
        assert isinstance(async_client(max_connections=5), httpx.AsyncClient)
        with pytest.raises(TypeError):
            async_client(limits, max_connections=5)


# Real sockets on loopback.


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.server.behaviour(self)  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: object) -> None:
        pass


class LoopbackServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that gave up


def answer_json(payload: dict) -> Callable[[BaseHTTPRequestHandler], None]:
    def behaviour(handler: BaseHTTPRequestHandler) -> None:
        body = json.dumps(payload).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return behaviour


def answer_garbage(handler: BaseHTTPRequestHandler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "text/plain")
    handler.end_headers()
    handler.wfile.write(b"\x00\x01 definitely not json")


def answer_slowly(handler: BaseHTTPRequestHandler) -> None:
    time.sleep(1.5)
    answer_json(system())(handler)


@contextmanager
def serve(
    behaviour: Callable[[BaseHTTPRequestHandler], None],
    tls: ssl.SSLContext | None = None,
) -> Iterator[int]:
    server = LoopbackServer(("127.0.0.1", 0), Handler)
    server.behaviour = behaviour  # type: ignore[attr-defined]
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loopback_node(port: int, **fields: object) -> Node:
    values = {"host": "127.0.0.1", "port": port, "protocol": Node.Protocol.HTTP}
    return make_node(f"loopback-{port}", **(values | fields))


def certificates(directory: Path, name: str) -> tuple[Path, ssl.SSLContext]:
    """A CA, and a certificate it signs for `name`: the CA's file, and the TLS
    context of a server that presents the certificate."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test daemons CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (directory / "ca.pem").write_bytes(ca.public_bytes(pem))
    (directory / "cert.pem").write_bytes(leaf.public_bytes(pem))
    (directory / "key.pem").write_bytes(
        key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    return directory / "ca.pem", context


@pytest.fixture
def loopback(db) -> Node:
    return loopback_node(free_port())


class TestOnLoopback:
    def test_it_says_refused_quickly_where_nothing_listens(self, db) -> None:
        node = loopback_node(free_port())

        started = time.monotonic()
        error = failure(Daemon(node).system)
        assert error.category == "refused"
        assert time.monotonic() - started < 2

    def test_it_talks_to_a_real_daemon(self, db) -> None:
        with serve(answer_json(system(time=12.5))) as port:
            answer = Daemon(loopback_node(port)).system()

        assert answer["time"] == 12.5

    def test_it_calls_garbage_a_bad_answer(self, db) -> None:
        with serve(answer_garbage) as port:
            error = failure(Daemon(loopback_node(port)).system)

        assert error.category == "bad_answer"
        assert "not JSON (text/plain)" in error.message

    def test_it_gives_up_on_a_slow_daemon(self, db) -> None:
        with serve(answer_slowly) as port:
            started = time.monotonic()
            error = failure(Daemon(loopback_node(port), timeout=0.2).system)

        assert error.category == "timeout"
        assert error.message.endswith("did not answer within 0.2 seconds.")
        assert time.monotonic() - started < 1

    @pytest.mark.asyncio
    async def test_it_pings_over_real_sockets(self, loopback: Node) -> None:
        # The node was made before the event loop ran; ping reads no database,
        # so the node takes the port of each server unsaved.
        node = loopback
        async with async_client() as client:
            with serve(answer_json(system())) as port:
                node.port = port
                answer = await ping(node, client, timeout=2)
            with serve(answer_garbage) as port:
                node.port = port
                with pytest.raises(DaemonError) as bad:
                    await ping(node, client, timeout=2)
            with serve(answer_slowly) as port:
                node.port = port
                with pytest.raises(DaemonError) as late:
                    await ping(node, client, timeout=0.2)
            node.port = free_port()
            with pytest.raises(DaemonError) as refused:
                await ping(node, client, timeout=2)

        assert abs(answer.clock_offset_s) < 5
        assert bad.value.category == "bad_answer"
        assert late.value.category == "timeout"
        assert refused.value.category == "refused"

    def test_it_verifies_tls_against_the_host_name_not_the_address(
        self, db, dns: dict[str, list[str]], settings, tmp_path: Path
    ) -> None:
        ca, tls = certificates(tmp_path, "node1.test")
        dns["node1.test"] = dns["node2.test"] = ["127.0.0.1"]

        with serve(answer_json(system()), tls) as port:
            https = {"protocol": Node.Protocol.HTTPS}
            named = loopback_node(port, host="node1.test", **https)
            other = make_node("other", host="node2.test", port=port, **https)
            untrusted = failure(Daemon(named).system)
            settings.DAEMON_CA_BUNDLE = str(ca)
            answer = Daemon(named).system()
            mismatch = failure(Daemon(other).system)

        # Trusted through DAEMON_CA_BUNDLE, for the name it was connected by.
        assert answer["version"] == "1.0.0"
        assert untrusted.category == "tls"
        assert "not trusted" in untrusted.message
        assert mismatch.category == "tls"
        assert "node2.test" in mismatch.message

    def test_it_refuses_a_ca_bundle_that_does_not_exist(self) -> None:
        env = {k: v for k, v in os.environ.items() if k != "DAEMON_CA_BUNDLE"}
        env["DAEMON_CA_BUNDLE"] = "/nonexistent/daemons.pem"
        check = subprocess.run(
            [sys.executable, "manage.py", "check"],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

        assert check.returncode != 0
        assert "DAEMON_CA_BUNDLE points at '/nonexistent/daemons.pem'" in check.stderr
