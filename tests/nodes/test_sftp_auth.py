import json
import threading
import time
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.utils import timezone

from nodes.models import Node
from servers.models import Server, SftpLogin
from tests.conftest import PASSWORD, make_node, make_user
from tests.nodes.test_remote_api import call, make_server

pytestmark = pytest.mark.django_db

ROUTE = "/api/remote/sftp/auth"


def attempt(node: Node, username: str, password: str = PASSWORD, ip="203.0.113.7"):
    payload = {"username": username, "password": password, "ip": ip}
    return call(node, "POST", ROUTE, payload)


def refused(response, message: str = "The username or password is wrong.") -> bool:
    return response.status_code == 403 and response.json() == {
        "error": "forbidden",
        "message": message,
    }


def installed(node: Node, owner: User) -> Server:
    server = make_server(node, owner)
    Server.objects.filter(pk=server.pk).update(status=Server.Status.OFFLINE)
    return server


@pytest.fixture
def server(node: Node, owner: User) -> Server:
    return installed(node, owner)


def test_the_owner_gets_in_with_the_panel_password(
    node: Node, server: Server, owner: User
) -> None:
    response = attempt(node, f"{server.public_id}.{owner.email}")

    assert response.status_code == 200
    assert response.json() == {
        "server": server.public_id,
        "user": owner.email,
        "permissions": ["file.read", "file.create", "file.update", "file.delete"],
    }


def test_an_admin_gets_into_anyones_server(
    node: Node, server: Server, admin_user: User
) -> None:
    response = attempt(node, f"{server.public_id}.{admin_user.email}")

    assert response.status_code == 200
    assert response.json()["user"] == admin_user.email


def test_an_address_with_dots_and_a_plus_sign_splits_at_the_first_dot(
    node: Node,
) -> None:
    dotted = make_user("dotted")
    dotted.email = "first.last+games@mail.example.co.uk"
    dotted.save()
    server = installed(node, dotted)

    response = attempt(node, f"{server.public_id}.First.Last+Games@Mail.Example.co.uk")

    assert response.status_code == 200
    assert response.json()["server"] == server.public_id


@pytest.mark.parametrize(
    "case",
    ["wrong password", "other user", "unknown server", "inactive", "no such user"],
)
def test_a_refusal_looks_the_same_whatever_its_reason(
    case: str, node: Node, server: Server, owner: User, outsider: User
) -> None:
    username, password = f"{server.public_id}.{owner.email}", PASSWORD
    if case == "wrong password":
        password = "not-the-password"
    elif case == "other user":
        username = f"{server.public_id}.{outsider.email}"
    elif case == "unknown server":
        username = f"zzzzzzzzzz.{owner.email}"
    elif case == "inactive":
        User.objects.filter(pk=owner.pk).update(is_active=False)
    else:
        username = f"{server.public_id}.nobody@example.com"

    assert refused(attempt(node, username, password))
    assert SftpLogin.objects.get().result == SftpLogin.Result.REFUSED


def test_a_server_that_is_installing_is_closed_until_it_is_done(
    node: Node, server: Server, owner: User
) -> None:
    username = f"{server.public_id}.{owner.email}"
    Server.objects.filter(pk=server.pk).update(status=Server.Status.INSTALLING)

    assert refused(
        attempt(node, username),
        "The server is installing; log in again when it is done.",
    )

    Server.objects.filter(pk=server.pk).update(status=Server.Status.INSTALL_FAILED)
    assert attempt(node, username).status_code == 200


def test_a_server_on_another_node_is_refused_to_that_node(
    location, server: Server, owner: User
) -> None:
    other = make_node("beta", location=location, host="203.0.113.11")

    response = attempt(other, f"{server.public_id}.{owner.email}")

    assert refused(response)
    entry = SftpLogin.objects.get()
    assert entry.node_name == "beta"
    assert entry.reason == f"the server runs on node {server.node.name}"


def test_two_users_sharing_an_address_are_refused(
    node: Node, server: Server, owner: User
) -> None:
    twin = make_user("twin")
    twin.email = owner.email.upper()
    twin.save()

    assert refused(attempt(node, f"{server.public_id}.{owner.email}"))


