"""The daemon's small pieces: console lines, the replay cache, the game server."""

import subprocess
import sys
import time
from pathlib import Path

import pytest

from devdaemon.console import CUT_MARK, MAX_LINE_BYTES, Console, LineSplitter
from devdaemon.errors import Forbidden
from devdaemon.files import changing, list_directory
from devdaemon.serverconfig import parse_server_config
from devdaemon.servers import Server
from devdaemon.signing import ReplayCache

GAMESERVER = Path(__file__).resolve().parents[2] / "devdaemon" / "gameserver.py"


class TestLineSplitter:
    def test_it_splits_lines_across_chunks(self) -> None:
        splitter = LineSplitter()

        lines = (
            splitter.feed(b"one\r\ntw") + splitter.feed(b"o\nthr") + splitter.close()
        )

        assert lines == ["one", "two", "thr"]

    def test_it_cuts_and_marks_an_overlong_line(self) -> None:
        splitter = LineSplitter()
        long = b"x" * (3 * MAX_LINE_BYTES)

        lines = splitter.feed(long[: MAX_LINE_BYTES + 10])
        lines += splitter.feed(long[MAX_LINE_BYTES + 10 :] + b"\nnext\n")

        # One cut line of at most 8 KiB, then the next line as it is
        assert len(lines) == 2
        assert lines[0].endswith(CUT_MARK)
        assert len(lines[0].encode()) == MAX_LINE_BYTES
        assert lines[1] == "next"

    def test_it_cuts_without_splitting_a_character(self) -> None:
        lines = LineSplitter().feed("é".encode() * MAX_LINE_BYTES + b"\n")

        assert lines[0].endswith(CUT_MARK)
        assert "\ufffd" not in lines[0]
        assert len(lines[0].encode()) <= MAX_LINE_BYTES

    def test_the_console_keeps_the_last_500_lines(self) -> None:
        console = Console()

        for number in range(600):
            console.add(str(number))

        assert console.recent()[0] == "100"
        assert len(console.recent()) == 500


class TestReplayCache:
    def test_it_accepts_a_nonce_once(self) -> None:
        cache = ReplayCache()

        assert cache.add("a")
        assert not cache.add("a")
        assert cache.add("b")

    def test_it_forgets_a_nonce_after_its_time(self) -> None:
        cache = ReplayCache(ttl=0.05)
        cache.add("a")

        time.sleep(0.06)

        assert cache.add("a")

    def test_it_refuses_nonces_past_its_size(self) -> None:
        cache = ReplayCache(limit=2)

        assert [cache.add(n) for n in "abc"] == [True, True, False]


class TestGameServer:
    def run(self, tmp_path: Path, port: int, commands: str) -> str:
        result = subprocess.run(
            [sys.executable, str(GAMESERVER), "--port", str(port), "--memory", "8"],
            input=commands,
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=20,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def test_it_takes_console_commands(self, tmp_path: Path) -> None:
        (tmp_path / "server.properties").write_text("motd=Unit World\n")

        output = self.run(tmp_path, 0, "help\nsay hello there\nlist\nfoo\nstop\n")

        assert "Unit World" in output
        assert "Done! Listening on 127.0.0.1:0" in output
        assert "say <text>" in output
        assert "[Server] hello there" in output
        assert "There are 0 players online" in output
        assert "Unknown command 'foo'" in output
        assert "Stopping the server" in output

    def test_it_stops_on_sigterm(self, tmp_path: Path) -> None:
        process = subprocess.Popen(
            [sys.executable, str(GAMESERVER), "--port", "0"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
        )
        try:
            for line in process.stdout:
                if "Done!" in line:
                    break
            process.terminate()

            assert process.wait(10) == 0
            assert "Received SIGTERM" in process.stdout.read()
        finally:
            process.kill()
            process.wait()


class TestStartupCommand:
    def server(self, tmp_path: Path, startup: str) -> Server:
        config = parse_server_config(
            {
                "id": "unit1",
                "name": "Unit",
                "limits": {"cpu": 100, "memory_mb": 512, "disk_mb": 10},
                "allocations": {"default": {"ip": "10.0.0.5", "port": 27015}},
                "startup": startup,
                "environment": {"MOTD": "two words"},
            }
        )
        return Server(config, tmp_path, panel=None, stop_timeout=1)

    def test_it_fills_in_the_variables_after_splitting(self, tmp_path: Path) -> None:
        server = self.server(
            tmp_path,
            "{{PYTHON}} run.py --bind {{SERVER_IP}}:{{SERVER_PORT}} "
            "-m {{SERVER_MEMORY}} --motd {{MOTD}} 'a b'",
        )

        assert server.command_line() == [
            sys.executable,
            "run.py",
            "--bind",
            "10.0.0.5:27015",
            "-m",
            "512",
            "--motd",
            "two words",
            "a b",
        ]

    def test_it_refuses_an_unknown_variable(self, tmp_path: Path) -> None:
        server = self.server(tmp_path, "run {{NOPE}}")

        with pytest.raises(ValueError, match="NOPE"):
            server.command_line()


class TestListDirectory:
    def test_it_skips_an_entry_that_goes_while_it_lists(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        for name in ("a.txt", "b.txt", "c.txt"):
            (tmp_path / name).write_text(name)
        iterdir = Path.iterdir

        def listed_then_removed(directory: Path) -> list[Path]:
            paths = list(iterdir(directory))
            (tmp_path / "b.txt").unlink()
            return paths

        monkeypatch.setattr(Path, "iterdir", listed_then_removed)

        assert [e["name"] for e in list_directory(tmp_path)] == ["a.txt", "c.txt"]

    def test_it_answers_a_directory_it_may_not_read_with_403(self) -> None:
        with (
            pytest.raises(Forbidden, match="permission denied"),
            changing("list the directory"),
        ):
            raise PermissionError(13, "Permission denied")
