"""One WebSocket to the daemon per watched server, shared by every viewer.

Each panel process keeps a registry of relays, one per server someone watches
through it, in the process's event loop. A relay holds the server's console
WebSocket to its daemon (see PROTOCOL.md) and pushes every frame it receives to
the process's viewers of the server, through the channel layer. Commands of a
viewer go to the relay of the process the viewer is connected to.

    join(public_id, deflated)  a viewer came: start the relay if need be
    leave(public_id, deflated) a viewer went: the last one closes it after LINGER_S
    send(public_id, frame)     a frame for the daemon; RelayDown while disconnected
    delivered(public_id, n)    a viewer has sent on batch n
    console_so_far(public_id)  the batch number and the messages that bring a
                               viewer up to date as of that batch
    upstream_count(public_id)  open daemon WebSockets for the server, 0 or 1
    shutdown()                 stop every relay (tests, and the end of a process)

Frames are pushed in batches: at most one every FLUSH_S, each encoded once, as
WebSocket messages of at most MAX_FRAME (a JSON array when it holds several
frames), and numbered, so a viewer knows which batch its catch-up ends with and
which ones it missed. A batch waits until the viewers have sent on the one before
(delivered()), or HOLD_S at most, and then gathers for as long again as that
fan-out took: when the viewers are many and the console busy, batches grow
instead of queueing, and sending to the viewers leaves half the process's time
for reading the daemon. A batch goes raw-deflated, compressed once, to the viewers
that asked for it (the browser does), and as text to the others; it is encoded
only the ways its viewers want. A quiet console goes out at once; a flood goes
out in fewer, larger, smaller-on-the-wire messages, which is what keeps a hundred
viewers cheap.

NB: a viewer whose channel on the layer overflows (the layer's capacity, in
batches) loses those batches; it sees the gap in the numbers and catches up from
the relay's copy of the console and the last status (servers.consumers). A viewer
whose network is slower than the console goes unseen here: Daphne keeps what it
could not send yet in memory, without bound.

NB: deflate is the compression of CRIME and BREACH: someone who can put text on a
console (a player's chat) and watch the size of a viewer's encrypted messages
could guess other text in the same message. Batches under DEFLATE_MIN go as text,
and only batches of several lines are compressed.

When the relay (re)connects, the daemon tells it the server's state and the relay
asks for its recent lines (`send logs`), so that its viewers start over from the
daemon's own view. While the daemon cannot be reached the relay tries again,
waiting from BACKOFF_START_S, doubling up to BACKOFF_MAX_S, for as long as viewers
remain.
"""

import asyncio
import json
import logging
import secrets
import zlib
from collections import deque
from typing import Any

import aiohttp
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from nodes.daemon import DaemonError, websocket_target
from nodes.daemon import _tls as daemon_tls_context
from nodes.models import Node
from servers.models import Server

logger = logging.getLogger(__name__)

LINGER_S = 10.0
BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 10.0
MAX_FRAME = 64 * 1024
# As many lines as the daemon keeps, so a replay from here is the daemon's own.
KEPT_LINES = 500
# The longest a frame waits for others to share its batch with.
FLUSH_S = 0.008
# The longest a batch waits for the viewers to send on the one before: a viewer
# that went, or a batch lost on the layer, holds the console up no longer.
HOLD_S = 0.25
# Viewers that ask for deflated batches get messages of up to this much JSON,
# compressed once for all of them; console text shrinks five to fifteen times.
DEFLATE_INPUT = 1024 * 1024
DEFLATE_LEVEL = 1
# Smaller messages gain too little from deflate to be worth inflating.
DEFLATE_MIN = 2048
DAEMON_EVENTS = frozenset(
    {
        "console output",
        "status",
        "stats",
        "install started",
        "install output",
        "install completed",
        "daemon error",
    }
)
# Names this process's groups: with several panel processes, each has its own
# relay, and a viewer must get each frame once, from its own process's relay.
PROCESS = secrets.token_hex(6)
CONNECT_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=10, sock_connect=5)

_relays: dict[str, "Relay"] = {}


