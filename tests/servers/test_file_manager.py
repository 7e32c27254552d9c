"""The file manager's views, against a real development daemon."""

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from nodes.models import Node
from servers.models import Server
from tests.servers.conftest import install, make_server

JSON = {"HTTP_ACCEPT": "application/json"}
MIB = 1024 * 1024


@pytest.fixture
def server(daemon_node: Node, owner: User) -> Server:
    server = make_server(daemon_node, owner)
    install(daemon_node, server)
    return server


@pytest.fixture
def root(server: Server, tmp_path: Path) -> Path:
    """The server's directory, as the daemon keeps it under its data_dir."""
    return tmp_path / "daemon" / "servers" / server.public_id


@pytest.fixture
def outsider_client(outsider: User) -> Client:
    client = Client()
    client.force_login(outsider)
    return client


def url(server: Server, route: str = "") -> str:
    return f"/servers/{server.public_id}/files/{route}"


def text(response) -> str:
    return response.content.decode()


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def upload(client: Client, server: Server, *files: tuple[str, bytes], **extra):
    directory = extra.pop("directory", "")
    query = f"?directory={directory}" if directory else ""
    parts = [SimpleUploadedFile(name, content) for name, content in files]
    return client.post(url(server, "upload/") + query, {"files": parts}, **extra)


def every_route(server: Server) -> Iterator[tuple[str, str, dict]]:
    yield "get", url(server), {}
    yield "get", url(server, "edit/") + "?file=eula.txt", {}
    yield "post", url(server, "edit/"), {"file": "eula.txt", "content": "x"}
    yield "get", url(server, "rename/") + "?from=eula.txt", {}
    yield "post", url(server, "rename/"), {"from": "eula.txt", "to": "b.txt"}
    yield "get", url(server, "download/") + "?file=eula.txt", {}
    yield "post", url(server, "new/"), {"name": "a.txt", "kind": "file"}
    yield "post", url(server, "delete/"), {"paths": ["eula.txt"], "confirm": "1"}
    yield "post", url(server, "upload/"), {"files": SimpleUploadedFile("a", b"a")}


