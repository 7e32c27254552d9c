"""Fixtures that start real development daemons and always kill them afterwards."""

from collections.abc import Iterator

import pytest
from daemon_harness import Client, DaemonPool, RunningDaemon


@pytest.fixture
def daemons() -> Iterator[DaemonPool]:
    pool = DaemonPool()
    yield pool
    pool.kill_all()


@pytest.fixture(scope="module")
def shared_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDaemon]:
    """One daemon for the tests of a module that do not need one of their own."""
    pool = DaemonPool()
    yield pool.start(tmp_path_factory.mktemp("daemon"))
    pool.kill_all()


@pytest.fixture
def client(shared_daemon: RunningDaemon) -> Client:
    return Client(shared_daemon.url)