class RelayDown(Exception):
    """The relay has no open WebSocket to the daemon at the moment."""


def group_name(public_id: str) -> str:
    """The group of the server's viewers in this process."""
    return f"server.{public_id}.{PROCESS}"


def frame(event: str, *args: Any) -> str:
    return json.dumps({"event": event, "args": list(args)}, ensure_ascii=False)


def pack(frames: list[str]) -> list[str]:
    """The frames, in order, as WebSocket messages of at most MAX_FRAME bytes."""
    return [_message(part) for part in _parts(frames, MAX_FRAME)]


def deflate(frames: list[str]) -> list[bytes | str]:
    """The frames, in order, as raw-deflated messages of at most MAX_FRAME bytes.

    Each message inflates to what pack() would send as text: one frame or a JSON
    array of them. A part under DEFLATE_MIN, or one that deflate cannot bring
    under MAX_FRAME, goes as text.
    """
    messages: list[bytes | str] = []
    for part in _parts(frames, DEFLATE_INPUT):
        text = _message(part).encode()
        if len(text) < DEFLATE_MIN:
            messages.append(text.decode())
            continue
        compressor = zlib.compressobj(DEFLATE_LEVEL, zlib.DEFLATED, -15)
        data = compressor.compress(text) + compressor.flush()
        if len(data) <= MAX_FRAME:
            messages.append(data)
        else:
            messages.extend(pack(part))
    return messages


def _parts(frames: list[str], limit: int) -> list[list[str]]:
    """The frames in runs whose message would take at most `limit` bytes."""
    parts: list[list[str]] = []
    part: list[str] = []
    size = 2
    for text in frames:
        length = len(text) if text.isascii() else len(text.encode())
        if part and size + length + 1 > limit:
            parts.append(part)
            part, size = [], 2
        part.append(text)
        size += length + 1
    if part:
        parts.append(part)
    return parts


def _message(frames: list[str]) -> str:
    return frames[0] if len(frames) == 1 else "[" + ",".join(frames) + "]"


