import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class TestHeartbeatBenchmark:
    def test_it_runs_the_heartbeat_benchmark_small(self) -> None:
        # 100 simulated daemons, one in ten silent; a short timeout keeps the four
        # sweeps it makes to a few seconds.
        done = subprocess.run(
            [sys.executable, "benchmarks/heartbeat.py", "--small", "--timeout", "1"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert "sweep/bare" in done.stdout
        assert "meets target" in done.stdout or "misses target" in done.stdout
        assert "sweep:     90 online, 10 timeout" in done.stdout
        assert "bare loop: 90 online, 10 timeout" in done.stdout
        assert "queries per sweep at 10 and 100 nodes: the same\n" in done.stdout
        assert "Peak memory of a sweep of 100 nodes" in done.stdout
