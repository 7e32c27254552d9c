"""The file routes: everything relative to the server's directory, nothing outside."""

import http.client
import json
import os
import stat
from pathlib import Path

import pytest
from daemon_harness import Client, RunningDaemon, server_config, signed_headers

MB = 1024 * 1024


def tiny_server(client: Client, server_id: str) -> None:
    """A server of 1 MB of disk on the daemon."""
    config = server_config(server_id)
    config["limits"]["disk_mb"] = 1
    assert client.post("/api/servers", json=config).status_code == 201


@pytest.fixture(scope="module")
def server_id(shared_daemon: RunningDaemon) -> str:
    response = Client(shared_daemon.url).post(
        "/api/servers", json=server_config("files1")
    )
    assert response.status_code == 201, response.text
    return "files1"


@pytest.fixture
def base(server_id: str) -> str:
    return f"/api/servers/{server_id}/files"


@pytest.fixture(scope="module")
def directory(shared_daemon: RunningDaemon, server_id: str) -> Path:
    return shared_daemon.data_dir / "servers" / server_id


def names(client: Client, base: str, directory: str = "") -> list[str]:
    response = client.get(f"{base}/list", params={"directory": directory})
    assert response.status_code == 200, response.text
    return [entry["name"] for entry in response.json()]


class TestFiles:
    def test_it_writes_lists_and_reads_a_file(self, client: Client, base: str) -> None:
        written = client.post(
            f"{base}/write", params={"file": "notes/a.txt"}, content=b"hello"
        )
        listed = client.get(f"{base}/list", params={"directory": "notes"})
        read = client.get(f"{base}/contents", params={"file": "notes/a.txt"})

        # The file is there, described, and its bytes come back
        assert written.status_code == 204
        assert listed.json() == [
            {
                "name": "a.txt",
                "size": 5,
                "is_directory": False,
                "is_symlink": False,
                "modified": listed.json()[0]["modified"],
                "mime_type": "text/plain",
            }
        ]
        assert listed.json()[0]["modified"].endswith("+00:00")
        assert read.status_code == 200
        assert read.content == b"hello"

    def test_it_streams_a_large_file(
        self, client: Client, base: str, directory: Path
    ) -> None:
        content = os.urandom(3 * MB)
        (directory / "world.dat").write_bytes(content)

        response = client.get(f"{base}/contents", params={"file": "world.dat"})

        assert response.content == content

    def test_it_uploads_files(self, client: Client, base: str) -> None:
        files = [
            ("files", ("one.txt", b"1" * 1000, "text/plain")),
            ("files", ("two.bin", b"\r\n--\r\n\x00binary", "application/octet-stream")),
        ]

        response = client.post(
            f"{base}/upload", params={"directory": "uploads"}, files=files
        )

        assert response.status_code == 204, response.text
        assert names(client, base, "uploads") == ["one.txt", "two.bin"]
        read = client.get(f"{base}/contents", params={"file": "uploads/two.bin"})
        assert read.content == b"\r\n--\r\n\x00binary"

    def test_it_reads_file_names_as_browsers_encode_them(
        self, client: Client, base: str
    ) -> None:
        # httpx, like browsers, sends a quote in a file name as %22.
        files = [("files", ('say "hi" 100%.txt', b"hi", "text/plain"))]

        response = client.post(f"{base}/upload", params={"directory": "q"}, files=files)

        assert response.status_code == 204, response.text
        assert names(client, base, "q") == ['say "hi" 100%.txt']

    def test_it_creates_renames_and_deletes(self, client: Client, base: str) -> None:
        created = client.post(f"{base}/create-directory", json={"path": "maps/old"})
        client.post(f"{base}/write", params={"file": "maps/old/x.txt"}, content=b"x")
        renamed = client.post(
            f"{base}/rename", json={"from": "maps/old", "to": "maps/new"}
        )

        # The directory moved with its file
        assert created.status_code == 204
        assert renamed.status_code == 204
        assert names(client, base, "maps") == ["new"]
        assert names(client, base, "maps/new") == ["x.txt"]

        deleted = client.post(f"{base}/delete", json={"paths": ["maps/new", "notes"]})

        assert deleted.status_code == 204
        assert names(client, base, "maps") == []
        assert "notes" not in names(client, base)

    def test_it_lists_directories_first(self, client: Client, base: str) -> None:
        client.post(f"{base}/write", params={"file": "aaa.txt"}, content=b"a")
        client.post(f"{base}/create-directory", json={"path": "zzz"})

        listing = client.get(f"{base}/list").json()

        assert listing[0]["is_directory"]
        assert listing[0]["mime_type"] == "inode/directory"

    def test_it_answers_404_for_what_is_missing(
        self, client: Client, base: str
    ) -> None:
        # A missing file, a missing directory, a missing server
        assert (
            client.get(f"{base}/contents", params={"file": "nope"}).status_code == 404
        )
        assert (
            client.get(f"{base}/list", params={"directory": "nope"}).status_code == 404
        )
        response = client.get("/api/servers/nosuch/files/list")
        assert response.status_code == 404
        assert response.json()["error"] == "not_found"
        delete = client.post(f"{base}/delete", json={"paths": ["nope"]})
        assert delete.status_code == 404

    def test_it_refuses_to_rename_onto_a_taken_name(
        self, client: Client, base: str
    ) -> None:
        client.post(f"{base}/write", params={"file": "r1.txt"}, content=b"1")
        client.post(f"{base}/write", params={"file": "r2.txt"}, content=b"2")

        response = client.post(
            f"{base}/rename", json={"from": "r1.txt", "to": "r2.txt"}
        )

        assert response.status_code == 409
        assert response.json()["error"] == "conflict"

    def test_it_refuses_to_write_over_a_fifo(
        self, client: Client, base: str, directory: Path
    ) -> None:
        os.mkfifo(directory / "console.pipe")

        write = client.post(
            f"{base}/write", params={"file": "console.pipe"}, content=b"x"
        )
        upload = client.post(
            f"{base}/upload", files={"file": ("console.pipe", b"x", "text/plain")}
        )

        # A clear refusal, at once; the FIFO stays as it was
        assert write.status_code == 409
        assert "not a regular file" in write.json()["message"]
        assert upload.status_code == 409
        assert "not a regular file" in upload.json()["message"]
        assert stat.S_ISFIFO((directory / "console.pipe").lstat().st_mode)

    def test_it_refuses_to_move_a_directory_into_itself(
        self, client: Client, base: str, directory: Path
    ) -> None:
        client.post(f"{base}/write", params={"file": "nest/x.txt"}, content=b"x")

        response = client.post(
            f"{base}/rename", json={"from": "nest", "to": "nest/b/c"}
        )

        # Refused before anything was made
        assert response.status_code == 400
        assert "into itself" in response.json()["message"]
        assert sorted(p.name for p in (directory / "nest").iterdir()) == ["x.txt"]

    def test_it_moves_a_symlink_only_where_it_still_leads_inside(
        self, client: Client, base: str, directory: Path
    ) -> None:
        # The server's process made a link with a relative target, to the root
        (directory / "links" / "a" / "b").mkdir(parents=True)
        (directory / "links" / "a" / "b" / "root").symlink_to("../../..")

        up = client.post(
            f"{base}/rename", json={"from": "links/a/b/root", "to": "root"}
        )
        folder = client.post(f"{base}/rename", json={"from": "links/a", "to": "a"})
        deeper = client.post(
            f"{base}/rename",
            json={"from": "links/a/b/root", "to": "links/a/b/c/root"},
        )

        # Moved up, the link would lead outside; its directory keeps it
        assert up.status_code == 403
        assert folder.status_code == 403
        assert "climbs" in folder.json()["message"]
        assert not os.path.lexists(directory / "root")
        assert not os.path.lexists(directory / "a")
        # Moved deeper, it leads to the server's "links" directory: allowed
        assert deeper.status_code == 204, deeper.text
        assert os.path.realpath(directory / "links/a/b/c/root") == str(
            (directory / "links").resolve()
        )


