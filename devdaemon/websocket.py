"""GET /api/servers/{id}/ws: a server's events out, the panel's requests in.

Frames are JSON text, `{"event": ..., "args": [...]}`, at most 64 KiB. A new socket
first gets the server's `status`. A frame the daemon cannot act on is answered with
a `daemon error` frame; the socket stays open.
"""

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from devdaemon.daemon import server_of
from devdaemon.errors import BadRequest, DaemonError
from devdaemon.servers import Server, frame

logger = logging.getLogger(__name__)

routes = web.RouteTableDef()
MAX_FRAME = 64 * 1024
# How long a closing socket waits for the panel's answering close frame.
CLOSE_TIMEOUT_S = 2
# Enough for a full console replay and then some; a socket further behind is closed.
MAX_QUEUED_FRAMES = 2000


class Socket:
    """One open WebSocket: frames are queued and sent in order by its own task."""

    def __init__(self, ws: web.WebSocketResponse, server_id: str) -> None:
        self.ws = ws
        self.server_id = server_id
        self.queue: asyncio.Queue[str] = asyncio.Queue(MAX_QUEUED_FRAMES)
        self.sender = asyncio.create_task(self.send_all())
        self.closing: asyncio.Task | None = None

    def offer(self, message: str) -> None:
        if self.sender.done():
            return
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            logger.warning(
                "a socket of server %s fell %d frames behind; closed it",
                self.server_id,
                MAX_QUEUED_FRAMES,
            )
            self.sender.cancel()
            self.closing = asyncio.create_task(
                self.ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"too slow")
            )

    async def send_all(self) -> None:
        while True:
            message = await self.queue.get()
            try:
                await self.ws.send_str(message)
            except ConnectionError:
                return

    async def close(self) -> None:
        self.sender.cancel()
        await self.ws.close(code=WSCloseCode.GOING_AWAY, message=b"closed")


@routes.get("/api/servers/{id}/ws")
async def watch(request: web.Request) -> web.WebSocketResponse:
    server = server_of(request)
    ws = web.WebSocketResponse(
        max_msg_size=MAX_FRAME, heartbeat=30, timeout=CLOSE_TIMEOUT_S
    )
    await ws.prepare(request)
    socket = Socket(ws, server.id)
    server.watchers.add(socket)
    socket.offer(frame("status", server.state))
    try:
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                await answer(server, socket, message.data)
            elif message.type == WSMsgType.BINARY:
                socket.offer(frame("daemon error", "frames are JSON text, not binary"))
            else:
                break
    finally:
        server.watchers.discard(socket)
        await socket.close()
    return ws


async def answer(server: Server, socket: Socket, data: str) -> None:
    try:
        event, args = parse_frame(data)
        if event not in EVENTS:
            raise BadRequest(f"unknown event {event[:100]!r}")
        await EVENTS[event](server, socket, args)
    except DaemonError as error:
        socket.offer(frame("daemon error", str(error)))


def parse_frame(data: str) -> tuple[str, list[Any]]:
    try:
        message = json.loads(data)
    except ValueError:
        raise BadRequest("the frame is not JSON") from None
    if not isinstance(message, dict) or not isinstance(message.get("event"), str):
        raise BadRequest('a frame is {"event": "...", "args": [...]}')
    args = message.get("args", [])
    if not isinstance(args, list):
        raise BadRequest("args must be a list")
    return message["event"], args


def one_string(args: list[Any], event: str) -> str:
    if len(args) != 1 or not isinstance(args[0], str):
        raise BadRequest(f"{event} takes one string")
    return args[0]


async def send_command(server: Server, socket: Socket, args: list[Any]) -> None:
    await server.send_command(one_string(args, "send command"))


async def set_state(server: Server, socket: Socket, args: list[Any]) -> None:
    server.power(one_string(args, "set state"))


async def send_logs(server: Server, socket: Socket, args: list[Any]) -> None:
    for line in server.console.recent():
        socket.offer(frame("console output", line))


async def send_stats(server: Server, socket: Socket, args: list[Any]) -> None:
    socket.offer(frame("stats", await server.resources()))


EVENTS: dict[str, Callable[[Server, Socket, list[Any]], Awaitable[None]]] = {
    "send command": send_command,
    "set state": set_state,
    "send logs": send_logs,
    "send stats": send_stats,
}
