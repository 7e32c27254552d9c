"""The console WebSocket's helpers: the ASGI application, viewers, a ready server."""

import importlib
import json
import time
import zlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.test import Client

from nodes.daemon import Daemon
from nodes.models import Allocation, Node
from servers import relay
from servers.models import Server
from stellarpanel import scheduler
from tests.conftest import free_port

ORIGIN = b"http://127.0.0.1"


@pytest.fixture
def application(monkeypatch) -> Any:
    """The panel's whole ASGI application, without its heartbeat scheduler."""
    monkeypatch.setattr(scheduler, "start", lambda: None)
    return importlib.import_module("stellarpanel.asgi").application


def session_cookie(user: User | None) -> bytes:
    if user is None:
        return b""
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


Viewer = Callable[..., WebsocketCommunicator]


@pytest_asyncio.fixture
async def viewer(application: Any) -> AsyncIterator[Viewer]:
    """Opens the console of a server as a user; closes them all and the relays."""
    opened: list[WebsocketCommunicator] = []

    def open_console(
        server: Server, cookie: bytes, origin: bytes = ORIGIN, query: str = ""
    ) -> WebsocketCommunicator:
        headers = [(b"origin", origin), (b"host", b"127.0.0.1")]
        if cookie:
            headers.append((b"cookie", cookie))
        path = f"/ws/servers/{server.public_id}/" + (f"?{query}" if query else "")
        communicator = WebsocketCommunicator(application, path, headers=headers)
        opened.append(communicator)
        return communicator

    yield open_console
    for communicator in opened:
        if not communicator.future.done():
            await communicator.disconnect()
    await relay.shutdown()


async def frames_until(
    communicator: WebsocketCommunicator,
    done: Callable[[dict], bool],
    timeout: float = 10,
) -> list[dict]:
    """Every frame received up to and including the first that is `done`."""
    frames: list[dict] = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"timed out; got {frames}"
        frame = await next_frame(communicator, left)
        frames.append(frame)
        if done(frame):
            return frames


# Frames received in one message but not yet read, per communicator.
_unread: dict[int, list[dict]] = {}


async def next_frame(communicator: WebsocketCommunicator, timeout: float) -> dict:
    """The next frame, whether it came alone or in an array with others, as text
    or raw-deflated."""
    unread = _unread.setdefault(id(communicator), [])
    if not unread:
        data = await communicator.receive_from(timeout=timeout)
        if isinstance(data, bytes):
            data = inflate(data)
        message = json.loads(data)
        unread.extend(message if isinstance(message, list) else [message])
    return unread.pop(0)


def inflate(data: bytes) -> str:
    inflater = zlib.decompressobj(-15)
    return (inflater.decompress(data) + inflater.flush()).decode()


def event(name: str, *args: Any) -> Callable[[dict], bool]:
    """A frame of this event, whose first argument contains args[0] if given."""

    def matches(frame: dict) -> bool:
        if frame["event"] != name:
            return False
        return not args or (bool(frame["args"]) and args[0] in str(frame["args"][0]))

    return matches


def wait_for(check: Callable[[], bool], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def daemon_state(node: Node, server: Server) -> str:
    return Daemon(node).server(server.public_id)["state"]


def make_server(node: Node, owner: User) -> Server:
    server = Server.objects.create(
        name="survival", owner=owner, node=node, cpu=100, memory_mb=512, disk_mb=1024
    )
    Allocation.objects.create(
        node=node, ip="127.0.0.1", port=free_port(), server=server, is_primary=True
    )
    return server


def install(node: Node, server: Server) -> None:
    """Create and install the server on its daemon; the panel then knows it offline."""
    daemon = Daemon(node)
    daemon.create_server(server.daemon_config())
    daemon.install(server.public_id)
    wait_for(lambda: daemon_state(node, server) == "offline")
    set_status(server, "offline")


def start(node: Node, server: Server) -> None:
    Daemon(node).power(server.public_id, "start")
    wait_for(lambda: daemon_state(node, server) == "running")
    set_status(server, "running")


def set_status(server: Server, status: str) -> None:
    # The daemon reports to a panel that does not serve in these tests.
    Server.objects.filter(pk=server.pk).update(status=status)
    server.status = status


@pytest.fixture
def running_server(daemon_node: Node, owner: User) -> Server:
    server = make_server(daemon_node, owner)
    install(daemon_node, server)
    start(daemon_node, server)
    return server
