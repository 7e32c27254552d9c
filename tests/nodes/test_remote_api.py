import json
import os
import re
import subprocess
import sys
import time
from io import BytesIO
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.handlers.asgi import ASGIRequest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from nodes import remote
from nodes.models import Allocation, Node
from nodes.signing import sign
from servers.models import Server
from tests.conftest import make_node

REPO_ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.django_db


def make_server(node: Node, owner: User, name: str = "survival") -> Server:
    return Server.objects.create(
        name=name, owner=owner, node=node, cpu=100, memory_mb=1024, disk_mb=1024
    )


def call(
    node: Node,
    method: str,
    path: str,
    body: bytes | dict = b"",
    *,
    token: str | None = None,
    signed_body: bytes | None = None,
    timestamp: int | None = None,
    headers: dict[str, str] | None = None,
):
    """A request of the node's daemon, signed unless headers are given."""
    content = json.dumps(body).encode() if isinstance(body, dict) else body
    if headers is None:
        headers = sign(
            node.token_id,
            node.daemon_token() if token is None else token,
            method,
            path,
            content if signed_body is None else signed_body,
            timestamp=timestamp,
        )
    # A daemon has no session and no CSRF token.
    client = Client(enforce_csrf_checks=True)
    return client.generic(
        method, path, data=content, content_type="application/json", headers=headers
    )


def refusal(response, status: int, code: str) -> str:
    """The message of a JSON error answer, after checking its status and code."""
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"error", "message"}
    assert body["error"] == code
    return body["message"]


@pytest.fixture
def server(node: Node, owner: User) -> Server:
    return make_server(node, owner)


@pytest.fixture
def other_node(db) -> Node:
    return make_node("beta", host="203.0.113.20")


