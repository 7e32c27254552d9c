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
from django.contrib.sessions.models import Session

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

MEMORY = {"default": {"BACKEND": "stellarpanel.layers.MemoryChannelLayer"}}
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
    """Each test runs on the in-memory channel layer and on Redis."""

    @pytest.fixture(autouse=True, params=["MemoryChannelLayer", "RedisChannelLayer"])
    def layer(self, request: pytest.FixtureRequest, settings) -> str:
        settings.CHANNEL_LAYERS = {
            "MemoryChannelLayer": MEMORY,
            "RedisChannelLayer": REDIS,
        }[request.param]
        return request.param

    async def test_it_runs_on_the_layer_it_says(self, layer: str) -> None:
        assert type(get_channel_layer()).__name__ == layer

    async def test_it_gives_the_owner_the_status_and_recent_lines(
        self, viewer: Viewer, running_server: Server, owner: User
    ) -> None:
        console = await open_console(viewer, running_server, owner, ready=False)

        # The panel's status first, then the relay and the console so far.
        assert await console.receive_json_from(timeout=5) == frame("status", "running")
        frames = await frames_until(console, event("console output", "Done!"))
        assert frame("relay", "connected") in frames

    async def test_it_replays_the_console_on_request(
        self,
        viewer: Viewer,
        running_server: Server,
        owner: User,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setattr(consumers, "LOGS_EVERY_S", 0.2)
        console = await open_console(viewer, running_server, owner)
        await frames_until(console, event("console output", "Done!"))
        await say(console, "marker")

        # The boot log, printed once and already seen, comes again.
        await asyncio.sleep(0.3)
        await console.send_json_to(frame("send logs"))
        await frames_until(console, event("console output", "Done!"))

    async def test_it_limits_how_often_the_console_is_replayed(
        self, viewer: Viewer, running_server: Server, owner: User
    ) -> None:
        console = await open_console(viewer, running_server, owner)
        await frames_until(console, event("console output", "Done!"))

        # The console so far came with the connection, moments ago.
        await console.send_json_to(frame("send logs"))
        refusal = await frames_until(console, event("error", "ask again in"))
        assert not any(event("console output", "Done!")(f) for f in refusal)
        await say(console, "still here")

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

    @pytest.mark.parametrize("change", ["demoted", "logged out", "server deleted"])
    async def test_it_closes_on_a_viewer_who_may_no_longer_watch(
        self,
        viewer: Viewer,
        running_server: Server,
        admin_user: User,
        monkeypatch: pytest.MonkeyPatch,
        change: str,
    ) -> None:
        monkeypatch.setattr(consumers, "RECHECK_S", 0.2)
        console = await open_console(viewer, running_server, admin_user)
        await say(console, "watching")

        # The viewer sends nothing: the rights are checked again all the same.
        if change == "demoted":
            await User.objects.filter(pk=admin_user.pk).aupdate(is_staff=False)
        elif change == "logged out":
            await Session.objects.all().adelete()
        else:
            await Server.objects.filter(pk=running_server.pk).adelete()
        refusal = await frames_until(console, event("error", "no longer"))
        assert refusal
        output = await console.receive_output(timeout=5)
        while output["type"] != "websocket.close":
            output = await console.receive_output(timeout=5)
        assert output["code"] == consumers.REFUSED

    async def test_it_keeps_a_viewer_whose_rights_stand(
        self,
        viewer: Viewer,
        running_server: Server,
        owner: User,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setattr(consumers, "RECHECK_S", 0.1)
        console = await open_console(viewer, running_server, owner)
        await asyncio.sleep(0.5)
        await say(console, "still watching")

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
            "[" * 60_000: "not JSON",
            '{"event": "send command", "args": ["say \\ud800"]}': "lone surrogate",
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

        long = "say squeezed " + "xy" * 1500
        await plain.send_json_to(frame("send command", long))
        # The same long line reaches both: as text to one, raw-deflated to the
        # other (a short one would go as text to both).
        for console, kind in ((plain, str), (deflated, bytes)):
            while True:
                message = await console.receive_from(timeout=10)
                text = inflate(message) if isinstance(message, bytes) else message
                if "[Server] squeezed" in text:
                    break
            assert isinstance(message, kind)

    async def test_it_replays_the_console_when_the_upstream_drops(
        self, viewer: Viewer, running_server: Server, owner: User
    ) -> None:
        console = await open_console(viewer, running_server, owner)
        await say(console, "before the drop")

        # The daemon keeps running; only the relay's WebSocket to it breaks.
        await relay._relays[running_server.public_id].upstream.close()
        frames = await frames_until(console, event("relay", "connected"), timeout=20)
        assert frame("relay", "reconnecting") in frames
        # The relay asks for the recent lines again: the console goes on.
        await frames_until(console, event("console output", "before the drop"))
        await say(console, "after the drop")

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
            # The daemon tells the server's state as the relay comes back.
            await frames_until(console, event("status", "offline"))
            # The daemon forgot its processes: start it again, and its lines flow.
            await console.send_json_to(frame("set state", "start"))
            await frames_until(console, event("console output", "Done!"), timeout=20)
            await set_status_async(server, "running")
            await console.send_json_to(frame("set state", "kill"))
            await frames_until(console, event("status", "offline"), timeout=20)


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
