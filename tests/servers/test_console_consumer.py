"""The console WebSocket, through the whole ASGI stack, against a real daemon."""

import asyncio
import json
import os
from contextlib import ExitStack
from pathlib import Path

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User

from nodes.models import Node
from servers import consumers, relay
from servers.models import Server
from tests.conftest import free_port, running_daemon
from tests.servers.conftest import (
    Viewer,
    event,
    frames_until,
    inflate,
    install,
    make_server,
    session_cookie,
    set_status,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

REDIS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")]},
    }
}


def frame(event_name: str, *args: str) -> dict:
    return {"event": event_name, "args": list(args)}


async def open_console(
    viewer: Viewer, server: Server, user: User, ready: bool = True
) -> WebsocketCommunicator:
    """An open console; `ready`: once the relay is connected to the daemon."""
    console = viewer(server, await cookie_of(user))
    connected, _ = await console.connect(timeout=5)
    assert connected
    if ready:
        await frames_until(console, event("relay", "connected"))
    return console


async def say(console, text: str) -> None:
    await console.send_json_to(frame("send command", f"say {text}"))
    await frames_until(console, event("console output", f"[Server] {text}"))


class TestConsoleConsumer:
    async def test_it_gives_the_owner_the_status_and_recent_lines(
        self, viewer: Viewer, running_server: Server, owner: User
    ) -> None:
        console = await open_console(viewer, running_server, owner, ready=False)

        # The panel's status first, then the relay and the console so far.
        assert await console.receive_json_from(timeout=5) == frame("status", "running")
        frames = await frames_until(console, event("console output", "Done!"))
        assert frame("relay", "connected") in frames

    async def test_it_replays_the_console_on_request(
        self, viewer: Viewer, running_server: Server, owner: User
    ) -> None:
        console = await open_console(viewer, running_server, owner)
        await frames_until(console, event("console output", "Done!"))
        await say(console, "marker")

        # The boot log, printed once and already seen, comes again.
        await console.send_json_to(frame("send logs"))
        await frames_until(console, event("console output", "Done!"))

    async def test_it_lets_an_admin_in(
        self, viewer: Viewer, running_server: Server, admin_user: User
    ) -> None:
        console = await open_console(viewer, running_server, admin_user)
        await say(console, "hello from an admin")

    @pytest.mark.parametrize("who", ["outsider", "anonymous"])
    async def test_it_refuses_others_before_opening(
        self, viewer: Viewer, owner: User, outsider: User, node: Node, who: str
    ) -> None:
        server = await _server(node, owner)
        user = outsider if who == "outsider" else None
        console = viewer(server, await cookie_of(user))
        assert await console.connect(timeout=5) == (False, consumers.REFUSED)
        assert relay.upstream_count(server.public_id) == 0

    async def test_it_refuses_another_origin(
        self, viewer: Viewer, owner: User, node: Node
    ) -> None:
        server = await _server(node, owner)
        console = viewer(server, await cookie_of(owner), origin=b"https://evil.test")
        connected, _ = await console.connect(timeout=5)
        assert not connected

    async def test_it_relays_a_command_and_its_answer(
        self, viewer: Viewer, running_server: Server, owner: User
    ) -> None:
        console = await open_console(viewer, running_server, owner)
        await say(console, "hello")

    async def test_it_relays_power_and_the_states_that_follow(
        self, viewer: Viewer, running_server: Server, owner: User
    ) -> None:
        console = await open_console(viewer, running_server, owner)
        await console.send_json_to(frame("set state", "stop"))
        frames = await frames_until(console, event("status", "offline"), timeout=20)
        assert frame("status", "stopping") in frames

    async def test_it_refuses_power_the_state_forbids_and_stays_open(
        self, viewer: Viewer, running_server: Server, owner: User
    ) -> None:
        console = await open_console(viewer, running_server, owner)

        await console.send_json_to(frame("set state", "start"))
        refusal = await frames_until(console, event("error"))
        assert "running; it cannot start" in refusal[-1]["args"][0]
        await say(console, "still here")

    async def test_it_refuses_power_while_the_node_is_offline(
        self, viewer: Viewer, running_server: Server, owner: User
    ) -> None:
        console = await open_console(viewer, running_server, owner)
        await Node.objects.filter(pk=running_server.node_id).aupdate(
            status=Node.Status.OFFLINE
        )

        await console.send_json_to(frame("set state", "stop"))
        refusal = await frames_until(console, event("error"))
        assert "is offline" in refusal[-1]["args"][0]

    async def test_it_rechecks_rights_on_every_message(
        self, viewer: Viewer, running_server: Server, admin_user: User
    ) -> None:
        console = await open_console(viewer, running_server, admin_user)
        await User.objects.filter(pk=admin_user.pk).aupdate(is_staff=False)

        await console.send_json_to(frame("send command", "say sneaky"))
        refusal = await frames_until(console, event("error"))
        assert "no longer" in refusal[-1]["args"][0]
        while (await console.receive_output(timeout=5))["type"] != "websocket.close":
            pass

    async def test_it_answers_bad_frames_with_errors(
        self, viewer: Viewer, running_server: Server, owner: User
    ) -> None:
        console = await open_console(viewer, running_server, owner)
        bad = {
            "x" * (64 * 1024 + 1): "at most 64 KiB",
            "not json": "not JSON",
            json.dumps(frame("format disk")): "Unknown event",
            json.dumps({"event": "send command", "args": "say"}): "A frame is",
            json.dumps(frame("send command")): "takes one string",
            json.dumps(frame("set state", "explode")): "Choose one of",
        }
        for text, complaint in bad.items():
            await console.send_to(text_data=text)
            await frames_until(console, event("error", complaint))
        await console.send_to(bytes_data=b"\x00")
        await frames_until(console, event("error", "not binary"))
        await say(console, "still here")

    async def test_it_limits_the_rate_of_messages(
        self, viewer: Viewer, running_server: Server, owner: User
    ) -> None:
        console = await open_console(viewer, running_server, owner)
        for _ in range(consumers.BURST + 5):
            await console.send_json_to(frame("no such event"))

        # The burst goes through (and is refused as unknown), the rest is not.
        errors = await frames_until(console, event("error", "Too many messages"))
        unknown = frame("error", "Unknown event 'no such event'.")
        assert consumers.BURST <= errors.count(unknown) < consumers.BURST + 3

    async def test_it_shares_one_upstream_between_viewers(
        self, viewer: Viewer, running_server: Server, owner: User, admin_user: User
    ) -> None:
        first = await open_console(viewer, running_server, owner)
        await frames_until(first, event("console output", "Done!"))
        second = await open_console(viewer, running_server, admin_user, ready=False)
        # The one who came later gets the console so far, too.
        await frames_until(second, event("console output", "Done!"))
        assert relay.upstream_count(running_server.public_id) == 1

        await first.send_json_to(frame("send command", "say to everyone"))
        for console in (first, second):
            await frames_until(console, event("console output", "to everyone"))
        assert relay.upstream_count(running_server.public_id) == 1

    async def test_it_deflates_batches_for_a_viewer_that_asks(
        self, viewer: Viewer, running_server: Server, owner: User
    ) -> None:
        cookie = await cookie_of(owner)
        plain = viewer(running_server, cookie)
        deflated = viewer(running_server, cookie, query="batches=deflate-raw")
        for console in (plain, deflated):
            assert (await console.connect(timeout=5))[0]
            await frames_until(console, event("console output", "Done!"))

        await plain.send_json_to(frame("send command", "say squeezed"))
        # The same line reaches both: as text to one, raw-deflated to the other.
        for console, kind in ((plain, str), (deflated, bytes)):
            while True:
                message = await console.receive_from(timeout=10)
                text = inflate(message) if isinstance(message, bytes) else message
                if "[Server] squeezed" in text:
                    break
            assert isinstance(message, kind)

    async def test_it_catches_up_a_viewer_that_missed_batches(
        self, viewer: Viewer, running_server: Server, owner: User
    ) -> None:
        console = await open_console(viewer, running_server, owner)
        await frames_until(console, event("console output", "Done!"))
        # Three batches lost on the way, as when the viewer's channel overflows.
        relay._relays[running_server.public_id].batch += 3

        await console.send_json_to(frame("send command", "say after the gap"))
        frames = await frames_until(console, event("console output", "after the gap"))
        behind = {"event": "relay", "args": ["behind", 3]}
        assert behind in frames
        # Told, then given the console so far again, and it carries on from there.
        caught_up = frames[frames.index(behind) + 1 :]
        assert caught_up[0] == frame("relay", "connected")
        assert any(event("console output", "Done!")(f) for f in caught_up)
        await say(console, "and on")

    async def test_it_closes_the_upstream_after_the_last_viewer(
        self,
        viewer: Viewer,
        running_server: Server,
        owner: User,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setattr(relay, "LINGER_S", 0.2)
        first = await open_console(viewer, running_server, owner)
        second = await open_console(viewer, running_server, owner)

        # One viewer leaving keeps it; the last one leaving closes it soon after.
        await first.disconnect()
        await asyncio.sleep(0.5)
        assert relay.upstream_count(running_server.public_id) == 1
        await second.disconnect()
        await asyncio.sleep(0.5)
        assert relay.upstream_count(running_server.public_id) == 0

    async def test_it_says_when_the_daemon_cannot_be_reached(
        self, viewer: Viewer, silent_node: Node, owner: User
    ) -> None:
        server = await _server(silent_node, owner)
        console = await open_console(viewer, server, owner, ready=False)

        frames = await frames_until(console, event("error", "cannot be reached"))
        assert frame("relay", "reconnecting") in frames
        await console.send_json_to(frame("send command", "say hello"))
        await frames_until(console, event("error", "not connected"))

    async def test_it_reconnects_when_the_daemon_comes_back(
        self, viewer: Viewer, tmp_path: Path, local_node: Node, owner: User
    ) -> None:
        panel_url = f"http://127.0.0.1:{free_port()}"
        data_dir = tmp_path / "daemon"
        with ExitStack() as daemon:
            await _in_thread(daemon, running_daemon(local_node, data_dir, panel_url))
            server = await _server(local_node, owner)
            await database_sync_to_async(install)(local_node, server)
            console = await open_console(viewer, server, owner)

            await asyncio.to_thread(daemon.close)
            await frames_until(console, event("relay", "reconnecting"))

            await _in_thread(daemon, running_daemon(local_node, data_dir, panel_url))
            await frames_until(console, event("relay", "connected"), timeout=20)
            # The daemon forgot its processes: start it again, and its lines flow.
            await console.send_json_to(frame("set state", "start"))
            await frames_until(console, event("console output", "Done!"), timeout=20)
            await set_status_async(server, "running")
            await console.send_json_to(frame("set state", "kill"))
            await frames_until(console, event("status", "offline"), timeout=20)


class TestConsoleConsumerOnRedis:
    @pytest.fixture(autouse=True)
    def redis_layer(self, settings) -> None:
        settings.CHANNEL_LAYERS = REDIS

    async def test_it_fans_out_through_redis(
        self, viewer: Viewer, running_server: Server, owner: User, admin_user: User
    ) -> None:
        assert type(get_channel_layer()).__name__ == "RedisChannelLayer"
        first = await open_console(viewer, running_server, owner, ready=False)
        second = await open_console(viewer, running_server, admin_user, ready=False)
        for console in (first, second):
            assert await console.receive_json_from(timeout=5) == frame(
                "status", "running"
            )
            await frames_until(console, event("console output", "Done!"))

        await second.send_json_to(frame("send command", "say through redis"))
        for console in (first, second):
            await frames_until(console, event("console output", "through redis"))
        assert relay.upstream_count(running_server.public_id) == 1

    async def test_it_refuses_an_outsider(
        self, viewer: Viewer, running_server: Server, outsider: User
    ) -> None:
        console = viewer(running_server, await cookie_of(outsider))
        assert await console.connect(timeout=5) == (False, consumers.REFUSED)


@pytest.fixture
def silent_node(loopback_node: Node) -> Node:
    """Online, as far as the panel knows, but nothing listens at its port."""
    return loopback_node


@pytest.fixture
def local_node(loopback_node: Node) -> Node:
    """A node on loopback whose daemon the test starts and stops itself."""
    return loopback_node


_server = database_sync_to_async(make_server)
cookie_of = database_sync_to_async(session_cookie)
set_status_async = database_sync_to_async(set_status)


async def _in_thread(stack: ExitStack, context) -> None:
    await asyncio.to_thread(stack.enter_context, context)
