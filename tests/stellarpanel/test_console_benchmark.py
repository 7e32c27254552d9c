import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class TestConsoleBenchmark:
    def test_it_runs_the_console_benchmark_small(self) -> None:
        # A real daemon and Daphne, one and ten viewers of 2,000 lines.
        done = subprocess.run(
            [sys.executable, "benchmarks/console.py", "--small"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, done.stderr
        assert "could not finish" not in done.stdout, done.stdout
        assert "viewers  direct/s   panel/s  ratio" in done.stdout
        lines = done.stdout.splitlines()
        rows = [line.split() for line in lines if line.split()[:1] in (["1"], ["10"])]
        assert [row[0] for row in rows] == ["1", "10"], done.stdout
        assert "ratio >= 0.8: " in done.stdout
        assert "targets met." in done.stdout or "targets were missed." in done.stdout
