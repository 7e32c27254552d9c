"""The panel under Daphne: it serves HTTP, static files included, and refuses
request bodies over its limits before it receives them."""

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from cryptography.fernet import Fernet

from tests.conftest import stop

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 30.0
MIB = 1024 * 1024

# Run by `manage.py shell`: a server on a node whose upload limit is 2 MB.
SETUP = """
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore
from nodes.models import Node
from servers.models import Server

def signed_in(user):
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return session.session_key

node = Node(name="local", host="127.0.0.1", port=9, protocol="HTTP", cpu_cores=1,
            memory_mb=1024, disk_mb=1024, upload_limit_mb=2)
node.set_new_token()
node.save()
owner = User.objects.create_user("bob")
server = Server.objects.create(name="survival", owner=owner, node=node, cpu=100,
                               memory_mb=512, disk_mb=512)
other = User.objects.create_user("eve")
print(server.public_id, signed_in(owner), signed_in(other))
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def panel_env(tmp_path: Path) -> dict[str, str]:
    """A production-like environment with its own SQLite file and no Redis."""
    env = os.environ.copy()
    for name in (
        "REDIS_URL",
        "SECRET_KEY_FILE",
        "PANEL_URL",
        "ALLOWED_HOSTS",
        "DJANGO_ALLOW_ASYNC_UNSAFE",
    ):
        env.pop(name, None)
    env |= {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "DEBUG": "False",
        "SECRET_KEY": "asgi-smoke-test-" + "x" * 40,
        "ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "DJANGO_SETTINGS_MODULE": "stellarpanel.settings",
    }
    return env


def wait_until_serving(
    process: subprocess.Popen[bytes], base_url: str, log: Path
) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"daphne exited with {process.returncode}:\n{log.read_text()}")
        try:
            httpx.get(base_url + "/login/", timeout=1.0)
        except httpx.TransportError:
            time.sleep(0.25)
        else:
            return
    pytest.fail(
        f"daphne did not answer within {START_TIMEOUT:.0f} s:\n{log.read_text()}"
    )


@contextmanager
def serving(tmp_path: Path, setup: str = "") -> Iterator[tuple[str, str]]:
    """Migrate a fresh database, run `setup` in its shell, start Daphne on it.

    Yields the base URL and what the setup printed.
    """
    env = panel_env(tmp_path)
    run = {"cwd": REPO_ROOT, "env": env, "capture_output": True, "text": True}
    manage = [sys.executable, "manage.py"]
    migrate = subprocess.run([*manage, "migrate", "--no-input"], **run, timeout=120)
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    printed = ""
    if setup:
        made = subprocess.run([*manage, "shell", "-c", setup], **run, timeout=60)
        assert made.returncode == 0, made.stdout + made.stderr
        printed = made.stdout.strip().rpartition("\n")[2]

    port = free_port()
    log = tmp_path / "daphne.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "daphne",
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "stellarpanel.asgi:application",
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        base_url = f"http://127.0.0.1:{port}"
        wait_until_serving(process, base_url, log)
        yield base_url, printed
    finally:
        stop(process)


@pytest.fixture
def daphne_url(tmp_path: Path) -> Iterator[str]:
    """Daphne on a fresh database; its base URL."""
    with serving(tmp_path) as (base_url, _):
        yield base_url


@dataclass
class Panel:
    url: str
    server: str  # the public ID of a server on a node with a 2 MB upload limit
    owner: str  # the Cookie header of its owner's session
    other: str  # that of another user's


@pytest.fixture(scope="module")
def panel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Panel]:
    with serving(tmp_path_factory.mktemp("daphne"), SETUP) as (base_url, printed):
        server, owner, other = printed.split()
        yield Panel(
            base_url, server, f"Cookie: sessionid={owner}", f"Cookie: sessionid={other}"
        )


@pytest.fixture
def http(daphne_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=daphne_url, follow_redirects=False, timeout=10.0
    ) as client:
        yield client


def test_it_serves_pages_redirects_and_static_files_under_daphne(
    http: httpx.Client,
) -> None:
    home = http.get("/")
    assert home.status_code == 302
    assert home.headers["location"] == "/servers/"

    servers = http.get("/servers/")
    assert servers.status_code == 302
    assert servers.headers["location"].startswith("/login/")

    login = http.get("/login/")
    assert login.status_code == 200
    assert 'name="csrfmiddlewaretoken"' in login.text

    css = http.get("/static/css/panel.css")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")

    htmx = http.get("/static/django_htmx/htmx-2.min.js")
    assert htmx.status_code == 200
    assert htmx.content

    nodes = http.get("/admin/nodes/")
    assert nodes.status_code == 302
    assert nodes.headers["location"] == "/login/?next=/admin/nodes/"


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float

    def json(self) -> dict:
        assert self.headers["content-type"] == "application/json", self.headers
        return json.loads(self.body)


def exchange(panel: Panel, head: str, body: bytes = b"") -> Answer:
    """Send a request's head and what there is of its body; read the answer.

    The body may be shorter than its Content-Length says: the answer is read
    without waiting for the rest, as a client still sending would.
    """
    started = time.monotonic()
    where = urlsplit(panel.url)
    with socket.create_connection((where.hostname, where.port), timeout=5) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + body)
        data = b""
        while b"\r\n\r\n" not in data:
            data += receive(sock)
        top, _, rest = data.partition(b"\r\n\r\n")
        status_line, *lines = top.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            rest += receive(sock)
    status = int(status_line.split()[1])
    return Answer(status, headers, rest[:length], time.monotonic() - started)


def receive(sock: socket.socket) -> bytes:
    chunk = sock.recv(65536)
    assert chunk, "the panel closed the connection without an answer"
    return chunk


def post(path: str, length: int, *headers: str) -> str:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {length}"]
    return "\n".join([*lines, *headers, "", ""])


def test_it_refuses_an_upload_over_the_nodes_limit_before_receiving_it(
    panel: Panel,
) -> None:
    upload = f"/servers/{panel.server}/files/upload/"
    json_ = "Accept: application/json"

    # 3 MB announced, 10 bytes sent: the answer comes at once, for the page's
    # script as JSON, for a plain form as a page.
    r = exchange(panel, post(upload, 3 * MIB, json_, panel.owner), b"x" * 10)
    assert r.status == 413 and r.seconds < 3, r
    assert r.json() == {
        "message": "files: 3.0\xa0MB is over node local's upload limit of 2 MB; "
        "upload fewer or smaller files at a time."
    }
    html_ = "Accept: text/html"
    r = exchange(panel, post(upload, 3 * MIB, html_, panel.owner), b"x" * 10)
    assert r.status == 413 and r.headers["content-type"].startswith("text/html")
    assert "upload limit of 2 MB" in r.body.decode()

    # Within the node's limit, the body goes on to Django (which wants a login).
    r = exchange(panel, post(upload, int(1.5 * MIB)), b"x" * int(1.5 * MIB))
    assert r.status == 302 and r.headers["location"].startswith("/login/"), r

    # A body of unknown length is refused too.
    chunked = "\n".join(
        [f"POST {upload} HTTP/1.1", "Host: 127.0.0.1", "Transfer-Encoding: chunked"]
    )
    r = exchange(panel, chunked + "\n\n", b"5\r\nhello\r\n")
    assert r.status == 411 and r.seconds < 3, r
    assert b"Content-Length" in r.body


@pytest.mark.parametrize("who", ["nobody", "other"])
def test_it_tells_a_server_s_limit_only_to_those_who_may_see_it(
    panel: Panel, who: str
) -> None:
    upload = f"/servers/{panel.server}/files/upload/"
    cookie = {"nobody": "X-Nothing: 1", "other": panel.other}[who]

    # Over the node's limit but within the panel's: to anyone else the server is
    # unknown, and the body goes on to Django, which answers as for any page.
    r = exchange(panel, post(upload, int(2.5 * MIB), cookie), b"x" * int(2.5 * MIB))
    assert r.status in (302, 404), r
    assert b"upload limit" not in r.body

    # Over the panel's limit: refused, without a word of the node.
    r = exchange(panel, post(upload, 3 * MIB, "Accept: application/json", cookie))
    assert r.status == 413, r
    assert "local" not in r.json()["message"]
    assert "over the panel's limit" in r.json()["message"]


def test_it_refuses_any_other_body_over_the_panels_limit(panel: Panel) -> None:
    for path in ("/login/", "/servers/nothing/files/upload/", "/api/remote/servers"):
        r = exchange(panel, post(path, 1024 * MIB, "Accept: application/json"), b"x")
        assert r.status == 413 and r.seconds < 3, (path, r)
        assert "over the panel's limit of 2.6\xa0MB" in r.json()["message"], r

    # A body within it is Django's to answer.
    r = exchange(panel, post("/login/", 5), b"a=b&c")
    assert r.status == 403  # no CSRF token
