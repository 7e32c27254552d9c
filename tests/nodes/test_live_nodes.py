"""Admins' browsers hear what each heartbeat sweep found, over /ws/nodes/."""

import asyncio
import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.test import Client

from nodes.heartbeat import run_sweep, status_of
from nodes.models import Node
from tests.conftest import make_node

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


@pytest.fixture
def application(settings) -> Any:
    """The panel's ASGI application, without the heartbeat scheduler it starts."""
    settings.HEARTBEAT_ENABLED = False
    from stellarpanel.asgi import application

    return application


@pytest.fixture
def closed_node(settings) -> Iterator[Node]:
    """A node on a loopback port that is bound but never listens: it refuses."""
    settings.DAEMON_ALLOWED_NETWORKS = [ipaddress.ip_network("127.0.0.0/8")]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield make_node(
            "beta",
            host="127.0.0.1",
            port=sock.getsockname()[1],
            protocol=Node.Protocol.HTTP,
            status=Node.Status.ONLINE,
            latency_ms=12,
        )


def communicator(application: Any, user: User | None) -> WebsocketCommunicator:
    headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]
    if user is not None:
        client = Client()
        client.force_login(user)
        session = client.cookies[django_settings.SESSION_COOKIE_NAME].value
        cookie = f"{django_settings.SESSION_COOKIE_NAME}={session}"
        headers.append((b"cookie", cookie.encode()))
    return WebsocketCommunicator(application, "/ws/nodes/", headers=headers)


async def connect_as(application: Any, user: User | None) -> WebsocketCommunicator:
    return await database_sync_to_async(communicator)(application, user)


class TestLiveNodes:
    async def test_it_sends_admins_the_status_each_sweep_found(
        self, application: Any, admin_user: User, closed_node: Node
    ) -> None:
        ws = await connect_as(application, admin_user)
        connected, _ = await ws.connect()
        assert connected

        await database_sync_to_async(run_sweep)()

        # One frame for the sweep, with the node gone offline and why
        frame = await ws.receive_json_from(timeout=5)
        assert frame["event"] == "node status"
        (status,) = frame["args"]
        assert status["id"] == closed_node.pk
        assert status["status"] == "offline"
        assert status["reason"] == "refused"
        assert status["latency_ms"] is None
        assert status["slow"] is False
        assert status["last_heartbeat"] is None
        await ws.disconnect()

    async def test_it_describes_an_answering_node_with_its_latency_and_time(
        self, closed_node: Node
    ) -> None:
        # The heartbeat's own tests prove answers; here, only how they are sent.
        closed_node.latency_ms = 80
        closed_node.last_heartbeat = closed_node.created
        status = status_of(closed_node)

        assert status["status"] == "online"
        assert status["slow"] is True
        assert status["latency_ms"] == 80
        assert status["last_heartbeat"] == closed_node.created.isoformat()

    async def test_it_refuses_a_user_who_is_not_staff(
        self, application: Any, owner: User
    ) -> None:
        ws = await connect_as(application, owner)
        connected, _ = await ws.connect()
        # Closed before the handshake was accepted: Daphne answers it with a 403
        assert not connected

    async def test_it_refuses_an_anonymous_visitor(self, application: Any) -> None:
        ws = await connect_as(application, None)
        connected, _ = await ws.connect()
        # Closed before the handshake was accepted: Daphne answers it with a 403
        assert not connected

    async def test_it_survives_a_sweep_with_no_one_listening(
        self, closed_node: Node
    ) -> None:
        results = await asyncio.to_thread(run_sweep)
        assert [r.category for r in results] == ["refused"]

    async def test_it_records_the_sweep_when_the_channel_layer_fails(
        self, closed_node: Node, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def broken() -> None:
            raise ConnectionError("Redis is down")

        monkeypatch.setattr("nodes.heartbeat.get_channel_layer", broken)
        await asyncio.to_thread(run_sweep)

        await database_sync_to_async(closed_node.refresh_from_db)()
        assert closed_node.status == Node.Status.OFFLINE
