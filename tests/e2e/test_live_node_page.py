"""The node page's heartbeat line in Chromium, kept fresh by the panel's sweeps."""

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import running_daemon
from tests.e2e.test_console_flow import (  # noqa: F401  (fixtures)
    Panel,
    Setup,
    context,
    log_in,
    page,
    panel,
    panel_environment,
    setup,
)

pytestmark = pytest.mark.usefixtures("daemon_on_loopback")

ANSWERED = re.compile(r"^answered \d+ s ago$")


def test_it_updates_the_last_answer_without_a_reload(
    page: Page,  # noqa: F811
    panel: Panel,  # noqa: F811
    setup: Setup,  # noqa: F811
    tmp_path: Path,
    artifacts: Path,
) -> None:
    node = setup.node.pk
    log_in(page, "alice")
    page.goto(f"/admin/nodes/{node}/")
    age = page.locator(f"[data-node-id='{node}'][data-node-heartbeat]")
    expect(age).to_have_text("No heartbeat yet")
    page.evaluate("window.notReloaded = true")

    with running_daemon(setup.node, tmp_path / "daemon", panel.url):
        # The first answer the heartbeat records replaces the line in place.
        expect(age).to_have_text(ANSWERED, timeout=20_000)
        expect(page.locator("h1 [data-node-status]")).to_have_text("Online")
        first = age.locator("time").get_attribute("datetime")

        # And each later one moves it on.
        expect(age.locator("time")).not_to_have_attribute(
            "datetime", first or "", timeout=20_000
        )
        expect(age).to_have_text(ANSWERED)
        page.screenshot(path=artifacts / "node-live-heartbeat.png", full_page=True)

    assert page.evaluate("window.notReloaded") is True
