"""The file routes: everything relative to the server's directory, nothing outside."""

import os
from pathlib import Path

import pytest
from daemon_harness import Client, RunningDaemon, server_config

MB = 1024 * 1024


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
        config = server_config("tiny1")
        config["limits"]["disk_mb"] = 1
        assert client.post("/api/servers", json=config).status_code == 201

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
        config = server_config("tiny2")
        config["limits"]["disk_mb"] = 1
        client.post("/api/servers", json=config)

        response = client.post(
            "/api/servers/tiny2/files/write",
            params={"file": "big.bin"},
            content=b"x" * (MB + 1),
        )

        assert response.status_code == 413
