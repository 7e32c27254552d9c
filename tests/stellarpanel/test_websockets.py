import asyncio

import pytest
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore

from servers.consumers import ConsoleConsumer
from stellarpanel.websockets import WebSocketSessionMiddleware

pytestmark = pytest.mark.asyncio


def scope_of(kind: str, session_key: str) -> dict:
    cookie = f"{settings.SESSION_COOKIE_NAME}={session_key}".encode()
    return {"type": kind, "headers": [(b"cookie", cookie)], "cookies": {}}


class TestWebSocketSessionMiddleware:
    @pytest.mark.django_db(transaction=True)
    async def test_a_websocket_gets_the_session_and_its_own_send(self) -> None:
        session = SessionStore()
        session["seen"] = "yes"
        await session.asave()
        got = {}

        async def inner(scope, receive, send):
            got["seen"] = await scope["session"].aget("seen")
            got["send"] = send

        async def send(message):
            pass

        scope = scope_of("websocket", session.session_key)
        scope["cookies"] = {settings.SESSION_COOKIE_NAME: session.session_key}
        await WebSocketSessionMiddleware(inner)(scope, None, send)

        # The session is read once; what the consumer sends is not wrapped.
        assert got == {"seen": "yes", "send": send}


@pytest.mark.django_db(transaction=True)
class TestConsoleConsumerLoop:
    async def test_it_ends_when_the_socket_does(self) -> None:
        messages: asyncio.Queue = asyncio.Queue()
        await messages.put({"type": "websocket.disconnect", "code": 1000})
        consumer = ConsoleConsumer()
        consumer.joined = False

        await asyncio.wait_for(consumer({"type": "websocket"}, messages.get, None), 5)

    async def test_it_raises_what_a_handler_raises(self) -> None:
        messages: asyncio.Queue = asyncio.Queue()
        await messages.put({"type": "no.such.handler"})
        consumer = ConsoleConsumer()

        with pytest.raises(ValueError, match="No handler"):
            await asyncio.wait_for(
                consumer({"type": "websocket"}, messages.get, None), 5
            )

    async def test_it_takes_one_message_at_a_time(self) -> None:
        messages: asyncio.Queue = asyncio.Queue()
        running, most = 0, 0

        class Slow(ConsoleConsumer):
            async def dispatch(self, message):
                nonlocal running, most
                if message["type"] == "websocket.disconnect":
                    await super().dispatch(message)
                running += 1
                most = max(most, running)
                await asyncio.sleep(0.05)
                running -= 1

        consumer = Slow()
        consumer.joined = False
        call = asyncio.create_task(consumer({"type": "websocket"}, messages.get, None))
        await asyncio.sleep(0.01)
        for n in range(3):
            await messages.put({"type": "websocket.receive", "text": str(n)})
            await consumer.channel_layer.send(
                consumer.channel_name, {"type": "console.batch", "batch": n}
            )
        await asyncio.sleep(0.4)
        await messages.put({"type": "websocket.disconnect", "code": 1000})
        await asyncio.wait_for(call, 5)

        # Both sides had messages waiting; never two handlers at once.
        assert most == 1
