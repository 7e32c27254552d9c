"""An owner works on a server's files in Chromium, through Daphne and a real daemon."""

import sqlite3
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import install_on_daemon, running_daemon

# The panel under Daphne, its database and the personas, as the console flow has
# them.
from tests.e2e.test_console_flow import (  # noqa: F401
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


def test_it_uploads_edits_renames_downloads_and_deletes_a_file(
    page: Page,  # noqa: F811
    panel: Panel,  # noqa: F811
    setup: Setup,  # noqa: F811
    tmp_path: Path,
    artifacts: Path,
) -> None:
    with running_daemon(setup.node, tmp_path / "daemon", panel.url):
        install_on_daemon(setup.node, setup.config)
        panel.wait_for(lambda: panel.server_status(setup.server) == "offline")
        root = tmp_path / "daemon" / "servers" / setup.server
        work_on_files(page, panel, setup.server, root, artifacts)


def set_upload_limit(panel: Panel, megabytes: int) -> None:  # noqa: F811
    with sqlite3.connect(panel.database) as db:
        db.execute("UPDATE nodes_node SET upload_limit_mb = ?", (megabytes,))


def work_on_files(
    page: Page,  # noqa: F811
    panel: Panel,  # noqa: F811
    server: str,
    root: Path,
    artifacts: Path,
) -> None:
    log_in(page, "bob")
    page.goto(f"/servers/{server}/")
    page.get_by_role("link", name="Files", exact=True).click()
    files = page.get_by_role("region", name="File manager")
    expect(
        files.get_by_role("link", name="server.properties", exact=True)
    ).to_be_visible()

    # The page refuses what is over the limit before it sends a byte; a limit of
    # a few bytes stands in for the node's 100 MB here.
    upload = page.locator("form[data-upload]")
    upload.evaluate("form => { form.dataset.uploadLimit = '4'; }")
    page.get_by_label("Files to upload").set_input_files(
        [{"name": "big.txt", "mimeType": "text/plain", "buffer": b"too big"}]
    )
    page.get_by_role("button", name="Upload", exact=True).click()
    expect(upload.get_by_role("status")).to_contain_text(
        "over this node's upload limit of 100 MB"
    )
    assert not (root / "big.txt").exists()
    page.reload()

    # What the page lets through, the panel refuses before taking it in, and the
    # page shows the panel's reason: here the node's limit is lowered meanwhile.
    set_upload_limit(panel, 1)
    page.get_by_label("Files to upload").set_input_files(
        [
            {
                "name": "big.bin",
                "mimeType": "application/octet-stream",
                "buffer": b"x" * 2 * 1024 * 1024,
            }
        ]
    )
    page.get_by_role("button", name="Upload", exact=True).click()
    expect(upload.get_by_role("status")).to_contain_text(
        "over node local's upload limit of 1 MB"
    )
    assert not (root / "big.bin").exists()
    set_upload_limit(panel, 100)
    page.reload()

    # A proxy in front of the panel refuses with a page of its own; the status
    # still says what happened.
    proxy_page = "<html><body><h1>413 Request Entity Too Large</h1></body></html>"
    page.route(
        "**/files/upload/**",
        lambda route: route.fulfill(status=413, body=proxy_page),
    )
    page.get_by_label("Files to upload").set_input_files(
        [{"name": "small.txt", "mimeType": "text/plain", "buffer": b"small"}]
    )
    page.get_by_role("button", name="Upload", exact=True).click()
    expect(upload.get_by_role("status")).to_contain_text(
        "over the size the server in front of the panel accepts"
    )
    page.unroute("**/files/upload/**")
    page.reload()

    # Several files at once, with a progress bar; then the list shows them.
    page.get_by_label("Files to upload").set_input_files(
        [
            {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hello\n"},
            {"name": "motd.txt", "mimeType": "text/plain", "buffer": b"Welcome\n"},
        ]
    )
    page.locator("[data-upload-progress]").evaluate(
        """bar => new MutationObserver(() => {
            if (!bar.hidden) sessionStorage.progressShown = "yes";
        }).observe(bar, {attributes: true})"""
    )
    page.get_by_role("button", name="Upload", exact=True).click()
    expect(page.get_by_text("Uploaded notes.txt, motd.txt.")).to_be_visible()
    assert page.evaluate("sessionStorage.progressShown") == "yes"
    expect(files.get_by_role("link", name="notes.txt", exact=True)).to_be_visible()
    assert (root / "notes.txt").read_bytes() == b"hello\n"

    # Edit and save.
    files.get_by_role("link", name="notes.txt", exact=True).click()
    page.get_by_label("notes.txt").fill("hello world\nsecond line\n")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_text("Saved notes.txt.")).to_be_visible()
    assert (root / "notes.txt").read_bytes() == b"hello world\nsecond line\n"
    page.screenshot(path=artifacts / "file-editor.png", full_page=True)

    # Rename into a new folder: the list of that folder follows.
    page.get_by_role("link", name="Back to the folder").click()
    page.get_by_role("link", name="Rename or move notes.txt").click()
    page.get_by_label("New path").fill("docs/readme.txt")
    page.get_by_role("button", name="Rename", exact=True).click()
    expect(page.get_by_text("Renamed notes.txt to docs/readme.txt.")).to_be_visible()
    expect(files.get_by_role("link", name="readme.txt", exact=True)).to_be_visible()
    assert not (root / "notes.txt").exists()

    # Download it through the panel.
    with page.expect_download() as waiting:
        files.get_by_role("link", name="Download readme.txt").click()
    download = waiting.value
    assert download.suggested_filename == "readme.txt"
    assert Path(download.path()).read_bytes() == b"hello world\nsecond line\n"

    # Delete it, once confirmed.
    page.get_by_label("Select readme.txt").check()
    page.get_by_role("button", name="Delete selected").click()
    expect(page.get_by_role("heading", name="Delete 1 item?")).to_be_visible()
    page.get_by_role("button", name="Delete 1 item").click()
    expect(page.get_by_text("Deleted docs/readme.txt.")).to_be_visible()
    assert not (root / "docs" / "readme.txt").exists()

    # The breadcrumbs lead back up without a reload.
    page.evaluate("window.notReloaded = true")
    files.get_by_role("navigation", name="Folder").get_by_role(
        "link", name="survival"
    ).click()
    expect(files.get_by_role("link", name="motd.txt", exact=True)).to_be_visible()
    assert page.evaluate("window.notReloaded") is True
    page.screenshot(path=artifacts / "file-manager.png", full_page=True)
