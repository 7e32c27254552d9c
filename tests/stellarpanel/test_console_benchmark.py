import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEADER = "viewers  direct/s   panel/s  ratio   direct p50/99"


class TestConsoleBenchmark:
    def test_it_runs_the_console_benchmark_small(self) -> None:
        # A real daemon and Daphne; one and ten viewers of 2,000 lines.
        done = subprocess.run(
            [sys.executable, "benchmarks/console.py", "--small"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, done.stderr
        assert "could not finish" not in done.stdout, done.stdout

        # The table: a row for each viewer count, the one-viewer target judged.
        lines = done.stdout.splitlines()
        header = next(i for i, line in enumerate(lines) if HEADER in line)
        one, ten = (line.split() for line in lines[header + 1 : header + 3])
        assert one[0] == "1" and one[-3:-1] == [">=", "0.8:"], done.stdout
        assert ten[0] == "10" and ten[-1] == "—", done.stdout
        assert "targets met." in done.stdout or "targets were missed." in done.stdout