class Relay:
    def __init__(self, public_id: str) -> None:
        self.public_id = public_id
        self.group = group_name(public_id)
        self.loop = asyncio.get_running_loop()
        self.viewers = 0
        self.deflated_viewers = 0  # of them, those that want deflated batches
        self.upstream: aiohttp.ClientWebSocketResponse | None = None
        self.console: deque[str] = deque(maxlen=KEPT_LINES)
        self.trouble: str | None = None  # the last failure, while disconnected
        self.batch = 0  # the number of the last batch pushed
        self.pending: list[str] = []
        self.pending_lines: list[str] = []
        self.status: str | None = None  # the daemon's last status frame pushed
        self.pending_status: str | None = None
        self.arrived = asyncio.Event()
        self.undelivered = 0  # viewers yet to send on the last batch pushed
        self.drained = asyncio.Event()
        self.drained_at = 0.0  # when the last of them had
        self.task = asyncio.create_task(self.run(), name=f"relay {public_id}")
        self.pusher = asyncio.create_task(self.push(), name=f"push {public_id}")
        self.closing: asyncio.Task | None = None

    @property
    def connected(self) -> bool:
        return self.upstream is not None and not self.upstream.closed

    async def run(self) -> None:
        delay = BACKOFF_START_S
        async with aiohttp.ClientSession(timeout=CONNECT_TIMEOUT) as session:
            while True:
                try:
                    await self.watch(session)
                    delay = BACKOFF_START_S
                    self.trouble = None
                except DaemonError as e:
                    self.trouble = e.message
                except (aiohttp.ClientError, ConnectionError):
                    logger.info("the console of server %s broke", self.public_id)
                except Exception:
                    logger.exception("the console relay of %s failed", self.public_id)
                    self.trouble = "The panel's console relay failed; it tries again."
                self.tell("relay", "reconnecting")
                if self.trouble:
                    self.tell("error", self.trouble)
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX_S)

    async def watch(self, session: aiohttp.ClientSession) -> None:
        """Connect, then relay frames until the daemon closes the WebSocket."""
        node = await _node_of(self.public_id)
        self.upstream = await _connect(session, node, self.public_id)
        try:
            self.console.clear()
            self.pending_lines.clear()
            self.tell("relay", "connected")
            await self.upstream.send_str(frame("send logs"))
            async for message in self.upstream:
                if message.type == aiohttp.WSMsgType.TEXT:
                    self.receive(message.data)
        finally:
            upstream, self.upstream = self.upstream, None
            await upstream.close()
        logger.info("the daemon closed the console of server %s", self.public_id)

    def receive(self, data: str) -> None:
        try:
            message = json.loads(data)
            event = message["event"]
            args = message["args"]
        except (ValueError, TypeError, KeyError, RecursionError):
            logger.warning("the daemon sent a frame that is not one: %.200r", data)
            return
        if not isinstance(event, str) or event not in DAEMON_EVENTS:
            logger.warning("the daemon sent an unknown event: %.200r", data)
            return
        if not isinstance(args, list):
            logger.warning("the daemon sent a frame that is not one: %.200r", data)
            return
        if event == "console output":
            self.pending_lines.append(data)
        elif event == "status":
            self.pending_status = data
        self.pending.append(data)
        self.arrived.set()

    def tell(self, event: str, *args: Any) -> None:
        self.pending.append(frame(event, *args))
        self.arrived.set()

    async def push(self) -> None:
        """Hand the frames to the viewers' group, a batch at most every FLUSH_S,
        and only once the viewers have sent on the batch before."""
        layer = get_channel_layer()
        pushed = 0.0
        while True:
            await self.arrived.wait()
            if (wait := pushed + FLUSH_S - self.loop.time()) > 0:
                await asyncio.sleep(wait)
            if self.undelivered > 0:
                try:
                    async with asyncio.timeout(HOLD_S):
                        await self.drained.wait()
                except TimeoutError:
                    pass
            if self.drained_at > pushed:
                # Gather for as long again as the last fan-out took: sending to
                # the viewers then takes half the process's time at most, and
                # reading the daemon keeps the rest.
                spread = self.drained_at - pushed
                if (wait := self.drained_at + spread - self.loop.time()) > 0:
                    await asyncio.sleep(wait)
            self.arrived.clear()
            frames, self.pending = self.pending, []
            pushed = self.loop.time()
            self.batch += 1
            self.console.extend(self.pending_lines)
            self.pending_lines.clear()
            self.status = self.pending_status or self.status
            self.pending_status = None
            message: dict[str, Any] = {"type": "console.batch", "batch": self.batch}
            if self.viewers > self.deflated_viewers:
                message["texts"] = pack(frames)
            if self.deflated_viewers:
                message["deflated"] = deflate(frames)
            self.undelivered = self.viewers
            self.drained.clear()
            try:
                await layer.group_send(self.group, message)
            except Exception:
                logger.exception("lost %d frames of %s", len(frames), self.public_id)

    def delivered(self, batch: int) -> None:
        if batch == self.batch and self.undelivered > 0:
            self.undelivered -= 1
            if self.undelivered == 0:
                self.drained_at = self.loop.time()
                self.drained.set()

    async def send(self, data: str) -> None:
        if not self.connected:
            raise RelayDown
        try:
            await self.upstream.send_str(data)
        except ConnectionError:
            raise RelayDown from None

    def so_far(self) -> tuple[int, list[str]]:
        """The last batch pushed, and what a viewer needs to be up to date with it."""
        if self.connected:
            status = [self.status] if self.status else []
            frames = [frame("relay", "connected"), *status, *self.console]
        elif self.trouble:
            frames = [frame("relay", "reconnecting"), frame("error", self.trouble)]
        else:
            frames = []  # connecting: the group hears when it is done
        return self.batch, pack(frames)

    async def linger(self) -> None:
        await asyncio.sleep(LINGER_S)
        if self.viewers == 0 and _relays.get(self.public_id) is self:
            del _relays[self.public_id]
            await self.stop()

    async def stop(self) -> None:
        for task in (self.task, self.pusher, self.closing):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        await asyncio.gather(self.task, self.pusher, return_exceptions=True)
        logger.info("closed the console relay of server %s", self.public_id)