class TestFileManager:
    def test_it_lists_a_folder_under_its_breadcrumbs(
        self, owner_client: Client, server: Server, root: Path
    ) -> None:
        (root / "plugins" / "essentials").mkdir(parents=True)
        (root / "plugins" / "essentials" / "config.yml").write_text("motd: hi\n")

        # The server's directory holds what the install wrote, folders first.
        r = owner_client.get(url(server))
        assert r.status_code == 200
        names = [e["name"] for e in r.context["entries"]]
        assert names == ["plugins", "eula.txt", "gameserver.py", "server.properties"]
        assert f'href="{url(server)}?directory=plugins"' in text(r)
        assert "Folder" in text(r) and "10\xa0bytes" in text(r)  # eula=true\n

        # A folder deep down shows each folder above it as a link.
        r = owner_client.get(url(server) + "?directory=plugins/essentials")
        assert r.context["crumbs"] == [
            ("plugins", "plugins"),
            ("essentials", "plugins/essentials"),
        ]
        assert f'href="{url(server)}?directory=plugins"' in text(r)
        assert "config.yml" in text(r) and "9\xa0bytes" in text(r)

        # htmx asks for the manager only, not the whole page.
        r = owner_client.get(url(server) + "?directory=plugins", HTTP_HX_REQUEST="true")
        assert "<html" not in text(r) and "essentials/" in text(r)

    def test_it_shows_when_each_entry_was_modified(
        self, owner_client: Client, server: Server, root: Path, settings
    ) -> None:
        settings.TIME_ZONE = "Europe/Berlin"
        moment = datetime(2024, 5, 1, 12, 34, 56, tzinfo=UTC).timestamp()
        os.utime(root / "eula.txt", (moment, moment))

        # Machines read the moment; people read it in the panel's time zone.
        r = owner_client.get(url(server))
        assert (
            '<time datetime="2024-05-01T14:34:56+02:00">2024-05-01 14:34</time>'
        ) in text(r)

    def test_it_lets_an_admin_browse_too(
        self, admin_client: Client, server: Server
    ) -> None:
        r = admin_client.get(url(server))
        assert r.status_code == 200 and "server.properties" in text(r)

    def test_it_opens_edits_and_saves_a_text_file(
        self, owner_client: Client, server: Server, root: Path
    ) -> None:
        r = owner_client.get(url(server, "edit/") + "?file=server.properties")
        assert r.status_code == 200
        assert "server-port=" in r.context["content"]
        assert '<textarea id="files-content" name="content"' in text(r)

        # Browsers send a textarea's lines with CRLF; the file keeps its LF.
        r = owner_client.post(
            url(server, "edit/"),
            {
                "file": "server.properties",
                "content": "motd=Hi\r\npvp=false\r\n",
                "newline": "lf",
            },
            follow=True,
        )
        assert "Saved server.properties." in messages_of(r)
        assert (root / "server.properties").read_bytes() == b"motd=Hi\npvp=false\n"

    def test_it_keeps_the_crlf_line_ends_of_a_file(
        self, owner_client: Client, server: Server, root: Path
    ) -> None:
        (root / "start.bat").write_bytes(b"@echo off\r\njava -jar server.jar\r\n")
        r = owner_client.get(url(server, "edit/") + "?file=start.bat")
        assert r.context["newline"] == "crlf"
        owner_client.post(
            url(server, "edit/"),
            {"file": "start.bat", "content": "@echo on\r\n", "newline": "crlf"},
        )
        assert (root / "start.bat").read_bytes() == b"@echo on\r\n"

    def test_it_creates_files_and_folders(
        self, owner_client: Client, server: Server, root: Path
    ) -> None:
        r = owner_client.post(
            url(server, "new/"), {"directory": "", "name": "world", "kind": "folder"}
        )
        assert r["Location"] == url(server) + "?directory=world"
        assert (root / "world").is_dir()

        # A new file opens in the editor.
        r = owner_client.post(
            url(server, "new/"),
            {"directory": "world", "name": "notes.txt", "kind": "file"},
        )
        assert r["Location"] == url(server, "edit/") + "?file=world%2Fnotes.txt"
        assert (root / "world" / "notes.txt").read_bytes() == b""

    def test_it_creates_a_file_in_folders_that_do_not_exist_yet(
        self, owner_client: Client, server: Server, root: Path
    ) -> None:
        r = owner_client.post(
            url(server, "new/"),
            {"directory": "config", "name": "essentials/motd.txt", "kind": "file"},
            follow=True,
        )
        assert messages_of(r) == ["Created config/essentials/motd.txt."]
        assert r.context["content"] == ""
        assert (root / "config" / "essentials" / "motd.txt").read_bytes() == b""

        # A file in the way of a folder is no folder; the daemon says so.
        r = owner_client.post(
            url(server, "new/"), {"name": "eula.txt/motd.txt", "kind": "file"}
        )
        r = owner_client.get(r["Location"])
        assert messages_of(r)[0].startswith("The daemon on node local refused:")
        assert (root / "eula.txt").read_text() == "eula=true\n"

    def test_it_does_not_create_a_file_over_another(
        self, owner_client: Client, server: Server, root: Path
    ) -> None:
        r = owner_client.post(
            url(server, "new/"), {"name": "eula.txt", "kind": "file"}, follow=True
        )
        assert messages_of(r) == ["name: eula.txt already exists; choose another name."]
        assert (root / "eula.txt").read_text() == "eula=true\n"

    def test_it_renames_and_moves(
        self, owner_client: Client, server: Server, root: Path
    ) -> None:
        r = owner_client.get(url(server, "rename/") + "?from=eula.txt")
        assert 'value="eula.txt"' in text(r)

        r = owner_client.post(
            url(server, "rename/"), {"from": "eula.txt", "to": "eula-old.txt"}
        )
        assert r.status_code == 302
        assert not (root / "eula.txt").exists()
        assert (root / "eula-old.txt").read_text() == "eula=true\n"

        # A new path in another folder moves it there, and shows that folder.
        r = owner_client.post(
            url(server, "rename/"), {"from": "eula-old.txt", "to": "old/eula.txt"}
        )
        assert r["Location"] == url(server) + "?directory=old"
        assert (root / "old" / "eula.txt").exists()

        # A taken name is refused with the daemon's reason.
        r = owner_client.post(
            url(server, "rename/"), {"from": "gameserver.py", "to": "server.properties"}
        )
        assert "the new name is taken" in r.context["trouble"]

    def test_it_deletes_several_once_confirmed(
        self, owner_client: Client, server: Server, root: Path
    ) -> None:
        (root / "logs").mkdir()
        (root / "logs" / "latest.log").write_text("x")
        chosen = {"directory": "", "paths": ["eula.txt", "logs"]}

        # First the user is asked, and nothing is gone yet.
        r = owner_client.post(url(server, "delete/"), chosen)
        assert r.status_code == 200
        assert "Delete 2 items?" in text(r) and "logs" in text(r)
        assert (root / "eula.txt").exists() and (root / "logs").exists()

        r = owner_client.post(
            url(server, "delete/"), chosen | {"confirm": "1"}, follow=True
        )
        assert r.redirect_chain == [(url(server), 302)]
        assert messages_of(r) == ["Deleted 2 items."]
        assert not (root / "eula.txt").exists() and not (root / "logs").exists()
        assert (root / "server.properties").exists()

        r = owner_client.post(url(server, "delete/"), {"confirm": "1"}, follow=True)
        assert messages_of(r) == ["paths: tick at least one file or folder to delete."]

    # The test client speaks WSGI, so Django gathers the async stream for it;
    # Daphne iterates it as it comes.
    @pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume")
    def test_it_streams_a_download_as_an_attachment(
        self, owner_client: Client, server: Server, root: Path
    ) -> None:
        content = os.urandom(3 * MIB + 5)
        (root / "world.dat").write_bytes(content)
        r = owner_client.get(url(server, "download/") + "?file=world.dat")
        assert r.status_code == 200 and r.streaming
        assert r["Content-Disposition"] == 'attachment; filename="world.dat"'
        assert b"".join(r) == content

        # A folder, or nothing, is no download; the list says why.
        r = owner_client.get(url(server, "download/") + "?file=nothing", follow=True)
        assert messages_of(r) == [
            f"The daemon on node {server.node.name} refused: no such file"
        ]

    def test_it_uploads_several_files(
        self, owner_client: Client, server: Server, root: Path
    ) -> None:
        (root / "plugins").mkdir()
        r = upload(
            owner_client,
            server,
            ("a.jar", b"A" * 1000),
            ("b.yml", b"b: 1\n"),
            directory="plugins",
            **JSON,
        )
        assert r.status_code == 200, r.content
        assert r.json() == {
            "message": "Uploaded a.jar, b.yml.",
            "location": url(server) + "?directory=plugins",
        }
        assert (root / "plugins" / "a.jar").read_bytes() == b"A" * 1000
        assert (root / "plugins" / "b.yml").read_bytes() == b"b: 1\n"

        # Without the page's script, the form lands back on the list.
        r = upload(owner_client, server, ("Spawn ünï.txt", b"c"), follow=True)
        assert "Uploaded Spawn ünï.txt." in messages_of(r)
        assert (root / "Spawn ünï.txt").read_bytes() == b"c"

    def test_it_refuses_an_upload_over_the_nodes_limit_before_storing_it(
        self, server: Server, owner: User, root: Path
    ) -> None:
        # The daemon would take 100 MB; the panel's limit for the node is 1 MB.
        Node.objects.filter(pk=server.node.pk).update(upload_limit_mb=1)
        client = Client(enforce_csrf_checks=True)
        client.force_login(owner)

        # The size is refused before the body is read, even for the CSRF token.
        r = upload(client, server, ("big.bin", b"x" * (MIB + 1)), **JSON)
        assert r.status_code == 413
        message = r.json()["message"]
        assert "over node local's upload limit of 1 MB" in message, message
        assert not (root / "big.bin").exists()

    def test_it_refuses_an_upload_over_the_servers_free_disk(
        self, owner_client: Client, server: Server, root: Path
    ) -> None:
        (root / "world.dat").write_bytes(b"w" * (900 * 1024))
        Server.objects.filter(pk=server.pk).update(disk_mb=1)
        r = upload(owner_client, server, ("region.dat", b"r" * (200 * 1024)), **JSON)
        assert r.status_code == 413
        assert "left of survival's 1 MB disk" in r.json()["message"]
        assert not (root / "region.dat").exists()

        # The page says so before the browser sends anything.
        r = owner_client.get(url(server))
        assert 'data-upload-limit="104857600"' in text(r)
        assert "data-disk-free=" in text(r)

    def test_it_passes_on_the_daemons_refusal_of_an_upload_with_no_room(
        self, owner_client: Client, daemon_node: Node, owner: User, tmp_path: Path
    ) -> None:
        # The daemon knows the server with a 1 MB disk; the panel has since given
        # it 1 GB, so its own check lets the upload through.
        server = make_server(daemon_node, owner)
        server.disk_mb = 1
        install(daemon_node, server)
        Server.objects.filter(pk=server.pk).update(disk_mb=1024)
        root = tmp_path / "daemon" / "servers" / server.public_id
        (root / "world.dat").write_bytes(b"w" * (900 * 1024))

        region = ("region.dat", b"r" * (200 * 1024))
        r = upload(owner_client, server, region, **JSON)
        assert r.status_code == 413
        message = r.json()["message"]
        # The daemon's words, after the panel's: how much room the server has left.
        assert message.startswith("The daemon on node local refused: "), message
        assert "left" in message, message
        assert not (root / "region.dat").exists()

        # Without the page's script, the list says the same.
        r = upload(owner_client, server, region, follow=True)
        assert messages_of(r) == [message]

    def test_it_needs_the_csrf_token(
        self, server: Server, owner: User, root: Path
    ) -> None:
        client = Client(enforce_csrf_checks=True)
        client.force_login(owner)
        assert upload(client, server, ("a.txt", b"a")).status_code == 403
        assert not (root / "a.txt").exists()
        r = client.post(url(server, "new/"), {"name": "b.txt", "kind": "file"})
        assert r.status_code == 403
        assert not (root / "b.txt").exists()

        # Saving, renaming and deleting are refused too; the daemon sees none.
        changes = [
            ("edit/", {"file": "eula.txt", "content": "eula=false\n"}),
            ("rename/", {"from": "eula.txt", "to": "c.txt"}),
            ("delete/", {"paths": ["eula.txt"], "confirm": "1"}),
        ]
        for route, data in changes:
            assert client.post(url(server, route), data).status_code == 403, route
        assert (root / "eula.txt").read_text() == "eula=true\n"
        assert not (root / "c.txt").exists()

    def test_it_refuses_paths_that_climb_out_or_are_absolute(
        self, owner_client: Client, server: Server, root: Path
    ) -> None:
        r = owner_client.get(url(server) + "?directory=../..")
        assert r.context["trouble"] == (
            "directory: '../..' climbs out with '..'; give a path inside the "
            "server's directory."
        )
        assert "entries" not in r.context

        r = owner_client.get(url(server, "edit/") + "?file=/etc/passwd")
        assert r.context["trouble"].startswith("file: '/etc/passwd' is absolute;")
        assert "root:" not in text(r)

        r = owner_client.post(
            url(server, "rename/"), {"from": "eula.txt", "to": "../eula.txt"}
        )
        assert r.context["trouble"].startswith("to: '../eula.txt' climbs out")
        assert (root / "eula.txt").exists()

        r = owner_client.post(
            url(server, "delete/"), {"paths": ["../"], "confirm": "1"}, follow=True
        )
        assert messages_of(r)[0].startswith("paths: '../' climbs out")
        assert root.exists()

        r = owner_client.get(url(server, "download/") + "?file=/etc/hostname")
        assert r.status_code == 302 and not r.streaming

        r = upload(owner_client, server, ("x.txt", b"x"), directory="..", **JSON)
        assert r.status_code == 400
        assert r.json()["message"].startswith("directory: '..' climbs out")
        assert not (root.parent / "x.txt").exists()

        r = owner_client.post(url(server, "new/"), {"name": "/tmp/x", "kind": "folder"})
        assert r.status_code == 302 and not Path("/tmp/x").exists()

    def test_it_refuses_a_symlink_that_leads_out(
        self, owner_client: Client, server: Server, root: Path
    ) -> None:
        (root / "etc").symlink_to("/etc")
        (root / "hostname").symlink_to("/etc/hostname")

        # The links are listed as links, but lead nowhere.
        r = owner_client.get(url(server))
        assert "Link" in text(r)
        r = owner_client.get(url(server) + "?directory=etc")
        assert "leads outside the server's directory" in r.context["trouble"]
        assert "entries" not in r.context

        r = owner_client.get(url(server, "edit/") + "?file=hostname")
        assert "leads outside the server's directory" in r.context["trouble"]
        assert r.context.get("content") is None

        r = owner_client.get(url(server, "download/") + "?file=etc/hostname")
        assert r.status_code == 302 and not r.streaming
        r = owner_client.get(r["Location"])
        assert "leads outside the server's directory" in messages_of(r)[0]

        r = owner_client.post(
            url(server, "edit/"), {"file": "etc/stellar-test", "content": "x"}
        )
        assert "leads outside the server's directory" in r.context["trouble"]
        assert not Path("/etc/stellar-test").exists()

    def test_it_refuses_a_symlink_inside_that_points_out(
        self, owner_client: Client, server: Server, root: Path, tmp_path: Path
    ) -> None:
        # A link in a folder of the server, relative, up to the daemon's data_dir.
        (root / "plugins").mkdir()
        (root / "plugins" / "up").symlink_to("../../..")
        secret = tmp_path / "daemon" / "servers" / f"{server.public_id}.json"
        assert secret.exists()

        r = owner_client.get(url(server) + "?directory=plugins/up/servers")
        assert "leads outside the server's directory" in r.context["trouble"]

        path = f"plugins/up/servers/{server.public_id}.json"
        r = owner_client.get(url(server, "edit/") + f"?file={path}")
        assert "leads outside the server's directory" in r.context["trouble"]
        assert r.context.get("content") is None

        r = upload(
            owner_client, server, ("x.txt", b"x"), directory="plugins/up", **JSON
        )
        assert r.status_code == 403
        assert "leads outside the server's directory" in r.json()["message"]
        assert not (tmp_path / "daemon" / "x.txt").exists()

    def test_it_does_not_open_binary_or_huge_files_in_the_editor(
        self, owner_client: Client, server: Server, root: Path
    ) -> None:
        (root / "level.dat").write_bytes(b"\x0a\x00\x00\x05Data\xff")
        r = owner_client.get(url(server, "edit/") + "?file=level.dat")
        assert r.context["trouble"] == (
            "level.dat is a binary file, not UTF-8 text; the editor opens text "
            "only. Download it instead."
        )
        assert "<textarea" not in text(r)
        (root / "session.lock").write_bytes(b"lock\x00\x00")  # UTF-8, yet not text
        r = owner_client.get(url(server, "edit/") + "?file=session.lock")
        assert r.context["trouble"].startswith("session.lock is a binary file")

        (root / "latest.log").write_text("x" * (MIB + 1))
        r = owner_client.get(url(server, "edit/") + "?file=latest.log")
        assert r.context["trouble"] == (
            "latest.log is 1.0\xa0MB; the editor opens files up to 1 MiB. "
            "Download it instead."
        )
        assert "<textarea" not in text(r)

        # Saving more than that is refused too.
        r = owner_client.post(
            url(server, "edit/"), {"file": "big.txt", "content": "y" * (MIB + 1)}
        )
        assert r.context["trouble"].startswith("content: 1.0\xa0MB is over")
        assert not (root / "big.txt").exists()

    def test_it_does_not_read_a_link_to_a_huge_file_whole(
        self, owner_client: Client, server: Server, root: Path
    ) -> None:
        # The listing gives the link's own few bytes; its target is 9 MB, more
        # than the panel takes in one answer from a daemon.
        (root / "logs").mkdir()
        with (root / "logs" / "huge.log").open("wb") as huge:
            huge.truncate(9 * MIB)
        (root / "latest.log").symlink_to("logs/huge.log")
        r = owner_client.get(url(server, "edit/") + "?file=latest.log")
        assert r.context["trouble"] == (
            "latest.log is more than 1 MiB; the editor opens files up to 1 MiB. "
            "Download it instead."
        )
        assert "<textarea" not in text(r)

        # A link to a small text file opens as the file would.
        (root / "motd.txt").symlink_to("eula.txt")
        r = owner_client.get(url(server, "edit/") + "?file=motd.txt")
        assert r.context["content"] == "eula=true\n"

    def test_it_says_so_when_the_daemon_is_down(
        self, owner_client: Client, loopback_node: Node, owner: User
    ) -> None:
        server = make_server(loopback_node, owner)  # nothing listens on the port
        down = f"The daemon on node {loopback_node.name} could not be reached:"
        token = loopback_node.daemon_token()

        r = owner_client.get(url(server))
        assert r.status_code == 200 and r.context["trouble"].startswith(down)
        assert token not in text(r)
        r = owner_client.get(url(server, "edit/") + "?file=eula.txt")
        assert r.status_code == 200 and r.context["trouble"].startswith(down)
        r = owner_client.get(url(server, "download/") + "?file=eula.txt", follow=True)
        assert messages_of(r)[0].startswith(down)
        r = upload(owner_client, server, ("a.txt", b"a"), **JSON)
        assert r.status_code == 502 and r.json()["message"].startswith(down)
        r = owner_client.post(
            url(server, "delete/"), {"paths": ["a"], "confirm": "1"}, follow=True
        )
        assert messages_of(r)[0].startswith(down)
        assert token not in text(r)

    def test_it_gives_outsiders_404_and_sends_anonymous_users_to_log_in(
        self, outsider_client: Client, server: Server, root: Path
    ) -> None:
        for method, where, data in every_route(server):
            r = getattr(outsider_client, method)(where, data)
            assert r.status_code == 404, where
            r = getattr(Client(), method)(where, data)
            assert r.status_code == 302, where
            assert r["Location"].startswith("/login/?next="), where
        assert (root / "eula.txt").read_text() == "eula=true\n"
        assert sorted(p.name for p in root.iterdir()) == [
            "eula.txt",
            "gameserver.py",
            "server.properties",
        ]

    def test_it_is_linked_from_the_server_page(
        self, owner_client: Client, node: Node, owner: User
    ) -> None:
        server = make_server(node, owner)
        r = owner_client.get(f"/servers/{server.public_id}/")
        assert f'href="{url(server)}"' in text(r)
