"""SFTP: the panel says who may log in; a session stays in its server's files."""

import asyncio
import os
import socket
import stat
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncssh
import pytest
import pytest_asyncio
from daemon_harness import (
    CLOSED_PANEL,
    REPO,
    Client,
    DaemonPool,
    RunningDaemon,
    free_port,
    server_config,
    write_config,
)
from sftp_harness import StandInPanel, connect, openssh_sftp

from devdaemon.config import parse_config

MB = 1024 * 1024
OWNER = "sftp1.owner@example.com"
PASSWORD = "correct horse battery staple"
TINY = "tiny1.owner@example.com"


@pytest.fixture(scope="module")
def panel() -> Iterator[StandInPanel]:
    panel = StandInPanel()
    panel.allow(OWNER, PASSWORD, "sftp1")
    panel.allow(TINY, PASSWORD, "tiny1")
    panel.allow("ghost1.owner@example.com", PASSWORD, "ghost1")
    panel.allow("tiny1.thief@example.com", PASSWORD, "sftp1")
    panel.start()
    yield panel
    panel.stop()


@pytest.fixture(scope="module")
def node(
    tmp_path_factory: pytest.TempPathFactory, panel: StandInPanel
) -> Iterator[RunningDaemon]:
    pool = DaemonPool()
    daemon = pool.start(tmp_path_factory.mktemp("sftp"), panel_url=panel.url)
    api = Client(daemon.url)
    for server_id, disk_mb in (("sftp1", 64), ("tiny1", 1)):
        config = server_config(server_id)
        config["limits"]["disk_mb"] = disk_mb
        assert api.post("/api/servers", json=config).status_code == 201
    yield daemon
    pool.kill_all()


@pytest.fixture(scope="module")
def files(node: RunningDaemon) -> Path:
    return node.data_dir / "servers" / "sftp1"


@pytest.fixture(scope="module")
def outside(node: RunningDaemon) -> Path:
    """A directory beside the servers' ones, with a secret in it."""
    directory = node.directory / "outside"
    directory.mkdir()
    (directory / "secret.txt").write_text("not for SFTP")
    return directory


@pytest_asyncio.fixture
async def sftp(node: RunningDaemon) -> AsyncIterator[asyncssh.SFTPClient]:
    connection = await connect(node, OWNER, PASSWORD)
    client = await connection.start_sftp_client()
    yield client
    connection.close()
    await connection.wait_closed()