ESCAPES = ["../outside.txt", "a/../../outside.txt", "/etc/passwd", "escape/x.txt"]


@pytest.fixture(scope="module")
def outside(directory: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory outside the server's, and a symlink in the server's to it."""
    outside = tmp_path_factory.mktemp("outside")
    (outside / "x.txt").write_text("secret")
    (directory / "escape").symlink_to(outside)
    return outside


@pytest.mark.usefixtures("outside")
class TestEscapes:
    @pytest.mark.parametrize("path", ESCAPES)
    def test_it_refuses_to_read_outside(
        self, client: Client, base: str, path: str
    ) -> None:
        contents = client.get(f"{base}/contents", params={"file": path})
        listing = client.get(
            f"{base}/list", params={"directory": path.rsplit("/", 1)[0]}
        )

        assert contents.status_code == 403
        assert contents.json()["error"] == "forbidden"
        assert listing.status_code == 403

    @pytest.mark.parametrize("path", ESCAPES)
    def test_it_refuses_to_write_outside(
        self, client: Client, base: str, path: str, outside: Path
    ) -> None:
        write = client.post(f"{base}/write", params={"file": path}, content=b"pwned")
        upload = client.post(
            f"{base}/upload",
            params={"directory": path.rsplit("/", 1)[0]},
            files={"file": ("x.txt", b"pwned")},
        )
        mkdir = client.post(f"{base}/create-directory", json={"path": path})
        rename = client.post(f"{base}/rename", json={"from": "aaa.txt", "to": path})

        assert [r.status_code for r in (write, upload, mkdir, rename)] == [403] * 4
        assert (outside / "x.txt").read_text() == "secret"
        assert list(outside.iterdir()) == [outside / "x.txt"]

    def test_it_refuses_an_upload_file_name_that_climbs_out(
        self, client: Client, base: str
    ) -> None:
        response = client.post(
            f"{base}/upload", files={"file": ("../../evil.txt", b"pwned")}
        )

        assert response.status_code == 403

    def test_it_refuses_to_delete_through_an_escape(
        self, client: Client, base: str, outside: Path
    ) -> None:
        for path in ["../x", "/etc", "escape/x.txt"]:
            response = client.post(f"{base}/delete", json={"paths": [path]})

            assert response.status_code == 403
        assert (outside / "x.txt").exists()


class TestLimits:
    def test_it_refuses_an_upload_over_the_node_limit(
        self, client: Client, base: str
    ) -> None:
        response = client.post(
            f"{base}/upload", files={"file": ("big.bin", b"x" * (3 * MB))}
        )

        assert response.status_code == 413
        assert response.json()["error"] == "too_large"
        assert "2 MB" in response.json()["message"]

    def test_it_refuses_an_upload_over_the_server_disk(
        self, client: Client, shared_daemon: RunningDaemon
    ) -> None:
        tiny_server(client, "tiny1")

        response = client.post(
            "/api/servers/tiny1/files/upload",
            files={"file": ("big.bin", b"x" * (MB + MB // 2))},
        )
        small = client.post(
            "/api/servers/tiny1/files/upload", files={"file": ("ok.bin", b"x" * 1000)}
        )

        assert response.status_code == 413
        assert "disk" in response.json()["message"]
        assert small.status_code == 204

    def test_it_refuses_a_write_over_the_server_disk(self, client: Client) -> None:
        tiny_server(client, "tiny2")

        response = client.post(
            "/api/servers/tiny2/files/write",
            params={"file": "big.bin"},
            content=b"x" * (MB + 1),
        )

        assert response.status_code == 413

    def test_it_refuses_a_body_over_the_room_before_storing_it(
        self, client: Client, shared_daemon: RunningDaemon
    ) -> None:
        tiny_server(client, "tiny4")

        response = client.post(
            "/api/servers/tiny4/files/write",
            params={"file": "big.bin"},
            content=b"x" * (MB + MB // 2),
        )

        assert response.status_code == 413
        assert response.json()["error"] == "too_large"
        assert "may use 1 MB" in response.json()["message"]
        servers = shared_daemon.data_dir / "servers"
        assert list((servers / "tiny4").iterdir()) == []

    def test_it_refuses_a_body_over_the_upload_limit_before_reading_it(
        self, client: Client, shared_daemon: RunningDaemon
    ) -> None:
        tiny_server(client, "tiny7")
        path = "/api/servers/tiny7/files/write?file=big.bin"
        body = b"x" * (2 * MB + 1)  # over the harness's upload limit

        # Only the head and 1 KiB of the body go out; the answer comes all the
        # same, and tells the node's limit alone: the signature over the body,
        # and with it the server's room, is not checked yet.
        connection = http.client.HTTPConnection("127.0.0.1", shared_daemon.port, 5)
        connection.putrequest("POST", path)
        connection.putheader("Content-Length", str(len(body)))
        for name, value in signed_headers("POST", path, body).items():
            connection.putheader(name, value)
        connection.endheaders(body[:1024])
        response = connection.getresponse()
        answer = json.loads(response.read())
        connection.close()

        assert response.status == 413
        assert "upload limit of 2 MB" in answer["message"]
        assert "may use" not in answer["message"]
        assert list((shared_daemon.data_dir / "servers" / "tiny7").iterdir()) == []

    def test_it_refuses_a_chunked_body_over_the_room(
        self, client: Client, shared_daemon: RunningDaemon
    ) -> None:
        tiny_server(client, "tiny5")

        response = client.post(
            "/api/servers/tiny5/files/write",
            params={"file": "big.bin"},
            content=iter([b"x" * (MB // 2)] * 3),
        )

        # Sent without a length, refused as it came; nothing stored
        assert response.request.headers["Transfer-Encoding"] == "chunked"
        assert response.status_code == 413
        assert "may use 1 MB" in response.json()["message"]
        servers = shared_daemon.data_dir / "servers"
        assert list((servers / "tiny5").iterdir()) == []

    def test_it_rewrites_a_file_larger_than_the_room_left(self, client: Client) -> None:
        tiny_server(client, "tiny6")
        base = "/api/servers/tiny6/files"

        first = client.post(
            f"{base}/write", params={"file": "w.dat"}, content=b"1" * (900 * 1024)
        )
        again = client.post(
            f"{base}/write", params={"file": "w.dat"}, content=b"2" * (950 * 1024)
        )
        other = client.post(
            f"{base}/write", params={"file": "v.dat"}, content=b"3" * (200 * 1024)
        )

        # The file a write replaces makes room for it
        assert (first.status_code, again.status_code) == (204, 204)
        assert other.status_code == 413