def join(public_id: str, deflated: bool = False) -> None:
    """A viewer joined the server's group: start the relay, or keep it.

    The batches pushed from now on carry the encoding the viewer asked for.
    """
    relay = _relays.get(public_id)
    if relay is None or relay.loop is not asyncio.get_running_loop():
        relay = _relays[public_id] = Relay(public_id)
    relay.viewers += 1
    relay.deflated_viewers += deflated
    if relay.closing is not None:
        relay.closing.cancel()
        relay.closing = None


def leave(public_id: str, deflated: bool = False) -> None:
    relay = _relays.get(public_id)
    if relay is None or relay.viewers == 0:
        return
    relay.viewers -= 1
    relay.deflated_viewers = max(0, relay.deflated_viewers - deflated)
    # It may have sent on the last batch already: then the next one goes a
    # little early, which is harmless; waiting for a viewer gone is not.
    relay.delivered(relay.batch)
    if relay.viewers == 0:
        relay.closing = asyncio.create_task(relay.linger())


def delivered(public_id: str, batch: int) -> None:
    """A viewer in this process has sent on the batch, or skipped it."""
    relay = _relays.get(public_id)
    if relay is not None:
        relay.delivered(batch)


async def send(public_id: str, data: str) -> None:
    """Send a frame to the server's daemon through this process's relay."""
    relay = _relays.get(public_id)
    if relay is None:
        raise RelayDown
    await relay.send(data)


def console_so_far(public_id: str) -> tuple[int, list[str]]:
    """The relay's last batch number and the messages that catch a viewer up to it.

    NB: a viewer gets the lines from the relay's copy of the console, for it
    alone; a `send logs` to the daemon would replay them to every viewer.
    """
    relay = _relays.get(public_id)
    return relay.so_far() if relay is not None else (0, [])


def upstream_count(public_id: str) -> int:
    relay = _relays.get(public_id)
    return int(relay is not None and relay.connected)


async def shutdown() -> None:
    relays = list(_relays.values())
    _relays.clear()
    loop = asyncio.get_running_loop()
    await asyncio.gather(*(r.stop() for r in relays if r.loop is loop))


@database_sync_to_async
def _node_of(public_id: str) -> Node:
    try:
        return Server.objects.select_related("node").get(public_id=public_id).node
    except Server.DoesNotExist:
        raise DaemonError(
            "not_found", f"The server {public_id} no longer exists."
        ) from None


async def _connect(
    session: aiohttp.ClientSession, node: Node, public_id: str
) -> aiohttp.ClientWebSocketResponse:
    """The server's console WebSocket on its daemon, or DaemonError."""
    # websocket_target resolves the host and checks it; a thread keeps that off
    # the event loop. Its signature is fresh for each attempt.
    url, headers, sni = await asyncio.to_thread(websocket_target, node, public_id)
    where = f"The daemon of node {node.name}"
    try:
        return await session.ws_connect(
            url,
            headers=headers,
            ssl=daemon_tls_context() if sni else False,
            server_hostname=sni,
            max_msg_size=MAX_FRAME,
            heartbeat=30,
        )
    except aiohttp.WSServerHandshakeError as e:
        category = {401: "unauthorized", 404: "not_found"}.get(e.status, "bad_answer")
        raise DaemonError(
            category, f"{where} refused the console WebSocket ({e.status}).", e.status
        ) from None
    except (aiohttp.ClientSSLError, aiohttp.ServerFingerprintMismatch) as e:
        raise DaemonError("tls", f"{where} failed the TLS handshake: {e}.") from None
    except TimeoutError:
        raise DaemonError("timeout", f"{where} did not accept a connection.") from None
    except (aiohttp.ClientError, OSError) as e:
        reason = getattr(e, "strerror", None) or str(e) or type(e).__name__
        raise DaemonError("refused", f"{where} cannot be reached: {reason}.") from None