class TestRemoteAPI:
    def test_it_lists_the_servers_of_the_calling_node(
        self, node: Node, other_node: Node, owner: User
    ) -> None:
        survival = make_server(node, owner, "survival")
        creative = make_server(node, owner, "creative")
        make_server(other_node, owner, "elsewhere")
        Allocation.objects.create(
            node=node, ip="203.0.113.10", port=25565, server=survival, is_primary=True
        )

        response = call(node, "GET", "/api/remote/servers")

        # This node's servers only, as their daemon configs.
        assert response.status_code == 200
        assert response.json() == {
            "servers": [survival.daemon_config(), creative.daemon_config()]
        }
        assert response.json()["servers"][0]["allocations"]["default"] == {
            "ip": "203.0.113.10",
            "port": 25565,
        }
        assert "Set-Cookie" not in response.headers

    def test_it_makes_as_many_queries_for_many_servers_as_for_few(
        self, owner: User
    ) -> None:
        counts = []
        for count in (2, 10):
            node = make_node(f"node-{count}", host=f"203.0.113.{count}", cpu_cores=16)
            for i in range(count):
                server = make_server(node, owner, f"server-{i}")
                Allocation.objects.create(
                    node=node, ip="203.0.113.99", port=25565 + i, server=server
                )
            with CaptureQueriesContext(connection) as queries:
                response = call(node, "GET", "/api/remote/servers")
            assert len(response.json()["servers"]) == count
            counts.append(len(queries))

        assert counts[0] == counts[1]

    def test_it_verifies_a_signed_query_string(self, node: Node) -> None:
        response = call(node, "GET", "/api/remote/servers?after=a%20b&limit=10")

        assert response.status_code == 200

    def test_it_records_a_servers_state(self, node: Node, server: Server) -> None:
        path = f"/api/remote/servers/{server.public_id}/status"
        response = call(node, "POST", path, {"state": "running"})

        assert response.status_code == 204
        assert response.content == b""
        server.refresh_from_db()
        assert server.status == Server.Status.RUNNING

    @pytest.mark.parametrize(
        ("successful", "status"),
        [(True, Server.Status.OFFLINE), (False, Server.Status.INSTALL_FAILED)],
    )
    def test_it_records_the_end_of_an_installation(
        self, node: Node, server: Server, successful: bool, status: str
    ) -> None:
        path = f"/api/remote/servers/{server.public_id}/install"
        response = call(node, "POST", path, {"successful": successful})

        assert response.status_code == 204
        server.refresh_from_db()
        assert server.status == status

    @pytest.mark.parametrize("route", ["status", "install"])
    def test_it_answers_another_nodes_server_as_an_unknown_one(
        self, node: Node, other_node: Node, owner: User, route: str
    ) -> None:
        theirs = make_server(other_node, owner, "theirs")
        body = {"state": "running", "successful": True}

        other = call(
            node, "POST", f"/api/remote/servers/{theirs.public_id}/{route}", body
        )
        unknown = call(node, "POST", f"/api/remote/servers/zzzzzzzzzz/{route}", body)

        # The same answer, but for the id; the server is untouched.
        said = refusal(other, 404, "not_found")
        assert said.replace(theirs.public_id, "zzzzzzzzzz") == refusal(
            unknown, 404, "not_found"
        )
        theirs.refresh_from_db()
        assert theirs.status == Server.Status.INSTALLING

    def test_it_refuses_a_request_without_a_signature(self, node: Node) -> None:
        response = call(node, "GET", "/api/remote/servers", headers={})

        assert "Authorization" in refusal(response, 401, "unauthorized")

    def test_it_refuses_a_garbage_authorization(self, node: Node) -> None:
        headers = sign(node.token_id, node.daemon_token(), "GET", "/api/remote/servers")
        headers["Authorization"] = "Bearer <script>alert(1)</script>"
        response = call(node, "GET", "/api/remote/servers", headers=headers)

        refusal(response, 401, "unauthorized")

    def test_it_refuses_an_unknown_token_id(self, node: Node) -> None:
        headers = sign("0000000000000000", node.daemon_token(), "GET", "/x")
        response = call(node, "GET", "/api/remote/servers", headers=headers)

        assert "token ID" in refusal(response, 401, "unauthorized")

    def test_it_refuses_the_wrong_token(self, node: Node, other_node: Node) -> None:
        response = call(
            node, "GET", "/api/remote/servers", token=other_node.daemon_token()
        )

        assert "signature does not match" in refusal(response, 401, "unauthorized")

    def test_it_names_a_stale_timestamp(self, node: Node) -> None:
        stale = int(time.time()) - 300
        response = call(node, "GET", "/api/remote/servers", timestamp=stale)

        said = refusal(response, 401, "unauthorized")
        # A second may tick over between signing and checking.
        assert re.search(r"timestamp is 30[01] seconds behind", said), said

    def test_it_refuses_a_replayed_request(self, node: Node, server: Server) -> None:
        path = f"/api/remote/servers/{server.public_id}/status"
        body = json.dumps({"state": "running"}).encode()
        headers = sign(node.token_id, node.daemon_token(), "POST", path, body)

        assert call(node, "POST", path, body, headers=headers).status_code == 204
        again = call(node, "POST", path, body, headers=headers)

        assert "nonce was already used" in refusal(again, 401, "unauthorized")

    def test_it_refuses_a_tampered_body(self, node: Node, server: Server) -> None:
        path = f"/api/remote/servers/{server.public_id}/status"
        signed_body = json.dumps({"state": "stopping"}).encode()
        response = call(
            node, "POST", path, {"state": "running"}, signed_body=signed_body
        )

        refusal(response, 401, "unauthorized")
        server.refresh_from_db()
        assert server.status == Server.Status.INSTALLING

    @pytest.mark.parametrize(
        "body", [b"{not json", b"\xff\xfe", b"[1, 2]", b"[" * 5000]
    )
    def test_it_refuses_a_body_that_is_not_a_json_object(
        self, node: Node, server: Server, body: bytes
    ) -> None:
        path = f"/api/remote/servers/{server.public_id}/status"
        response = call(node, "POST", path, body)

        assert "JSON" in refusal(response, 400, "bad_request")

    @pytest.mark.parametrize("body", [{"state": "exploded"}, {"state": None}, {}])
    def test_it_names_the_state_it_refuses(
        self, node: Node, server: Server, body: dict
    ) -> None:
        path = f"/api/remote/servers/{server.public_id}/status"
        response = call(node, "POST", path, body)

        said = refusal(response, 400, "bad_request")
        assert "state" in said
        assert "install_failed" in said

    @pytest.mark.parametrize("successful", ["yes", 1, None])
    def test_it_wants_successful_true_or_false(
        self, node: Node, server: Server, successful: object
    ) -> None:
        path = f"/api/remote/servers/{server.public_id}/install"
        response = call(node, "POST", path, {"successful": successful})

        assert "successful" in refusal(response, 400, "bad_request")

    def test_it_refuses_a_body_over_64_kib(self, node: Node, server: Server) -> None:
        path = f"/api/remote/servers/{server.public_id}/status"
        body = json.dumps({"state": "running", "pad": "x" * 65536}).encode()
        response = call(node, "POST", path, body)

        refusal(response, 413, "too_large")

    def test_it_answers_a_wrong_method_in_json(self, node: Node) -> None:
        response = call(node, "POST", "/api/remote/servers", {})

        assert refusal(response, 405, "bad_request") == "Use GET for this route."
        assert response["Allow"] == "GET"

    @pytest.mark.parametrize(
        "path", ["/api/remote/", "/api/remote/nothing", "/api/remote/servers/"]
    )
    def test_it_answers_an_unknown_route_in_json(self, node: Node, path: str) -> None:
        refusal(call(node, "GET", path), 404, "not_found")

    def test_it_answers_its_own_failure_in_json(
        self, node: Node, server: Server, monkeypatch
    ) -> None:
        def broken(self: Server) -> dict:
            raise RuntimeError("a bug")

        monkeypatch.setattr(Server, "daemon_config", broken)
        response = call(node, "GET", "/api/remote/servers")

        refusal(response, 500, "internal")

    def test_it_checks_the_raw_path_under_asgi(self) -> None:
        scope = {
            "type": "http",
            "method": "GET",
            "path": "/api/remote/servers/A",
            "raw_path": b"/api/remote/servers/%41",
            "query_string": b"x=%2F",
            "headers": [],
        }
        request = ASGIRequest(scope, BytesIO(b""))

        # The target as the daemon sent and signed it, not as Django rebuilds it.
        assert request.get_full_path() == "/api/remote/servers/A?x=%2F"
        assert remote._target(request) == "/api/remote/servers/%41?x=%2F"

    def test_it_keeps_nonces_in_redis_when_there_is_redis(self) -> None:
        env = os.environ | {"REDIS_URL": "redis://127.0.0.1:6379/0"}
        check = subprocess.run(
            [
                sys.executable,
                "manage.py",
                "shell",
                "-c",
                "from django.conf import settings; "
                "print(settings.CACHES['default']['BACKEND'])",
            ],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

        last_line = check.stdout.strip().splitlines()[-1]
        assert last_line == "django.core.cache.backends.redis.RedisCache"
