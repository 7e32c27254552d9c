"""Browser fixtures for the end-to-end tests: Debian's Chromium, driven by Playwright.

Playwright's sync API keeps an asyncio loop marked as running in the main thread for
as long as Playwright is started, and Django's ORM refuses to run under a running
loop. The tests here call the ORM from the main thread on purpose (to look at what
the panel stored), so DJANGO_ALLOW_ASYNC_UNSAFE is set for exactly as long as
Playwright runs, and Playwright is started once per test module rather than per
session: a session-wide loop would stay "running" through every later test in the
run (the rest of the suite, including any async tests) and the ORM guard would
have to be switched off for all of them.
"""

import ipaddress
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright
from pytest_django.fixtures import Settings
from pytest_django.live_server_helper import LiveServer

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
]
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
TIMEOUT_MS = 10_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the tests of a module."""
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def daemon_on_loopback(settings: Settings) -> None:
    """Let nodes live on 127.0.0.0/8, as a one-machine test install would."""
    settings.DAEMON_ALLOWED_NETWORKS = [ipaddress.ip_network("127.0.0.0/8")]


@pytest.fixture
def context(browser: Browser, live_server: LiveServer) -> Iterator[BrowserContext]:
    """A fresh browser profile that may use the clipboard on the live server."""
    context = browser.new_context(base_url=live_server.url, accept_downloads=True)
    context.grant_permissions(
        ["clipboard-read", "clipboard-write"], origin=live_server.url
    )
    context.set_default_timeout(TIMEOUT_MS)
    yield context
    context.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


@pytest.fixture
def artifacts() -> Path:
    """Where screenshots go for a human to look at (git-ignored)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def start_daphne(env: dict[str, str], port: int, log: Path) -> subprocess.Popen:
    """The panel under Daphne on 127.0.0.1:`port`, as production serves it."""
    with log.open("wb") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "daphne", "--bind", "127.0.0.1", "--port"]
            + [str(port), "stellarpanel.asgi:application"],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
