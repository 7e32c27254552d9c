"""The nodes' live status, for admins' browsers: what each heartbeat sweep found.

The heartbeat publishes one message a sweep to the group `nodes` (see
`nodes.heartbeat.publish`); every admin's socket forwards it as a `node status`
event, and the page patches its badges and latencies in place.
"""

from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer

GROUP = "nodes"


class NodeStatusConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_staff:
            # Closing before accepting refuses the handshake (HTTP 403).
            await self.close()
            return
        await self.channel_layer.group_add(GROUP, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(GROUP, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        # The socket only speaks one way: anything the browser sends is ignored.
        return None

    async def node_status(self, message: dict[str, Any]) -> None:
        await self.send_json({"event": "node status", "args": message["nodes"]})
