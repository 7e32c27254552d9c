"""Resource use of a server: its process tree through psutil, its directory on disk."""

import os
import time
from pathlib import Path

import psutil


class TreeSampler:
    """CPU and memory of a process and all its descendants."""

    def __init__(self, pid: int) -> None:
        try:
            self.root: psutil.Process | None = psutil.Process(pid)
        except psutil.NoSuchProcess:
            self.root = None  # it exited at once; its run is about to end
        self.last_cpu_s = 0.0
        self.last_at = time.monotonic()

    def sample(self) -> tuple[float, int]:
        """(percent of one core since the last sample, RSS bytes) of the tree."""
        cpu_s = 0.0
        rss = 0
        for process in self.tree():
            try:
                with process.oneshot():
                    times = process.cpu_times()
                    cpu_s += times.user + times.system
                    rss += process.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        now = time.monotonic()
        elapsed = now - self.last_at
        # NB: a child that exits between samples takes its CPU time with it, so the
        # total can go down; that sample reads 0 rather than negative.
        percent = max(0.0, (cpu_s - self.last_cpu_s) / elapsed * 100) if elapsed else 0
        self.last_cpu_s, self.last_at = cpu_s, now
        return round(percent, 1), rss

    def tree(self) -> list[psutil.Process]:
        if self.root is None:
            return []
        try:
            return [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []


def directory_size(root: Path) -> int:
    """Bytes in the files under `root`, symlinks not followed."""
    total = 0
    pending = [root]
    while pending:
        try:
            entries = list(os.scandir(pending.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    pending.append(Path(entry.path))
                else:
                    total += entry.stat(follow_symlinks=False).st_size
            except OSError:
                continue
    return total