@pytest.mark.asyncio
class TestSFTP:
    async def test_it_lets_the_owner_work_with_openssh(
        self, node: RunningDaemon, files: Path, tmp_path: Path
    ) -> None:
        (tmp_path / "up.txt").write_text("uploaded by OpenSSH")
        commands = [
            "mkdir plugins",
            "put up.txt plugins/up.txt",
            "rename plugins/up.txt plugins/moved.txt",
            "ls -l plugins",
            "get plugins/moved.txt down.txt",
            "put up.txt doomed.txt",
            "rm doomed.txt",
            "mkdir emptied",
            "rmdir emptied",
        ]

        result = openssh_sftp(node, OWNER, PASSWORD, commands, tmp_path)

        # Every command worked, on the server's own files
        assert result.returncode == 0, result.stderr
        assert (files / "plugins" / "moved.txt").read_text() == "uploaded by OpenSSH"
        assert not (files / "plugins" / "up.txt").exists()
        assert "moved.txt" in result.stdout
        assert (tmp_path / "down.txt").read_text() == "uploaded by OpenSSH"
        assert not (files / "doomed.txt").exists()
        assert not (files / "emptied").exists()

    async def test_it_lets_the_owner_work_with_asyncssh(
        self, sftp: asyncssh.SFTPClient, files: Path, tmp_path: Path
    ) -> None:
        (tmp_path / "world.dat").write_bytes(os.urandom(MB))
        await sftp.mkdir("worlds")
        await sftp.put(str(tmp_path / "world.dat"), "worlds/world.dat")
        await sftp.rename("worlds/world.dat", "worlds/renamed.dat")
        listed = sorted(await sftp.listdir("worlds"))
        await sftp.get("worlds/renamed.dat", str(tmp_path / "back.dat"))
        await sftp.remove("worlds/renamed.dat")
        await sftp.rmdir("worlds")

        # The file went up, was renamed and listed, came back whole, and went away
        assert listed == [".", "..", "renamed.dat"]
        assert (tmp_path / "back.dat").read_bytes() == (
            tmp_path / "world.dat"
        ).read_bytes()
        assert not (files / "worlds").exists()

    async def test_it_asks_the_panel_with_a_signed_request(
        self, node: RunningDaemon, panel: StandInPanel
    ) -> None:
        connection = await connect(node, OWNER, PASSWORD)
        connection.close()

        # The daemon sent the login as it came, signed with its token
        asked = [
            (method, payload, signed)
            for method, path, payload, signed in panel.requests
            if path == "/api/remote/sftp/auth"
        ]
        assert (
            "POST",
            {"username": OWNER, "password": PASSWORD, "ip": "127.0.0.1"},
            True,
        ) in asked

    async def test_it_refuses_a_wrong_password(
        self, node: RunningDaemon, tmp_path: Path
    ) -> None:
        with pytest.raises(asyncssh.PermissionDenied):
            await connect(node, OWNER, "wrong password")
        result = openssh_sftp(node, OWNER, "wrong password", ["ls"], tmp_path)

        assert result.returncode != 0
        assert "Permission denied" in result.stderr

    async def test_it_takes_a_bad_request_for_a_refusal(
        self, node: RunningDaemon
    ) -> None:
        with pytest.raises(asyncssh.PermissionDenied):
            await connect(node, OWNER, "x" * 5000)

        # An overlong password is the client's fault, not a failing panel
        assert "the panel answered 400" not in node.log
        assert "panel call failed" not in node.log

    async def test_it_refuses_a_server_it_does_not_have(
        self, node: RunningDaemon
    ) -> None:
        # The panel says yes to a server this node has not got
        with pytest.raises(asyncssh.PermissionDenied):
            await connect(node, "ghost1.owner@example.com", PASSWORD)
        # The panel's yes names another server than the login
        with pytest.raises(asyncssh.PermissionDenied):
            await connect(node, "tiny1.thief@example.com", PASSWORD)

    async def test_it_offers_no_shell_commands_or_forwarding(
        self, node: RunningDaemon
    ) -> None:
        connection = await connect(node, OWNER, PASSWORD)
        try:
            with pytest.raises(asyncssh.ChannelOpenError):
                await connection.run("cat /etc/passwd")
            with pytest.raises(asyncssh.ChannelOpenError):
                await connection.open_connection("127.0.0.1", node.port)
        finally:
            connection.close()

    async def test_it_sees_the_server_directory_as_the_root(
        self,
        sftp: asyncssh.SFTPClient,
        files: Path,
        node: RunningDaemon,
        tmp_path: Path,
    ) -> None:
        (files / "server.properties").write_text("motd=hello")
        (tmp_path / "up.txt").write_text("to the root")
        commands = ["cd /", "put up.txt /up.txt", "get /etc/passwd passwd"]
        result = openssh_sftp(node, OWNER, PASSWORD, commands, tmp_path)

        # "/" and "." are the server's directory; absolute paths are read from it
        assert await sftp.realpath(".") == "/"
        assert "server.properties" in await sftp.listdir("/")
        async with sftp.open("/server.properties") as file:
            assert await file.read() == "motd=hello"
        async with sftp.open("/absolute.txt", "w") as file:
            await file.write("here")
        assert (files / "absolute.txt").read_text() == "here"
        assert await sftp.realpath("/a/b/../..") == "/"

        # The host's own paths are not reachable: they name nothing in the root
        with pytest.raises(asyncssh.SFTPNoSuchFile):
            await sftp.stat("/etc/passwd")
        with pytest.raises(asyncssh.SFTPNoSuchFile):
            await sftp.stat(str(files / "server.properties"))
        assert (files / "up.txt").read_text() == "to the root"
        assert result.returncode != 0
        assert not (tmp_path / "passwd").exists()

    async def test_it_refuses_to_climb_out_with_dotdot(
        self,
        sftp: asyncssh.SFTPClient,
        node: RunningDaemon,
        outside: Path,
        tmp_path: Path,
    ) -> None:
        secret = "../../../outside/secret.txt"
        assert (node.data_dir / "servers" / "sftp1" / secret).exists()
        for path in ("..", "/..", secret, "/" + secret, "a/../../outside"):
            with pytest.raises(asyncssh.SFTPPermissionDenied):
                await sftp.stat(path)
        with pytest.raises(asyncssh.SFTPPermissionDenied):
            await sftp.realpath("/..")
        with pytest.raises(asyncssh.SFTPPermissionDenied):
            await sftp.listdir("../..")
        with pytest.raises(asyncssh.SFTPPermissionDenied):
            async with sftp.open("../escaped.txt", "w"):
                pass
        result = openssh_sftp(
            node, OWNER, PASSWORD, [f"get {secret} got.txt"], tmp_path
        )

        # Nothing came in or went out
        assert not (node.data_dir / "servers" / "escaped.txt").exists()
        assert result.returncode != 0
        assert not (tmp_path / "got.txt").exists()

    async def test_it_refuses_a_symlink_that_leads_outside(
        self, sftp: asyncssh.SFTPClient, files: Path, outside: Path, tmp_path: Path
    ) -> None:
        # The game server made these; its files may hold anything
        (files / "leak.txt").symlink_to(outside / "secret.txt")
        (files / "leakdir").symlink_to(outside)
        (files / "plugins").mkdir(exist_ok=True)
        (files / "plugins" / "ok.txt").write_text("fine")
        (files / "near").symlink_to("plugins")

        for path in ("leak.txt", "leakdir/secret.txt", "/leakdir"):
            with pytest.raises(asyncssh.SFTPPermissionDenied):
                await sftp.stat(path)
        with pytest.raises(asyncssh.SFTPPermissionDenied):
            await sftp.get("leak.txt", str(tmp_path / "leak.txt"))
        with pytest.raises(asyncssh.SFTPPermissionDenied):
            await sftp.listdir("leakdir")
        with pytest.raises(asyncssh.SFTPPermissionDenied):
            async with sftp.open("leakdir/planted.txt", "w"):
                pass
        with pytest.raises(asyncssh.SFTPPermissionDenied):
            await sftp.remove("leakdir/secret.txt")
        with pytest.raises(asyncssh.SFTPPermissionDenied):
            await sftp.rename("plugins/ok.txt", "leakdir/ok.txt")
        with pytest.raises(asyncssh.SFTPPermissionDenied):
            await sftp.readlink("leak.txt")

        # The links themselves may be seen and removed; one inside works
        assert await sftp.islink("leak.txt")
        async with sftp.open("near/ok.txt") as file:
            assert await file.read() == "fine"
        assert await sftp.readlink("near") == "/plugins"
        await sftp.remove("leak.txt")
        await sftp.remove("leakdir")
        assert not (outside / "planted.txt").exists()
        assert (outside / "secret.txt").exists()
        assert not (tmp_path / "leak.txt").exists()

    async def test_it_refuses_to_make_a_symlink_that_leads_outside(
        self,
        sftp: asyncssh.SFTPClient,
        files: Path,
        node: RunningDaemon,
        outside: Path,
        tmp_path: Path,
    ) -> None:
        (files / "server.properties").write_text("motd=hello")
        (files / "plugins").mkdir(exist_ok=True)
        (files / "leakdir2").symlink_to(outside)
        targets = ["../../../outside", "/../../../outside/secret.txt", "a/../.."]
        for target in [*targets, "leakdir2/secret.txt", "/leakdir2"]:
            with pytest.raises(asyncssh.SFTPPermissionDenied):
                await sftp.symlink(target, "made")
        result = openssh_sftp(
            node, OWNER, PASSWORD, ["ln -s ../../../outside made"], tmp_path
        )

        # No link was made; an absolute target is one in the server's directory,
        # and the link holds the real path of its target
        assert result.returncode != 0
        assert not os.path.lexists(files / "made")
        await sftp.symlink("/server.properties", "config")
        assert os.readlink(files / "config") == str(
            (files / "server.properties").resolve()
        )
        assert await sftp.readlink("config") == "/server.properties"
        await sftp.symlink("../server.properties", "plugins/config")
        assert (files / "plugins" / "config").resolve() == (
            files / "server.properties"
        ).resolve()

    async def test_it_keeps_a_moved_symlink_inside(
        self,
        sftp: asyncssh.SFTPClient,
        files: Path,
        node: RunningDaemon,
        tmp_path: Path,
    ) -> None:
        await sftp.makedirs("moves/a/b")
        await sftp.symlink("/", "moves/a/b/up")
        await sftp.rename("moves/a/b/up", "/up")
        commands = ["mkdir moves/c", "ln -s / moves/c/up", "rename moves/c/up up2"]
        result = openssh_sftp(node, OWNER, PASSWORD, commands, tmp_path)

        # Links made over SFTP lead to the server's directory from anywhere
        assert result.returncode == 0, result.stderr
        root = files.resolve()
        assert os.path.realpath(files / "up") == str(root)
        assert os.path.realpath(files / "up2") == str(root)

        # A link the server's process made with a relative target moves only where
        # it still leads inside, and a directory holding one that climbs stays
        (files / "moves" / "a" / "b" / "rel").symlink_to("../..")
        with pytest.raises(asyncssh.SFTPPermissionDenied, match="lead outside"):
            await sftp.rename("moves/a/b/rel", "/rel")
        with pytest.raises(asyncssh.SFTPPermissionDenied, match="lead outside"):
            await sftp.posix_rename("moves/a/b/rel", "/rel")
        with pytest.raises(asyncssh.SFTPPermissionDenied, match="climbs"):
            await sftp.rename("moves/a/b", "/b")
        await sftp.rename("moves/a/b/rel", "moves/a/b/rel2")
        assert not os.path.lexists(files / "rel")
        assert not os.path.lexists(files / "b")
        assert os.path.realpath(files / "moves" / "a" / "b" / "rel2") == str(
            root / "moves"
        )

    async def test_it_refuses_to_move_a_directory_into_itself(
        self, sftp: asyncssh.SFTPClient, files: Path
    ) -> None:
        await sftp.makedirs("loop/b")

        with pytest.raises(asyncssh.SFTPFailure, match="into itself"):
            await sftp.rename("loop", "loop/b/c")
        with pytest.raises(asyncssh.SFTPFailure, match="into itself"):
            await sftp.posix_rename("loop", "loop/b/c")

        # Nothing moved, nothing was made
        assert sorted(p.name for p in (files / "loop").iterdir()) == ["b"]
        assert list((files / "loop" / "b").iterdir()) == []

    async def test_it_drops_owners_and_special_permission_bits(
        self,
        sftp: asyncssh.SFTPClient,
        files: Path,
        node: RunningDaemon,
        tmp_path: Path,
    ) -> None:
        special = asyncssh.SFTPAttrs(permissions=0o6777)
        async with sftp.open("modes.txt", "w", attrs=special) as file:
            await file.write("x")
            await file.chmod(0o4711)
            opened = stat.S_IMODE((files / "modes.txt").stat().st_mode)
        await sftp.mkdir("sticky", asyncssh.SFTPAttrs(permissions=0o1777))
        await sftp.chmod("modes.txt", 0o4755)
        await sftp.chown("modes.txt", 1234, 1234)
        await sftp.chmod("sticky", 0o3770, follow_symlinks=False)
        result = openssh_sftp(node, OWNER, PASSWORD, ["chmod 6700 modes.txt"], tmp_path)

        # Permission bits pass, set-id and sticky bits and owners do not
        assert result.returncode == 0, result.stderr
        assert opened == 0o711
        info = (files / "modes.txt").stat()
        assert stat.S_IMODE(info.st_mode) == 0o700
        assert (info.st_uid, info.st_gid) == (os.getuid(), os.getgid())
        assert stat.S_IMODE((files / "sticky").stat().st_mode) == 0o770

    async def test_it_writes_in_place_in_a_file_over_the_upload_limit(
        self, sftp: asyncssh.SFTPClient, files: Path
    ) -> None:
        (files / "huge.dat").write_bytes(bytes(3 * MB))

        async with sftp.open("huge.dat", "r+b") as file:
            await file.write(b"!", 2 * MB + 5)
            with pytest.raises(asyncssh.SFTPFailure, match="upload limit of 2 MB"):
                await file.write(b"!!", 3 * MB - 1)

        # The byte landed; the file did not grow
        content = (files / "huge.dat").read_bytes()
        assert len(content) == 3 * MB
        assert content[2 * MB + 5] == ord("!")

    async def test_it_refuses_to_open_what_is_not_a_regular_file(
        self, sftp: asyncssh.SFTPClient, files: Path
    ) -> None:
        os.mkfifo(files / "console.pipe")

        async with asyncio.timeout(10):
            for mode in ("w", "a", "r"):
                with pytest.raises(asyncssh.SFTPFailure, match="not a regular file"):
                    async with sftp.open("console.pipe", mode):
                        pass
            with pytest.raises(asyncssh.SFTPFailure, match="not a regular file"):
                async with sftp.open("/", "r"):
                    pass

        # The FIFO is still there, and the session still answers
        assert stat.S_ISFIFO((files / "console.pipe").lstat().st_mode)
        assert "console.pipe" in await sftp.listdir("/")

    async def test_it_refuses_a_file_over_the_upload_limit(
        self,
        sftp: asyncssh.SFTPClient,
        files: Path,
        node: RunningDaemon,
        tmp_path: Path,
    ) -> None:
        (tmp_path / "big.bin").write_bytes(os.urandom(3 * MB))

        with pytest.raises(asyncssh.SFTPFailure, match="upload limit of 2 MB"):
            await sftp.put(str(tmp_path / "big.bin"), "big.bin")
        with pytest.raises(asyncssh.SFTPFailure, match="upload limit of 2 MB"):
            async with sftp.open("sparse.bin", "w") as file:
                await file.truncate(3 * MB)
        result = openssh_sftp(
            node, OWNER, PASSWORD, ["put big.bin openssh.bin"], tmp_path
        )

        # Nothing past the limit landed
        assert result.returncode != 0
        assert (files / "big.bin").stat().st_size <= 2 * MB
        assert (files / "sparse.bin").stat().st_size == 0
        assert (files / "openssh.bin").stat().st_size <= 2 * MB

    async def test_it_refuses_writes_past_the_disk_limit(
        self, node: RunningDaemon, tmp_path: Path
    ) -> None:
        tiny = node.data_dir / "servers" / "tiny1"
        (tmp_path / "fits.bin").write_bytes(os.urandom(MB // 2))
        (tmp_path / "too-big.bin").write_bytes(os.urandom(MB - 1000))
        connection = await connect(node, TINY, PASSWORD)
        sftp = await connection.start_sftp_client()

        await sftp.put(str(tmp_path / "fits.bin"), "fits.bin")
        with pytest.raises(asyncssh.SFTPFailure, match="disk quota exceeded") as error:
            await sftp.put(str(tmp_path / "too-big.bin"), "too-big.bin")
        # Rewriting a file in place takes no more room
        await sftp.put(str(tmp_path / "fits.bin"), "fits.bin")
        connection.close()

        # The limit is named; the server stays under it
        assert "1 MB" in str(error.value.reason)
        assert sum(p.stat().st_size for p in tiny.iterdir()) <= MB

    async def test_it_shares_the_disk_room_between_open_files(
        self, node: RunningDaemon, panel: StandInPanel
    ) -> None:
        config = server_config("tiny3")
        config["limits"]["disk_mb"] = 1
        assert Client(node.url).post("/api/servers", json=config).status_code == 201
        panel.allow("tiny3.owner@example.com", PASSWORD, "tiny3")
        connection = await connect(node, "tiny3.owner@example.com", PASSWORD)
        sftp = await connection.start_sftp_client()
        data = os.urandom(600 * 1024)

        # Three files open at once, each written to before any of them grows big
        handles = [await sftp.open(f"part{n}.bin", "wb") for n in range(3)]
        for handle in handles:
            await handle.write(b"-")
        results = await asyncio.gather(
            *(handle.write(data, 1) for handle in handles), return_exceptions=True
        )
        for handle in handles:
            await handle.close()
        connection.close()

        # One server, one room: the three files together stay under the limit
        refused = [r for r in results if isinstance(r, asyncssh.SFTPFailure)]
        assert refused, results
        assert all("disk quota exceeded" in str(r.reason) for r in refused)
        tiny = node.data_dir / "servers" / "tiny3"
        assert sum(p.stat().st_size for p in tiny.iterdir()) <= MB

    async def test_it_takes_a_server_id_in_any_case(
        self, node: RunningDaemon, panel: StandInPanel
    ) -> None:
        # The panel reads "SFTP1" as the server sftp1
        panel.allow("SFTP1.owner@example.com", PASSWORD, "sftp1")

        connection = await connect(node, "SFTP1.owner@example.com", PASSWORD)
        sftp = await connection.start_sftp_client()

        assert await sftp.realpath(".") == "/"
        connection.close()

    async def test_it_ends_sessions_when_the_server_is_deleted(
        self, node: RunningDaemon, panel: StandInPanel
    ) -> None:
        api = Client(node.url)
        assert api.post("/api/servers", json=server_config("doomed1")).status_code
        panel.allow("doomed1.owner@example.com", PASSWORD, "doomed1")
        connection = await connect(node, "doomed1.owner@example.com", PASSWORD)
        sftp = await connection.start_sftp_client()
        await sftp.listdir("/")

        assert (await asyncio.to_thread(api.delete, "/api/servers/doomed1")).is_success

        # The connection ends, and no new one gets in
        async with asyncio.timeout(5):
            await connection.wait_closed()
        with pytest.raises(asyncssh.PermissionDenied):
            await connect(node, "doomed1.owner@example.com", PASSWORD)

    async def test_it_never_logs_a_password(
        self, node: RunningDaemon, sftp: asyncssh.SFTPClient
    ) -> None:
        with pytest.raises(asyncssh.PermissionDenied):
            await connect(node, OWNER, "a wrong secret")

        # Logins are logged by name, passwords never
        log = node.log
        assert f"SFTP login of {OWNER!r} from 127.0.0.1 refused" in log
        assert "owner@example.com to server sftp1 from 127.0.0.1" in log
        assert PASSWORD not in log
        assert "a wrong secret" not in log


@pytest.mark.asyncio
class TestSFTPLifecycle:
    async def test_it_keeps_its_host_key_across_a_restart(
        self, daemons: DaemonPool, tmp_path: Path
    ) -> None:
        panel = StandInPanel()
        panel.allow(OWNER, PASSWORD, "sftp1")
        panel.start()
        try:
            first = daemons.start(tmp_path / "node", panel_url=panel.url)
            Client(first.url).post("/api/servers", json=server_config("sftp1"))
            before = await host_key_of(first)
            connection = await connect(first, OWNER, PASSWORD)
            await (await connection.start_sftp_client()).listdir("/")
            # A daemon that stops ends its sessions, and stops cleanly
            assert await asyncio.to_thread(first.stop) == 0
            async with asyncio.timeout(5):
                await connection.wait_closed()
            again = daemons.start(
                tmp_path / "node", panel_url=panel.url, sftp_port=first.sftp_port
            )
            after = await host_key_of(again)
        finally:
            panel.stop()

        # The same ed25519 key, kept for the daemon's user only
        key = tmp_path / "node" / "data" / "ssh_host_ed25519_key"
        assert before == after
        assert before.startswith("SHA256:")
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert asyncssh.read_private_key(key).get_fingerprint() == before

    async def test_it_refuses_logins_while_the_panel_is_unreachable(
        self, daemons: DaemonPool, tmp_path: Path
    ) -> None:
        daemon = daemons.start(tmp_path / "node", panel_url=CLOSED_PANEL)
        Client(daemon.url).post("/api/servers", json=server_config("sftp1"))

        with pytest.raises(asyncssh.PermissionDenied):
            await connect(daemon, OWNER, PASSWORD)

        # The refusal is logged with its reason, never with the password
        assert f"SFTP login of {OWNER!r} refused: cannot reach the panel" in daemon.log
        assert PASSWORD not in daemon.log


class TestSFTPConfig:
    def test_it_listens_where_the_config_says(self) -> None:
        config = parse_config(
            {
                "panel": {"url": "http://p", "token_id": "a" * 16, "token": "b" * 43},
                "api": {"host": "127.0.0.1", "port": 8080, "upload_limit_mb": 1},
                "system": {"data_dir": "/tmp/x"},
            }
        )
        custom = parse_config(
            {
                "panel": {"url": "http://p", "token_id": "a" * 16, "token": "b" * 43},
                "api": {"host": "127.0.0.1", "port": 8080, "upload_limit_mb": 1},
                "sftp": {"host": "127.0.0.2", "port": 2222},
                "system": {"data_dir": "/tmp/x"},
            }
        )

        # Without [sftp], the defaults of the panel's config file
        assert (config.sftp_host, config.sftp_port) == ("0.0.0.0", 2022)
        assert (custom.sftp_host, custom.sftp_port) == ("127.0.0.2", 2222)

    def test_it_says_when_the_sftp_port_is_taken(self, tmp_path: Path) -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            config = write_config(tmp_path, free_port(), CLOSED_PANEL, sftp_port=port)
            result = subprocess.run(
                [sys.executable, "-m", "devdaemon", "--config", str(config)],
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=30,
            )

        # The daemon stops with one line that names the address
        assert result.returncode == 1
        assert f"cannot serve SFTP on 127.0.0.1:{port}" in result.stderr
        assert "Traceback" not in result.stderr


async def host_key_of(daemon: RunningDaemon) -> str:
    """The fingerprint of the host key the daemon shows before any login."""
    key = await asyncssh.get_server_host_key("127.0.0.1", daemon.sftp_port)
    assert key is not None
    return key.get_fingerprint()
