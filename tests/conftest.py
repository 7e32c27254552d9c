"""Shared personas (an admin, a server owner, an outsider) and a real daemon."""

import ipaddress
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import Client

from locations.models import Location
from nodes.daemon import Daemon, DaemonError
from nodes.models import MB_PER_GB, Node

PASSWORD = "correct horse battery staple"
ROOT = Path(__file__).resolve().parents[1]


def make_user(username: str, staff: bool = False) -> User:
    return User.objects.create_user(
        username,
        f"{username}@example.org",
        PASSWORD,
        is_staff=staff,
    )


@pytest.fixture
def admin_user(db) -> User:
    return make_user("alice", staff=True)


@pytest.fixture
def owner(db) -> User:
    return make_user("bob")


@pytest.fixture
def outsider(db) -> User:
    return make_user("charlie")


@pytest.fixture
def admin_client(admin_user: User) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


@pytest.fixture
def owner_client(owner: User) -> Client:
    client = Client()
    client.force_login(owner)
    return client


@pytest.fixture
def location(db) -> Location:
    return Location.objects.create(name="US West", country="US", city="Los Angeles")


def make_node(name: str = "alpha", **fields) -> Node:
    values = {
        "host": "203.0.113.10",
        "port": 8080,
        "protocol": Node.Protocol.HTTPS,
        "cpu_cores": 8,
        "memory_mb": 16 * MB_PER_GB,
        "disk_mb": 200 * MB_PER_GB,
    } | fields
    node = Node(name=name, **values)
    node.set_new_token()
    node.save()
    return node


@pytest.fixture
def node(location: Location) -> Node:
    return make_node(location=location)


@pytest.fixture(autouse=True)
def fast_password_hashing(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_daemon_config(node: Node, data_dir: Path, panel_url: str) -> Path:
    """The node's own configuration file, bound to loopback and a test folder."""
    # Each daemon serves SFTP on a port of its own; the node object (not its row,
    # which a test may not reach) then names it.
    node.sftp_port = free_port()
    config = node.daemon_config(
        node.daemon_token(),
        listen="127.0.0.1",
        data_dir=str(data_dir),
        panel_url=panel_url,
    )
    path = data_dir.parent / f"node-{node.pk}.toml"
    path.write_text(config)
    return path


@contextmanager
def running_daemon(node: Node, data_dir: Path, panel_url: str) -> Iterator[None]:
    """A real development daemon for the node, as a subprocess, until the block ends."""
    data_dir.mkdir(parents=True, exist_ok=True)
    config = write_daemon_config(node, data_dir, panel_url)
    # Its log stays beside its data, for a test that fails to be read.
    log = (data_dir.parent / f"node-{node.pk}.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "devdaemon", "--config", str(config)],
        cwd=ROOT,
        stdout=log,
        stderr=log,
    )
    log.close()
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", node.port), timeout=0.2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the development daemon did not start") from None
                time.sleep(0.1)
        yield
    finally:
        stop(process)


def install_on_daemon(node: Node, config: dict) -> Daemon:
    """Create and install a server on the node's daemon, as the panel would.

    A daemon that boots adopts the panel's servers, so the server may be there
    already; the install then runs on what it adopted.
    """
    daemon = Daemon(node)
    try:
        daemon.create_server(config)
    except DaemonError as e:
        assert e.category == "conflict", e
    daemon.install(config["id"])
    return daemon


def stop(process: subprocess.Popen, seconds: float = 15) -> None:
    """Ask a subprocess to end, and make it if it does not in time."""
    process.terminate()
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture
def loopback_node(settings, location: Location) -> Node:
    """An online node on 127.0.0.1 with a free port, allowed by the host policy."""
    settings.DAEMON_ALLOWED_NETWORKS = [ipaddress.ip_network("127.0.0.0/8")]
    return make_node(
        "local",
        location=location,
        host="127.0.0.1",
        port=free_port(),
        protocol=Node.Protocol.HTTP,
        status=Node.Status.ONLINE,
    )


@pytest.fixture
def daemon_node(loopback_node: Node, tmp_path: Path) -> Iterator[Node]:
    """An online node on loopback with a real development daemon behind it."""
    # The panel is not serving in these tests: the daemon's reports go nowhere.
    panel_url = f"http://127.0.0.1:{free_port()}"
    with running_daemon(loopback_node, tmp_path / "daemon", panel_url):
        yield loopback_node