@pytest.mark.parametrize(
    "username",
    ["nodot", ".bob@example.com", "abcdefghij.", "abcdefghij.no-at-sign", "abc.@"],
)
def test_a_malformed_username_is_refused_with_the_expected_form(
    node: Node, username: str
) -> None:
    response = attempt(node, username)

    assert response.status_code == 403
    assert (
        "the server ID, a dot, then your e-mail address" in response.json()["message"]
    )
    assert SftpLogin.objects.get().reason == "malformed username"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"password": PASSWORD, "ip": "127.0.0.1"}, "username"),
        ({"username": 5, "password": PASSWORD, "ip": "127.0.0.1"}, "username"),
        ({"username": "a.b@c", "ip": "127.0.0.1"}, "password"),
        ({"username": "a.b@c", "password": "", "ip": "127.0.0.1"}, "password"),
        ({"username": "a.b@c", "password": PASSWORD}, "ip"),
        ({"username": "a.b@c", "password": PASSWORD, "ip": "localhost"}, "ip"),
        ({"username": "a" * 321, "password": PASSWORD, "ip": "::1"}, "username"),
    ],
)
def test_a_bad_body_is_answered_400_naming_the_field(
    node: Node, payload: dict, field: str
) -> None:
    response = call(node, "POST", ROUTE, payload)

    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"
    assert f"field {field}" in response.json()["message"]
    assert not SftpLogin.objects.exists()


def test_an_unsigned_request_is_refused(node: Node) -> None:
    response = Client().post(
        ROUTE,
        {"username": "a.b@c", "password": PASSWORD, "ip": "::1"},
        content_type="application/json",
    )

    assert response.status_code == 401
    assert not SftpLogin.objects.exists()


def test_every_attempt_is_logged_without_its_password(
    node: Node, server: Server, owner: User
) -> None:
    username = f"{server.public_id}.{owner.email}"
    attempt(node, username, "guess-one-xyz", ip="2001:db8::1")
    attempt(node, username, ip="198.51.100.4")

    failure, success = SftpLogin.objects.order_by("pk")
    assert (failure.result, failure.reason) == ("refused", "wrong password")
    assert (success.result, success.ip) == ("granted", "198.51.100.4")
    assert failure.ip == "2001:db8::1"
    assert success.server_public_id == server.public_id
    assert success.user_name == owner.username
    assert success.node_name == node.name
    stored = json.dumps(list(SftpLogin.objects.values()), default=str)
    assert "guess-one-xyz" not in stored
    assert PASSWORD not in stored


