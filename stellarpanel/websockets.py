"""The middleware in front of the panel's WebSocket consumers.

Channels' session middleware wraps every message a consumer sends, to save the
session and set its cookie on an HTTP response. A WebSocket sends no HTTP
response after its handshake, so that check can never act there; on a console
that fans a batch out to a hundred viewers it runs a hundred times a batch. This
stack reads the session once, when the socket opens, and leaves send alone.
"""

from typing import Any

from channels.auth import AuthMiddleware
from channels.sessions import (
    CookieMiddleware,
    InstanceSessionWrapper,
    SessionMiddleware,
)


class WebSocketSessionMiddleware(SessionMiddleware):
    async def __call__(self, scope: dict, receive: Any, send: Any) -> Any:
        session = InstanceSessionWrapper(scope, send)
        await session.resolve_session()
        return await self.inner(session.scope, receive, send)


def WebSocketAuthStack(inner: Any) -> Any:  # noqa: N802 - named as channels' stacks
    """Cookies, the session read once, and the user, in front of `inner`."""
    return CookieMiddleware(WebSocketSessionMiddleware(AuthMiddleware(inner)))
