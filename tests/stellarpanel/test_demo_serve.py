import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.conftest import ROOT, free_port


class TestDemoServe:
    def test_it_brings_the_local_node_online_and_names_why_the_other_is_not(
        self, tmp_path: Path
    ) -> None:
        database = tmp_path / "demo.sqlite3"
        env = dict(os.environ, DATABASE_URL=f"sqlite:///{database}")
        env.pop("REDIS_URL", None)
        env.pop("DAEMON_ALLOWED_NETWORKS", None)
        demo = subprocess.Popen(
            [sys.executable, "manage.py", "demo", "--port", str(free_port())]
            + ["--daemon-port", str(free_port()), "--state-dir", str(tmp_path / "s")],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        output: list[str] = []
        reader = threading.Thread(
            target=lambda: output.extend(demo.stdout), daemon=True
        )
        reader.start()
        try:
            # The 30 seconds count from when the demo says it serves, after the
            # migrations of a fresh database.
            deadline = time.monotonic() + 90
            while not any("Serving" in line for line in output):
                assert time.monotonic() < deadline, output
                time.sleep(0.2)
            started = time.monotonic()
            nodes: dict = {}
            while time.monotonic() - started < 30:
                time.sleep(1)
                nodes = self.nodes(database)
                if (
                    nodes.get("Local node", ("",))[0] == "online"
                    and nodes.get("Silent node", ("", None, ""))[2]
                ):
                    break
            assert nodes["Local node"][0] == "online", nodes
            assert nodes["Local node"][1] is not None  # its latency
            assert nodes["Silent node"][0] == "offline"
            assert nodes["Silent node"][2] == "refused"
            # The seeded servers get installed on the daemon.
            while time.monotonic() - started < 60 and self.installing(database):
                time.sleep(1)
            assert not self.installing(database)
        finally:
            demo.terminate()
            demo.wait(timeout=30)
            reader.join(timeout=10)
        out = "".join(output)
        assert "Admin:  admin / " in out
        assert "Traceback" not in out

    @staticmethod
    def nodes(database: Path) -> dict:
        if not database.exists():
            return {}
        with sqlite3.connect(database) as db:
            try:
                rows = db.execute(
                    "SELECT name, status, latency_ms, last_error_category "
                    "FROM nodes_node"
                ).fetchall()
            except sqlite3.OperationalError:
                return {}  # not migrated yet
        return {name: rest for name, *rest in rows}

    @staticmethod
    def installing(database: Path) -> int:
        with sqlite3.connect(database) as db:
            return db.execute(
                "SELECT count(*) FROM servers_server WHERE status = 'installing'"
            ).fetchone()[0]
