import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class TestBenchmarks:
    def test_it_runs_the_capacity_benchmark_small(self) -> None:
        # The benchmark makes its own throwaway database, on whichever database
        # DATABASE_URL names.
        done = subprocess.run(
            [sys.executable, "benchmarks/capacity.py", "--small"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        assert "ratio, with / without" in done.stdout
        assert "/admin/nodes/<id>/" in done.stdout
