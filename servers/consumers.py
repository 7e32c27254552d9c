"""A server's console in the browser: the WebSocket at /ws/servers/<public_id>/.

The server's owner and admins connect; anyone else is refused before the socket
opens. Frames are PROTOCOL.md's `{"event": ..., "args": [...]}` both ways; a
WebSocket message from the panel holds one frame or a JSON array of them. The
browser gets `status` (the panel's last known state) on connect and the console
so far, then what the daemon sends through this process's relay (servers.relay),
and `relay` ["connected"] / ["reconnecting"] as the daemon comes and goes. A
viewer that missed batches of the relay gets `relay` ["behind", n], then the
console so far again, and carries on from there. A viewer that connects with
`?batches=deflate-raw` gets the relay's larger batches as binary messages that
inflate to the same text. It may send `send command`, `set state`, `send logs` and
`send stats`. Each of those is checked afresh against the database; a refusal, an
oversized or malformed frame, and too many frames a second are each answered with
`error` [message], and the socket stays open. A viewer who only watches has their
rights checked again every RECHECK_S: once they may no longer see the server (it
was deleted or given away, they were demoted or deactivated, they logged out),
they get `error` [message] and the socket closes.
"""

import asyncio
import functools
import json
import time
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from django.contrib.sessions.backends.base import SessionBase

from nodes.daemon import POWER_ACTIONS
from servers import relay
from servers.models import Server, visible_to

MAX_FRAME = 64 * 1024
RATE_PER_S = 10
BURST = 20
# Closes a socket whose user may no longer see the server.
REFUSED = 4403
# How often the rights of a viewer who only watches are checked again.
RECHECK_S = 15.0
# A viewer may ask for the console so far this often; it is up to 500 lines.
LOGS_EVERY_S = 5.0
# `?batches=deflate-raw`: the relay's batches come as binary messages, raw
# deflate (RFC 1951) of what would otherwise come as text.
DEFLATED_BATCHES = "deflate-raw"


