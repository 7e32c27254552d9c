"""Smoke test: the panel really serves HTTP under Daphne, static files included."""

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet

from tests.conftest import stop

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def panel_env(tmp_path: Path) -> dict[str, str]:
    """A production-like environment with its own SQLite file and no Redis."""
    env = os.environ.copy()
    for name in (
        "REDIS_URL",
        "SECRET_KEY_FILE",
        "PANEL_URL",
        "ALLOWED_HOSTS",
        "DJANGO_ALLOW_ASYNC_UNSAFE",
    ):
        env.pop(name, None)
    env |= {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "DEBUG": "False",
        "SECRET_KEY": "asgi-smoke-test-" + "x" * 40,
        "ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "DJANGO_SETTINGS_MODULE": "stellarpanel.settings",
    }
    return env


def wait_until_serving(
    process: subprocess.Popen[bytes], base_url: str, log: Path
) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"daphne exited with {process.returncode}:\n{log.read_text()}")
        try:
            httpx.get(base_url + "/login/", timeout=1.0)
        except httpx.TransportError:
            time.sleep(0.25)
        else:
            return
    pytest.fail(
        f"daphne did not answer within {START_TIMEOUT:.0f} s:\n{log.read_text()}"
    )


@pytest.fixture
def daphne_url(tmp_path: Path) -> Iterator[str]:
    """Migrate a fresh database, start Daphne on it, and yield its base URL."""
    env = panel_env(tmp_path)
    migrate = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr

    port = free_port()
    log = tmp_path / "daphne.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "daphne",
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "stellarpanel.asgi:application",
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        base_url = f"http://127.0.0.1:{port}"
        wait_until_serving(process, base_url, log)
        yield base_url
    finally:
        stop(process)


@pytest.fixture
def http(daphne_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=daphne_url, follow_redirects=False, timeout=10.0
    ) as client:
        yield client


def test_it_serves_pages_redirects_and_static_files_under_daphne(
    http: httpx.Client,
) -> None:
    home = http.get("/")
    assert home.status_code == 302
    assert home.headers["location"] == "/servers/"

    servers = http.get("/servers/")
    assert servers.status_code == 302
    assert servers.headers["location"].startswith("/login/")

    login = http.get("/login/")
    assert login.status_code == 200
    assert 'name="csrfmiddlewaretoken"' in login.text

    css = http.get("/static/css/panel.css")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")

    htmx = http.get("/static/django_htmx/htmx-2.min.js")
    assert htmx.status_code == 200
    assert htmx.content

    nodes = http.get("/admin/nodes/")
    assert nodes.status_code == 302
    assert nodes.headers["location"] == "/login/?next=/admin/nodes/"
