"""createadmin and nodestatus, called in-process and, for their errors, as commands."""

import os
import subprocess
import sys
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth import authenticate
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from nodes.models import Node, NodeStatusChange
from tests.conftest import PASSWORD, ROOT, make_node

pytestmark = pytest.mark.django_db


def run(*args: str, **options: object) -> str:
    out = StringIO()
    call_command(*args, stdout=out, **options)
    return out.getvalue()


@pytest.fixture
def no_password_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STELLAR_ADMIN_PASSWORD", raising=False)


@pytest.fixture(scope="module")
def migrated_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of a panel on a migrated SQLite file of its own."""
    folder = tmp_path_factory.mktemp("commands")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SECRET_KEY", "ENCRYPTION_KEY", "STELLAR_"))
    }
    env |= {
        "DATABASE_URL": f"sqlite:///{folder / 'db.sqlite3'}",
        "DEBUG": "False",
        "SECRET_KEY": "commands-test-" + "x" * 40,
        "ENCRYPTION_KEY": Fernet.generate_key().decode(),
    }
    env.pop("REDIS_URL", None)
    migrate = manage(env, "migrate", "--no-input")
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    return env


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


class TestCreateAdmin:
    def test_it_creates_an_admin_with_a_generated_password_shown_once(
        self, no_password_variable: None
    ) -> None:
        out = run("createadmin", username="root", email="root@example.org")

        # An active superuser, who logs in with the password printed.
        user = User.objects.get(username="root")
        assert (user.is_staff, user.is_superuser, user.is_active) == (True,) * 3
        assert user.email == "root@example.org"
        assert "Admin root was created." in out
        password = out.split("Password: ")[1].split()[0]
        assert authenticate(username="root", password=password) == user

    def test_it_reads_the_password_from_a_file(
        self, tmp_path: Path, no_password_variable: None
    ) -> None:
        secret = tmp_path / "password"
        secret.write_text(PASSWORD + "\n")
        out = run(
            "createadmin",
            username="root",
            email="root@example.org",
            password_file=secret,
        )

        # The file's first line is the password, and it is not printed.
        assert authenticate(username="root", password=PASSWORD) is not None
        assert PASSWORD not in out
        assert "Password:" not in out

    def test_it_reads_the_password_from_the_environment(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("STELLAR_ADMIN_PASSWORD", PASSWORD)
        out = run("createadmin", username="root", email="root@example.org")
        assert authenticate(username="root", password=PASSWORD) is not None
        assert PASSWORD not in out

    def test_it_refuses_an_existing_user_without_update(
        self, monkeypatch: pytest.MonkeyPatch, owner: User
    ) -> None:
        monkeypatch.setenv("STELLAR_ADMIN_PASSWORD", "a brand new passphrase")
        with pytest.raises(CommandError, match="already exists. Pass --update"):
            run("createadmin", username="bob", email="bob@example.org")

        # Nothing changed: bob is no admin, and keeps his password.
        owner.refresh_from_db()
        assert not owner.is_staff
        assert owner.check_password(PASSWORD)

    def test_it_makes_an_existing_user_an_admin_with_update(
        self, monkeypatch: pytest.MonkeyPatch, owner: User
    ) -> None:
        monkeypatch.setenv("STELLAR_ADMIN_PASSWORD", "a brand new passphrase")
        out = run("createadmin", "--update", username="bob", email="bob@example.org")
        owner.refresh_from_db()
        assert "Admin bob was updated." in out
        assert owner.is_staff and owner.is_superuser
        assert owner.check_password("a brand new passphrase")

    @pytest.mark.parametrize(
        ("options", "message"),
        [
            ({"username": "root", "email": "root"}, "--email 'root' is not an e-mail"),
            ({"username": "a b", "email": "a@example.org"}, "--username 'a b'"),
            ({"username": " ", "email": "a@example.org"}, "--username is empty"),
        ],
    )
    def test_it_refuses_a_bad_username_or_email(
        self, no_password_variable: None, options: dict, message: str
    ) -> None:
        with pytest.raises(CommandError, match=message):
            run("createadmin", **options)
        assert not User.objects.exists()

    def test_it_refuses_a_weak_password(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("STELLAR_ADMIN_PASSWORD", "12345678")
        with pytest.raises(CommandError, match="The password is refused: .*common"):
            run("createadmin", username="root", email="root@example.org")
        assert not User.objects.exists()

    def test_it_refuses_an_unreadable_or_empty_password_file(
        self, tmp_path: Path, no_password_variable: None
    ) -> None:
        with pytest.raises(CommandError, match="--password-file .* cannot be read"):
            run(
                "createadmin",
                username="root",
                email="root@example.org",
                password_file=tmp_path / "missing",
            )
        empty = tmp_path / "empty"
        empty.write_text("")
        with pytest.raises(CommandError, match="--password-file .* is empty"):
            run(
                "createadmin",
                username="root",
                email="root@example.org",
                password_file=empty,
            )

    def test_it_refuses_an_email_another_user_has(
        self, no_password_variable: None, owner: User
    ) -> None:
        with pytest.raises(CommandError, match="Another user already has"):
            run("createadmin", username="root", email="BOB@example.org")

    def test_it_says_what_is_wrong_without_a_traceback(
        self, migrated_env: dict[str, str]
    ) -> None:
        env = migrated_env | {"STELLAR_ADMIN_PASSWORD": PASSWORD}
        first = manage(env, "createadmin", "--username", "ops", "--email", "o@x.org")
        assert first.returncode == 0, first.stderr
        again = manage(env, "createadmin", "--username", "ops", "--email", "o@x.org")
        bad = manage(env, "createadmin", "--username", "x", "--email", "nope")

        # Each error is one sentence on stderr and exit status 1.
        for result, says in ((again, "already exists"), (bad, "not an e-mail")):
            assert result.returncode == 1
            assert says in result.stderr
            assert "Traceback" not in result.stderr


class TestNodeStatus:
    def test_it_lists_every_node_in_a_table(self) -> None:
        alpha = make_node(
            "alpha",
            status=Node.Status.ONLINE,
            latency_ms=12,
            last_heartbeat=timezone.now() - timedelta(seconds=20),
        )
        make_node("beta", host="203.0.113.20")
        NodeStatusChange.objects.create(
            node=alpha,
            old="offline",
            new="online",
            created=alpha.created,
        )
        out = run("nodestatus").splitlines()

        # A header, then a row a node by name, with what the heartbeat knows.
        assert out[0].split("  ")[0] == "name"
        assert out[0].endswith("uptime 24 h")
        assert out[1].split()[:4] == ["alpha", "online", "12", "ms"]
        assert "20 s ago" in out[1] or "21 s ago" in out[1]
        assert out[1].endswith("%")
        assert out[2].split()[:4] == ["beta", "offline", "—", "never"]
        assert out[2].endswith("0.0 %")

    def test_it_says_when_there_are_no_nodes(self) -> None:
        assert "No nodes yet" in run("nodestatus")

    def test_it_shows_one_nodes_history_warnings_and_advice(self) -> None:
        node = make_node(
            "alpha",
            latency_history=[10, 20, 90],
            last_heartbeat=timezone.now() - timedelta(minutes=5),
            last_error_category="refused",
            last_error="Connection refused",
            clock_offset_s=45.0,
        )
        now = timezone.now()
        NodeStatusChange.objects.create(
            node=node, old="offline", new="online", created=now - timedelta(hours=1)
        )
        NodeStatusChange.objects.create(
            node=node,
            old="online",
            new="offline",
            reason="refused",
            message="Connection refused",
            created=now - timedelta(minutes=4),
        )

        for name_or_id in ("alpha", "ALPHA", str(node.pk)):
            out = run("nodestatus", name_or_id)

            # Its state, its latencies and its changes, newest first.
            assert f"alpha (id {node.pk}), https://203.0.113.10:8080" in out
            assert "last answer:  5 min ago" in out
            assert "last error:   refused: Connection refused" in out
            assert "min 10, mean 40, max 90" in out
            assert "10 20 90" in out
            assert out.index("online → offline (refused") < out.index(
                "offline → online"
            )
            # What looks wrong, and what to check.
            assert "Warnings:" in out and "45 s ahead of the panel's" in out
            assert "What to check:" in out and "Nothing accepts connections" in out

    def test_it_refuses_an_unknown_node(self) -> None:
        make_node("alpha")
        with pytest.raises(CommandError, match="No node has the name or id 'gamma'"):
            run("nodestatus", "gamma")

    def test_it_asks_for_the_id_when_two_nodes_share_a_name(self) -> None:
        make_node("alpha")
        make_node("alpha", host="203.0.113.20")
        with pytest.raises(CommandError, match="2 nodes are named 'alpha' .*give"):
            run("nodestatus", "alpha")

    def test_it_says_an_unknown_node_without_a_traceback(
        self, migrated_env: dict[str, str]
    ) -> None:
        result = manage(migrated_env, "nodestatus", "gamma")
        assert result.returncode == 1
        assert "No node has the name or id 'gamma'" in result.stderr
        assert "Traceback" not in result.stderr