class TokenBucket:
    """`rate` tokens a second, at most `burst` kept; each message takes one."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.updated = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        elapsed, self.updated = now - self.updated, now
        self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class Refused(Exception):
    """A message the console does not act on; its text is shown to the user."""


class ConsoleConsumer(AsyncWebsocketConsumer):
    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        """Dispatch the browser's messages and the layer's, one at a time.

        Channels' own loop starts a task and waits on both sides afresh for every
        message; a console fans each batch out to every viewer, so this consumer
        keeps one reader on each side instead, taking turns to dispatch.
        """
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.channel_name = await self.channel_layer.new_channel()
        self.channel_receive = functools.partial(
            self.channel_layer.receive, self.channel_name
        )
        self.base_send = send
        turn = asyncio.Lock()
        stopped = False

        async def read(receive: Any) -> None:
            # Once a handler has ended the consumer, the other side's message
            # waiting for its turn is dropped, as channels' loop would.
            nonlocal stopped
            while True:
                message = await receive()
                async with turn:
                    if stopped:
                        return
                    try:
                        await self.dispatch(message)
                    except BaseException:
                        stopped = True
                        raise

        readers = [
            asyncio.create_task(read(receive)),
            asyncio.create_task(read(self.channel_receive)),
        ]
        try:
            done, _ = await asyncio.wait(readers, return_when=asyncio.FIRST_EXCEPTION)
            for reader in done:
                if not isinstance(reader.exception(), StopConsumer):
                    reader.result()
        finally:
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)

    async def connect(self) -> None:
        self.public_id: str = self.scope["url_route"]["kwargs"]["public_id"]
        self.joined = False
        server = await _visible_server(self.user_id, self.public_id)
        if server is None:
            await self.close(code=REFUSED)
            return

        self.bucket = TokenBucket(RATE_PER_S, BURST)
        self.batch = 0  # the relay's last batch this viewer has
        self.logs_sent = time.monotonic()  # the connection brings them
        self.deflated = DEFLATED_BATCHES in parse_qs(
            self.scope.get("query_string", b"").decode("latin-1")
        ).get("batches", [])
        self.group = relay.group_name(self.public_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        relay.join(self.public_id, self.deflated)
        self.joined = True
        self.rechecks = asyncio.create_task(self.recheck_rights())
        await self.accept()
        await self.send_event("status", server.status)
        await self.catch_up()

    async def disconnect(self, code: int) -> None:
        if not self.joined:
            return
        self.rechecks.cancel()
        relay.leave(self.public_id, self.deflated)
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def recheck_rights(self) -> None:
        while True:
            await asyncio.sleep(RECHECK_S)
            if not await self.still_allowed():
                await self.send_event("error", "You may no longer see this server.")
                await self.close(code=REFUSED)
                return

    async def still_allowed(self) -> bool:
        session: SessionBase | None = self.scope.get("session")
        if session is not None and session.session_key is not None:
            exists = await database_sync_to_async(session.exists)(session.session_key)
            if not exists:
                return False  # logged out, or the session expired
        return await _visible_server(self.user_id, self.public_id) is not None

    @property
    def user_id(self) -> int | None:
        user = self.scope["user"]
        return user.pk if user.is_authenticated else None

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None
    ) -> None:
        try:
            event, args = self.parse(text_data)
            handler = self.handlers.get(event)
            if handler is None:
                raise Refused(f"Unknown event {event[:100]!r}.")
            server = await _visible_server(self.user_id, self.public_id)
            if server is None:
                await self.send_event("error", "You may no longer see this server.")
                await self.close(code=REFUSED)
                return
            await handler(self, server, args)
        except Refused as e:
            await self.send_event("error", str(e))
        except relay.RelayDown:
            await self.send_event(
                "error", "The daemon is not connected; try again once it is back."
            )

    def parse(self, text_data: str | None) -> tuple[str, list[Any]]:
        if not self.bucket.take():
            raise Refused(f"Too many messages: at most {RATE_PER_S} a second.")
        if text_data is None:
            raise Refused("Frames are JSON text, not binary.")
        if len(text_data) > MAX_FRAME or len(text_data.encode()) > MAX_FRAME:
            raise Refused(f"A frame is at most {MAX_FRAME // 1024} KiB.")
        try:
            message = json.loads(text_data)
        except (ValueError, RecursionError):
            raise Refused("The frame is not JSON.") from None
        if not (
            isinstance(message, dict)
            and isinstance(message.get("event"), str)
            and isinstance(message.get("args", []), list)
        ):
            raise Refused('A frame is {"event": "...", "args": [...]}.')
        return message["event"], message.get("args", [])

    async def send_command(self, server: Server, args: list[Any]) -> None:
        command = _one_string(args, "send command")
        await relay.send(self.public_id, relay.frame("send command", command))

    async def set_state(self, server: Server, args: list[Any]) -> None:
        action = _one_string(args, "set state")
        if action not in POWER_ACTIONS:
            raise Refused(f"Choose one of {', '.join(POWER_ACTIONS)}.")
        if not server.node.is_online:
            raise Refused(
                f"Node {server.node.name} is offline: power actions wait until its "
                "daemon answers."
            )
        if not server.allows(action):
            raise Refused(f"The server is {server.status}; it cannot {action} now.")
        await relay.send(self.public_id, relay.frame("set state", action))

    async def send_logs(self, server: Server, args: list[Any]) -> None:
        # The console so far already comes with the connection; this answers a
        # later request, from the relay's copy, to this viewer alone.
        wait = self.logs_sent + LOGS_EVERY_S - time.monotonic()
        if wait > 0:
            raise Refused(
                f"The console so far was sent {LOGS_EVERY_S - wait:.0f} s ago; "
                f"ask again in {wait:.0f} s."
            )
        self.logs_sent = time.monotonic()
        await self.catch_up()

    async def send_stats(self, server: Server, args: list[Any]) -> None:
        await relay.send(self.public_id, relay.frame("send stats"))

    handlers = {
        "send command": send_command,
        "set state": set_state,
        "send logs": send_logs,
        "send stats": send_stats,
    }

    async def dispatch(self, message: dict[str, Any]) -> None:
        # A batch touches no database: skip the check of old connections that
        # channels makes before each handler, a trip to its database thread.
        if message["type"] == "console.batch":
            await self.console_batch(message)
        else:
            await super().dispatch(message)

    async def console_batch(self, message: dict[str, Any]) -> None:
        try:
            await self.send_batch(message)
        finally:
            relay.delivered(self.public_id, message["batch"])

    async def send_batch(self, message: dict[str, Any]) -> None:
        batch = message["batch"]
        if batch <= self.batch:
            return  # already in the console so far
        if batch > self.batch + 1:
            await self.send_event("relay", "behind", batch - self.batch - 1)
            await self.catch_up()
            return
        encoded = message.get("deflated" if self.deflated else "texts")
        if encoded is None:
            # Pushed as this viewer joined, before the relay knew how it wants
            # its batches: the console so far has it.
            await self.catch_up()
            return
        self.batch = batch
        for data in encoded:
            if isinstance(data, bytes):
                await self.send(bytes_data=data)
            else:
                await self.send(text_data=data)

    async def catch_up(self) -> None:
        """The console so far, from the relay's copy, to this viewer alone."""
        self.batch, texts = relay.console_so_far(self.public_id)
        for text in texts:
            await self.send(text_data=text)

    async def send_event(self, event: str, *args: Any) -> None:
        await self.send(text_data=relay.frame(event, *args))


def _one_string(args: list[Any], event: str) -> str:
    if len(args) != 1 or not isinstance(args[0], str):
        raise Refused(f"{event} takes one string.")
    try:
        args[0].encode()
    except UnicodeEncodeError:
        raise Refused(f"{event} takes text: the string has a lone surrogate.") from None
    return args[0]


@database_sync_to_async
def _visible_server(user_id: int | None, public_id: str) -> Server | None:
    """The server, if the user may see and control it: its owner and admins."""
    servers = visible_to(user_id).select_related("node")
    return servers.filter(public_id=public_id).first()