class TestThrottling:
    @pytest.fixture(autouse=True)
    def limits(self, settings) -> None:
        settings.SFTP_MAX_FAILURES_PER_ADDRESS = 3
        settings.SFTP_MAX_FAILURES_PER_USERNAME = 5
        settings.SFTP_FAILURE_WINDOW_S = 600

    @pytest.fixture
    def username(self, server: Server, owner: User) -> str:
        return f"{server.public_id}.{owner.email}"

    def fail(self, node: Node, username: str, times: int, ip: str) -> None:
        for _ in range(times):
            assert refused(attempt(node, username, "wrong", ip=ip))

    def test_an_address_is_locked_out_even_with_the_right_password(
        self, node: Node, username: str
    ) -> None:
        self.fail(node, username, 3, ip="203.0.113.7")

        response = attempt(node, username, ip="203.0.113.7")

        assert response.status_code == 403
        assert response.json()["message"].startswith(
            f"Too many failed logins for {username}; try again in "
        )
        assert SftpLogin.objects.first().result == SftpLogin.Result.THROTTLED
        # Another address still gets in: this limit is per address.
        assert attempt(node, username, ip="203.0.113.8").status_code == 200

    def test_a_username_is_locked_out_from_every_address(
        self, node: Node, username: str
    ) -> None:
        for n in range(5):
            self.fail(node, username, 1, ip=f"203.0.113.{n + 10}")

        assert attempt(node, username, ip="198.51.100.1").status_code == 403
        assert SftpLogin.objects.first().result == SftpLogin.Result.THROTTLED

    def test_other_usernames_are_not_locked(
        self, node: Node, username: str, server: Server, admin_user: User
    ) -> None:
        self.fail(node, username, 3, ip="203.0.113.7")
        assert attempt(node, username, ip="203.0.113.7").status_code == 403

        other = f"{server.public_id}.{admin_user.email}"
        assert attempt(node, other, ip="203.0.113.7").status_code == 200

    def test_made_up_server_ids_share_one_allowance_per_address(
        self, node: Node, username: str, owner: User
    ) -> None:
        for server_id in ("aaaaaaaaaa", "bbbbbbbbbb", "cccccccccc"):
            guess = f"{server_id}.{owner.email.upper()}"
            self.fail(node, guess, 1, ip="203.0.113.7")

        response = attempt(node, username, ip="203.0.113.7")

        assert response.json()["message"].startswith(
            f"Too many failed logins for {username}; try again in "
        )
        assert attempt(node, username, ip="203.0.113.8").status_code == 200

    def test_an_address_is_locked_out_from_every_ip_whatever_the_server(
        self, node: Node, username: str, owner: User
    ) -> None:
        for n in range(5):
            guess = f"server{n:04}.{owner.email}"
            self.fail(node, guess, 1, ip=f"203.0.113.{n + 10}")

        assert attempt(node, username, ip="198.51.100.1").status_code == 403
        assert SftpLogin.objects.first().result == SftpLogin.Result.THROTTLED

    @pytest.mark.parametrize("email", ["bob@example.org", "nobody@example.org"])
    def test_a_lockout_looks_the_same_whether_the_address_has_an_account(
        self, node: Node, email: str
    ) -> None:
        for server_id in ("aaaaaaaaaa", "bbbbbbbbbb", "cccccccccc"):
            self.fail(node, f"{server_id}.{email}", 1, ip="203.0.113.7")

        response = attempt(node, f"dddddddddd.{email}", ip="203.0.113.7")

        assert refused(
            response,
            f"Too many failed logins for dddddddddd.{email}; try again in 600 s.",
        )

    def test_a_username_without_an_address_is_counted_on_its_own(
        self, node: Node
    ) -> None:
        for _ in range(3):
            assert attempt(node, "no-dot-at-all", "wrong").status_code == 403

        response = attempt(node, "no-dot-at-all", ip="203.0.113.7")

        assert response.json()["message"].startswith("Too many failed logins")
        assert "the server ID, a dot" in attempt(node, "other").json()["message"]

    def test_an_attempt_counts_before_its_password_is_hashed(
        self, settings, monkeypatch, node: Node, username: str
    ) -> None:
        settings.SFTP_MAX_FAILURES_PER_ADDRESS = 1
        check_password = User.check_password
        meanwhile = []

        def hash_while_another_attempt_arrives(user: User, password: str) -> bool:
            if not meanwhile:
                meanwhile.append(None)
                meanwhile[0] = attempt(node, username, "wrong")
            return check_password(user, password)

        monkeypatch.setattr(User, "check_password", hash_while_another_attempt_arrives)

        assert refused(attempt(node, username, "wrong"))
        # The attempt made while the first was hashed counted the first as a failure.
        assert meanwhile[0].json()["message"].startswith("Too many failed logins")
        results = SftpLogin.objects.values_list("result", flat=True)
        assert sorted(results) == ["refused", "throttled"]

    def test_the_lockout_ends_when_the_failures_age_out(
        self, node: Node, username: str
    ) -> None:
        self.fail(node, username, 3, ip="203.0.113.7")
        assert attempt(node, username).status_code == 403
        # Attempts while locked out do not stretch the lockout.
        assert attempt(node, username).status_code == 403

        SftpLogin.objects.filter(result="refused").update(
            created=timezone.now() - timedelta(seconds=601)
        )

        assert attempt(node, username).status_code == 200

    def test_the_lockout_ends_by_itself_in_real_time(
        self, settings, node: Node, username: str
    ) -> None:
        settings.SFTP_FAILURE_WINDOW_S = 2
        self.fail(node, username, 3, ip="203.0.113.7")
        response = attempt(node, username)
        assert response.status_code == 403
        assert "try again in 2 s" in response.json()["message"]

        time.sleep(2.2)

        assert attempt(node, username).status_code == 200


@pytest.mark.django_db(transaction=True)
class TestParallelAttempts:
    def test_parallel_guesses_are_counted_before_any_password_is_hashed(
        self, settings, monkeypatch, node: Node, server: Server, owner: User
    ) -> None:
        if connection.vendor == "sqlite":
            pytest.skip("SQLite's in-memory test database refuses parallel writes")
        settings.SFTP_MAX_FAILURES_PER_ADDRESS = 3
        username = f"{server.public_id}.{owner.email}"
        start = threading.Barrier(8)
        lock = threading.Lock()
        hashed = []
        answers = []

        def slow_hash(user: User, password: str) -> bool:
            with lock:
                hashed.append(password)
            time.sleep(0.5)
            return False

        def guess(n: int) -> None:
            try:
                start.wait(timeout=10)
                response = attempt(node, username, f"guess {n}")
                with lock:
                    answers.append(response)
            finally:
                connection.close()

        monkeypatch.setattr(User, "check_password", slow_hash)
        threads = [threading.Thread(target=guess, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)

        # Only as many passwords were hashed as the limit allows; all were refused.
        assert len(hashed) <= 3
        assert len(answers) == 8
        assert all(response.status_code == 403 for response in answers)
        results = list(SftpLogin.objects.values_list("result", flat=True))
        assert results.count("refused") == len(hashed)
        assert results.count("throttled") == 8 - len(hashed)
