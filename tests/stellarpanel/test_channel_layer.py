import os

import pytest
from channels.layers import get_channel_layer


class TestChannelLayer:
    def test_it_uses_redis_when_redis_url_is_set(self) -> None:
        layer = get_channel_layer()
        expected = "RedisChannelLayer" if os.getenv("REDIS_URL") else "InMemory"
        assert expected in type(layer).__name__

    @pytest.mark.asyncio
    async def test_it_delivers_a_group_message(self) -> None:
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add("node-status", channel)
        try:
            await layer.group_send("node-status", {"type": "node.status", "n": 1})
            assert await layer.receive(channel) == {"type": "node.status", "n": 1}
        finally:
            await layer.group_discard("node-status", channel)
