"""Every request and WebSocket upgrade must be signed with the node's token, once."""

import re
import ssl
import time
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from daemon_harness import (
    TOKEN,
    TOKEN_ID,
    Client,
    DaemonPool,
    RunningDaemon,
    signed_headers,
)


def assert_unauthorized(response: httpx.Response) -> str:
    assert response.status_code == 401
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["error"] == "unauthorized"
    return body["message"]


class TestAuth:
    def test_it_answers_a_signed_heartbeat(self, client: Client) -> None:
        response = client.get("/api/system")

        # The heartbeat tells what the node is
        assert response.status_code == 200
        system = response.json()
        assert system["server_count"] == 0
        assert system["cpu_count"] >= 1
        assert system["memory_bytes"] > 0
        assert system["disk_bytes"] > 0
        assert isinstance(system["time"], float)
        assert abs(system["time"] - time.time()) < 5
        for key in ("version", "os", "architecture", "kernel_version"):
            assert isinstance(system[key], str) and system[key]

    def test_it_refuses_a_request_without_headers(
        self, shared_daemon: RunningDaemon
    ) -> None:
        response = httpx.get(f"{shared_daemon.url}/api/system")

        assert "Authorization" in assert_unauthorized(response)

    def test_it_refuses_an_unsigned_websocket_upgrade(
        self, shared_daemon: RunningDaemon
    ) -> None:
        headers = {
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        }
        response = httpx.get(f"{shared_daemon.url}/api/servers/x/ws", headers=headers)

        assert_unauthorized(response)

    @pytest.mark.parametrize(
        "credentials",
        [
            {"token_id": "othernode0000000"},
            {"token": "x" * 43},
        ],
        ids=["wrong token id", "wrong token"],
    )
    def test_it_refuses_other_credentials(
        self, shared_daemon: RunningDaemon, credentials: dict
    ) -> None:
        headers = signed_headers("GET", "/api/system", **credentials)

        response = httpx.get(f"{shared_daemon.url}/api/system", headers=headers)

        message = assert_unauthorized(response)
        assert TOKEN not in message

    def test_it_refuses_a_tampered_signature(
        self, shared_daemon: RunningDaemon
    ) -> None:
        headers = signed_headers("GET", "/api/system")
        signature = headers["Authorization"].rpartition(".")[2]
        flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
        headers["Authorization"] = f"Bearer {TOKEN_ID}.{flipped}"

        response = httpx.get(f"{shared_daemon.url}/api/system", headers=headers)

        message = assert_unauthorized(response)
        assert signature not in message

    def test_it_refuses_a_tampered_body(self, shared_daemon: RunningDaemon) -> None:
        signed_body = b'{"id": "tamper1"}'
        headers = signed_headers("POST", "/api/servers", signed_body)

        response = httpx.post(
            f"{shared_daemon.url}/api/servers",
            content=b'{"id": "tamper2"}',
            headers=headers,
        )

        assert_unauthorized(response)

    def test_it_refuses_a_tampered_query(self, shared_daemon: RunningDaemon) -> None:
        headers = signed_headers("GET", "/api/system?a=1")

        response = httpx.get(f"{shared_daemon.url}/api/system?a=2", headers=headers)

        assert_unauthorized(response)

    def test_it_refuses_a_stale_timestamp_and_says_so(
        self, shared_daemon: RunningDaemon
    ) -> None:
        headers = signed_headers("GET", "/api/system", timestamp=int(time.time()) - 90)

        response = httpx.get(f"{shared_daemon.url}/api/system", headers=headers)

        # The message names the skew, the most common real cause
        message = assert_unauthorized(response)
        assert "stale" in message
        assert re.search(r"\b9[01] s behind", message), message

    def test_it_refuses_a_replayed_nonce(self, shared_daemon: RunningDaemon) -> None:
        headers = signed_headers("GET", "/api/system")

        first = httpx.get(f"{shared_daemon.url}/api/system", headers=headers)
        replay = httpx.get(f"{shared_daemon.url}/api/system", headers=headers)

        assert first.status_code == 200
        assert "nonce" in assert_unauthorized(replay)

    def test_it_refuses_unsigned_requests_before_saying_what_exists(
        self, shared_daemon: RunningDaemon
    ) -> None:
        response = httpx.get(f"{shared_daemon.url}/no/such/route")

        assert_unauthorized(response)


class TestErrors:
    def test_it_answers_an_unknown_route_with_json(self, client: Client) -> None:
        response = client.get("/no/such/route")

        assert response.status_code == 404
        assert response.json()["error"] == "not_found"

    def test_it_answers_a_wrong_method_with_json(self, client: Client) -> None:
        response = client.request("PUT", "/api/system")

        assert response.status_code == 405
        assert response.json()["error"] == "bad_request"
        assert "PUT" in response.json()["message"]

    def test_it_answers_a_body_that_is_not_json(self, client: Client) -> None:
        response = client.post("/api/servers", content=b"<html>")

        assert response.status_code == 400
        assert response.json() == {
            "error": "bad_request",
            "message": "the body is not JSON",
        }


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(IPv4Address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class TestTLS:
    def test_it_terminates_tls_itself_when_configured(
        self, daemons: DaemonPool, tmp_path: Path
    ) -> None:
        cert, key = self_signed(tmp_path)
        daemon = daemons.start(tmp_path / "node", tls=(cert, key))

        client = Client(daemon.url, verify=ssl.create_default_context(cafile=cert))
        answer = client.get("/api/system")

        assert daemon.url.startswith("https://")
        assert answer.status_code == 200
