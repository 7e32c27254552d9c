"""The production settings the README documents pass `check --deploy`; /healthz."""

import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
from cryptography.fernet import Fernet
from django.db import OperationalError
from django.test import Client

from tests.conftest import ROOT

# Every variable that changes what `check --deploy` sees; each case starts without.
DEPLOY_VARIABLES = (
    "DEBUG",
    "SECRET_KEY",
    "SECRET_KEY_FILE",
    "ENCRYPTION_KEY",
    "ENCRYPTION_KEY_FILE",
    "PANEL_URL",
    "ALLOWED_HOSTS",
    "TRUST_X_FORWARDED_PROTO",
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
)


def production_env(tmp_path: Path, **changes: str | None) -> dict[str, str]:
    """The README's production environment, secrets in files as Compose has them."""
    secret_key = tmp_path / "secret_key"
    secret_key.write_text("p" * 30 + "-Production-Secret-Key-" + "q" * 30 + "\n")
    encryption_key = tmp_path / "encryption_key"
    encryption_key.write_text(Fernet.generate_key().decode() + "\n")
    env = {k: v for k, v in os.environ.items() if k not in DEPLOY_VARIABLES}
    env |= {
        "DEBUG": "False",
        "SECRET_KEY_FILE": str(secret_key),
        "ENCRYPTION_KEY_FILE": str(encryption_key),
        "PANEL_URL": "https://panel.example.com",
        "ALLOWED_HOSTS": "panel.example.com",
        "TRUST_X_FORWARDED_PROTO": "True",
        "SECURE_HSTS_PRELOAD": "True",
    }
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def check_deploy(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


class TestCheckDeploy:
    def test_it_passes_with_the_documented_production_settings(
        self, tmp_path: Path
    ) -> None:
        result = check_deploy(production_env(tmp_path))
        assert result.returncode == 0, result.stdout + result.stderr
        assert "System check identified no issues" in result.stdout
        assert "WARNINGS" not in result.stdout + result.stderr

    def test_it_passes_with_the_secrets_in_the_environment(
        self, tmp_path: Path
    ) -> None:
        env = production_env(
            tmp_path,
            SECRET_KEY_FILE=None,
            ENCRYPTION_KEY_FILE=None,
            SECRET_KEY="s" * 25 + "-Another-Production-Key-" + "t" * 25,
            ENCRYPTION_KEY=Fernet.generate_key().decode(),
        )
        result = check_deploy(env)
        assert result.returncode == 0, result.stdout + result.stderr

    def test_it_warns_without_https(self, tmp_path: Path) -> None:
        result = check_deploy(production_env(tmp_path, PANEL_URL="http://panel:8000"))

        # Plain HTTP: no redirect, no HSTS, cookies that travel in the clear.
        assert result.returncode == 1
        for check in ("W004", "W008", "W012", "W016"):
            assert f"security.{check}" in result.stderr

    def test_it_warns_about_each_https_setting_turned_off(self, tmp_path: Path) -> None:
        env = production_env(
            tmp_path,
            SECURE_SSL_REDIRECT="False",
            SECURE_HSTS_INCLUDE_SUBDOMAINS="False",
            SECURE_HSTS_PRELOAD=None,
        )
        result = check_deploy(env)
        assert result.returncode == 1
        for check in ("W008", "W005", "W021"):
            assert f"security.{check}" in result.stderr

    def test_it_names_a_bad_hsts_value(self, tmp_path: Path) -> None:
        result = check_deploy(production_env(tmp_path, SECURE_HSTS_SECONDS="a year"))
        assert result.returncode == 1
        assert "SECURE_HSTS_SECONDS must be a whole number" in result.stderr
        assert "Traceback" not in result.stderr


@pytest.mark.django_db
class TestHealthz:
    def test_it_answers_ok_when_the_database_answers(self, client: Client) -> None:
        response = client.get("/healthz")
        assert response.status_code == 200
        assert response.content == b"ok"
        assert response["Content-Type"].startswith("text/plain")
        assert "no-cache" in response["Cache-Control"]
        assert not response.cookies

    def test_it_says_unavailable_and_nothing_more_without_the_database(
        self, client: Client
    ) -> None:
        failure = OperationalError('could not connect to "db.internal" as "panel"')
        with mock.patch("stellarpanel.health.connection.cursor", side_effect=failure):
            response = client.get("/healthz")
        assert response.status_code == 503
        assert response.content == b"unavailable"

    def test_it_answers_over_plain_http_when_the_rest_redirects(
        self, settings, client: Client
    ) -> None:
        settings.SECURE_SSL_REDIRECT = True
        assert client.get("/healthz").status_code == 200
        assert client.get("/login/").status_code == 301

    def test_it_refuses_anything_but_get(self, client: Client) -> None:
        assert client.post("/healthz").status_code == 405
