import ipaddress
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from stellarpanel.environment import (
    channel_layer_from_url,
    database_from_url,
    envbool,
    envlist,
    envsecret,
    log_level,
    networks_from_list,
    panel_url,
    time_zone,
)

REPO_ROOT = Path(__file__).resolve().parents[2]

# The variables the settings read; the subprocess starts without them so that
# each case sees the development defaults plus its own change.
PANEL_VARIABLES = (
    "DEBUG",
    "SECRET_KEY",
    "SECRET_KEY_FILE",
    "ENCRYPTION_KEY",
    "PANEL_URL",
    "ALLOWED_HOSTS",
    "DAEMON_ALLOWED_NETWORKS",
    "TRUST_X_FORWARDED_PROTO",
    "LOG_LEVEL",
    "TIME_ZONE",
)
SECRET_KEY = "x" * 50


def manage_check(**changes: str | None) -> subprocess.CompletedProcess[str]:
    """Run `manage.py check` with changes to the environment; None removes one."""
    env = os.environ.copy()
    for name in PANEL_VARIABLES:
        env.pop(name, None)
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


class TestEnvironment:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("True", True),
            ("true", True),
            ("1", True),
            ("yes", True),
            ("ON", True),
            (" True ", True),
            ("False", False),
            ("false", False),
            ("0", False),
            ("no", False),
            ("off", False),
        ],
    )
    def test_it_reads_booleans(
        self, monkeypatch: pytest.MonkeyPatch, value: str, expected: bool
    ) -> None:
        monkeypatch.setenv("STELLARPANEL_TEST_FLAG", value)
        assert envbool("STELLARPANEL_TEST_FLAG", not expected) is expected

    @pytest.mark.parametrize("default", [True, False])
    def test_it_falls_back_to_the_default_boolean(
        self, monkeypatch: pytest.MonkeyPatch, default: bool
    ) -> None:
        monkeypatch.delenv("STELLARPANEL_TEST_FLAG", raising=False)
        assert envbool("STELLARPANEL_TEST_FLAG", default) is default
        monkeypatch.setenv("STELLARPANEL_TEST_FLAG", "  ")
        assert envbool("STELLARPANEL_TEST_FLAG", default) is default

    def test_it_refuses_a_boolean_it_cannot_read(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("STELLARPANEL_TEST_FLAG", "maybe")
        with pytest.raises(ImproperlyConfigured, match="STELLARPANEL_TEST_FLAG"):
            envbool("STELLARPANEL_TEST_FLAG", True)

    def test_it_splits_lists_on_commas(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("STELLARPANEL_TEST_LIST", " a, b,,c ,")
        assert envlist("STELLARPANEL_TEST_LIST", ["d"]) == ["a", "b", "c"]
        monkeypatch.setenv("STELLARPANEL_TEST_LIST", "")
        assert envlist("STELLARPANEL_TEST_LIST", ["d"]) == ["d"]

    def test_it_reads_a_relative_sqlite_url_from_the_base_dir(self) -> None:
        database = database_from_url(
            "DATABASE_URL", "sqlite:///db.sqlite3", "/srv/stellarpanel"
        )
        assert database["ENGINE"] == "stellarpanel.sqlite"
        assert database["NAME"] == "/srv/stellarpanel/db.sqlite3"

    def test_it_reads_an_absolute_sqlite_url(self) -> None:
        database = database_from_url(
            "DATABASE_URL", "sqlite:////tmp/x.db", "/srv/stellarpanel"
        )
        assert database["ENGINE"] == "stellarpanel.sqlite"
        assert database["NAME"] == "/tmp/x.db"

    @pytest.mark.parametrize("scheme", ["postgres", "postgresql"])
    def test_it_reads_a_postgres_url(self, scheme: str) -> None:
        database = database_from_url(
            "DATABASE_URL",
            f"{scheme}://u:p%40ss@h:5433/db?sslmode=require",
            "/srv/stellarpanel",
        )
        assert database == {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": "db",
            "USER": "u",
            "PASSWORD": "p@ss",
            "HOST": "h",
            "PORT": "5433",
            "OPTIONS": {"sslmode": "require"},
        }

    def test_it_leaves_the_postgres_port_empty_when_the_url_has_none(self) -> None:
        database = database_from_url("DATABASE_URL", "postgres://h/db", "/srv")
        assert (database["HOST"], database["PORT"]) == ("h", "")
        assert (database["USER"], database["PASSWORD"]) == ("", "")

    @pytest.mark.parametrize(
        ("url", "fragment"),
        [
            ("postgres://h/", "names no database"),
            ("postgres://h", "names no database"),
            ("postgres://u@h:notaport/db", "port"),
            ("postgres://u@h:70000/db", "port"),
            ("sqlite:///", "names no file"),
            ("mysql://u:p@h/db", "sqlite:/// or postgres://"),
            ("db.sqlite3", "sqlite:/// or postgres://"),
        ],
    )
    def test_it_refuses_a_database_url_it_cannot_use(
        self, url: str, fragment: str
    ) -> None:
        with pytest.raises(ImproperlyConfigured) as refused:
            database_from_url("DATABASE_URL", url, "/srv/stellarpanel")
        assert "DATABASE_URL" in str(refused.value)
        assert fragment in str(refused.value)

    def test_it_uses_the_in_memory_channel_layer_without_redis(self) -> None:
        assert channel_layer_from_url("REDIS_URL", "") == {
            "BACKEND": "stellarpanel.layers.MemoryChannelLayer"
        }

    @pytest.mark.parametrize(
        "url", ["redis://127.0.0.1:6379/0", "rediss://:secret@redis.example.com/1"]
    )
    def test_it_uses_redis_for_the_channel_layer(self, url: str) -> None:
        assert channel_layer_from_url("REDIS_URL", url) == {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [url]},
        }

    @pytest.mark.parametrize("url", ["http://x", "redis://", "127.0.0.1:6379"])
    def test_it_refuses_a_redis_url_it_cannot_use(self, url: str) -> None:
        with pytest.raises(ImproperlyConfigured, match="REDIS_URL"):
            channel_layer_from_url("REDIS_URL", url)

    @pytest.mark.parametrize(
        ("items", "expected"),
        [
            ([], []),
            (["10.0.0.0/8"], ["10.0.0.0/8"]),
            (["10.0.0.1/8"], ["10.0.0.0/8"]),
            (["fd00::/8"], ["fd00::/8"]),
            (["192.168.1.10", "fd00::/8"], ["192.168.1.10/32", "fd00::/8"]),
        ],
    )
    def test_it_reads_networks(self, items: list[str], expected: list[str]) -> None:
        networks = networks_from_list("DAEMON_ALLOWED_NETWORKS", items)
        assert networks == [ipaddress.ip_network(n) for n in expected]

    @pytest.mark.parametrize("item", ["nonsense", "10.0.0.0/33", "fd00::/129"])
    def test_it_refuses_a_network_it_cannot_read(self, item: str) -> None:
        with pytest.raises(ImproperlyConfigured) as refused:
            networks_from_list("DAEMON_ALLOWED_NETWORKS", ["10.0.0.0/8", item])
        assert "DAEMON_ALLOWED_NETWORKS" in str(refused.value)
        assert repr(item) in str(refused.value)

    @pytest.mark.parametrize(
        ("url", "expected"),
        [
            ("https://panel.example.com/", "https://panel.example.com"),
            ("https://panel.example.com", "https://panel.example.com"),
            ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
            ("https://example.com/panel/", "https://example.com/panel"),
        ],
    )
    def test_it_reads_the_panel_url(self, url: str, expected: str) -> None:
        assert panel_url("PANEL_URL", url) == expected

    @pytest.mark.parametrize(
        "url",
        [
            "ftp://x",
            "panel.example.com",
            "https://",
            "https://panel.example.com/?next=/",
            "https://panel.example.com/#top",
        ],
    )
    def test_it_refuses_a_panel_url_it_cannot_use(self, url: str) -> None:
        with pytest.raises(ImproperlyConfigured, match="PANEL_URL"):
            panel_url("PANEL_URL", url)

    @pytest.mark.parametrize(
        ("value", "expected"),
        [("INFO", "INFO"), ("debug", "DEBUG"), ("Warning", "WARNING")],
    )
    def test_it_reads_a_log_level(self, value: str, expected: str) -> None:
        assert log_level("LOG_LEVEL", value) == expected

    @pytest.mark.parametrize("value", ["verbose", "WARN", "10", ""])
    def test_it_refuses_a_log_level_it_does_not_know(self, value: str) -> None:
        with pytest.raises(ImproperlyConfigured) as refused:
            log_level("LOG_LEVEL", value)
        assert "LOG_LEVEL" in str(refused.value)
        assert "DEBUG, INFO, WARNING, ERROR, CRITICAL" in str(refused.value)

    @pytest.mark.parametrize("value", ["UTC", "Europe/Berlin", "America/New_York"])
    def test_it_reads_a_time_zone(self, value: str) -> None:
        assert time_zone("TIME_ZONE", value) == value

    @pytest.mark.parametrize(
        "value", ["Mars/Base", "utc", "Europe/", "../etc/passwd", "/etc/localtime"]
    )
    def test_it_refuses_a_time_zone_it_does_not_know(self, value: str) -> None:
        with pytest.raises(ImproperlyConfigured) as refused:
            time_zone("TIME_ZONE", value)
        assert "TIME_ZONE" in str(refused.value)
        assert repr(value) in str(refused.value)

    def test_it_reads_a_secret_from_the_variable(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("STELLARPANEL_TEST_SECRET_FILE", raising=False)
        monkeypatch.setenv("STELLARPANEL_TEST_SECRET", " s3cret ")
        assert envsecret("STELLARPANEL_TEST_SECRET") == "s3cret"
        monkeypatch.delenv("STELLARPANEL_TEST_SECRET")
        assert envsecret("STELLARPANEL_TEST_SECRET") == ""

    def test_it_reads_a_secret_from_the_file_before_the_variable(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        secret = tmp_path / "secret"
        secret.write_text("from-the-file\n", encoding="utf-8")
        monkeypatch.setenv("STELLARPANEL_TEST_SECRET", "from-the-variable")
        monkeypatch.setenv("STELLARPANEL_TEST_SECRET_FILE", str(secret))
        assert envsecret("STELLARPANEL_TEST_SECRET") == "from-the-file"

    def test_it_refuses_a_secret_file_it_cannot_read(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        missing = tmp_path / "missing"
        monkeypatch.setenv("STELLARPANEL_TEST_SECRET_FILE", str(missing))
        with pytest.raises(ImproperlyConfigured) as refused:
            envsecret("STELLARPANEL_TEST_SECRET")
        assert "STELLARPANEL_TEST_SECRET_FILE" in str(refused.value)
        assert str(missing) in str(refused.value)


class TestStartUp:
    @pytest.mark.parametrize(
        ("changes", "variable"),
        [
            ({"DEBUG": "maybe"}, "DEBUG"),
            ({"DATABASE_URL": "mysql://x/y"}, "DATABASE_URL"),
            ({"REDIS_URL": "http://x"}, "REDIS_URL"),
            ({"DAEMON_ALLOWED_NETWORKS": "10.0.0.0/33"}, "DAEMON_ALLOWED_NETWORKS"),
            ({"PANEL_URL": "panel.example.com"}, "PANEL_URL"),
            ({"DEBUG": "False"}, "SECRET_KEY"),
            ({"DEBUG": "False", "SECRET_KEY": ""}, "SECRET_KEY"),
            ({"DEBUG": "False", "SECRET_KEY": SECRET_KEY}, "ENCRYPTION_KEY"),
            ({"ENCRYPTION_KEY": "notakey"}, "ENCRYPTION_KEY"),
            ({"LOG_LEVEL": "verbose"}, "LOG_LEVEL"),
            ({"TIME_ZONE": "Mars/Base"}, "TIME_ZONE"),
        ],
        ids=[
            "debug",
            "database-url",
            "redis-url",
            "allowed-networks",
            "panel-url",
            "secret-key",
            "secret-key-blank",
            "encryption-key-missing",
            "encryption-key-malformed",
            "log-level",
            "time-zone",
        ],
    )
    def test_it_stops_with_a_message_naming_the_variable(
        self, changes: dict[str, str], variable: str
    ) -> None:
        result = manage_check(**changes)
        assert result.returncode != 0
        assert variable in result.stderr
        assert "Traceback" not in result.stderr

    def test_it_starts_in_development_with_a_blank_secret_key(self) -> None:
        result = manage_check(DEBUG="True", SECRET_KEY="")
        assert result.returncode == 0, result.stderr

    def test_it_starts_in_production_with_every_required_setting(self) -> None:
        result = manage_check(
            DEBUG="False",
            SECRET_KEY=SECRET_KEY,
            ENCRYPTION_KEY=Fernet.generate_key().decode(),
            ALLOWED_HOSTS="panel.example.com",
        )
        assert result.returncode == 0, result.stderr
