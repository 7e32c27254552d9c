import asyncio
import os

import pytest
from channels.layers import get_channel_layer

from stellarpanel import layers
from stellarpanel.layers import MemoryChannelLayer


class TestChannelLayer:
    def test_it_uses_redis_when_redis_url_is_set(self) -> None:
        layer = get_channel_layer()
        expected = "Redis" if os.getenv("REDIS_URL") else "MemoryChannelLayer"
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


@pytest.mark.asyncio
class TestMemoryChannelLayer:
    async def test_each_member_gets_its_own_copy_in_order(self) -> None:
        layer = MemoryChannelLayer()
        members = [await layer.new_channel() for _ in range(3)]
        for channel in members:
            await layer.group_add("viewers", channel)
        for n in (1, 2):
            await layer.group_send("viewers", {"type": "batch", "lines": [n]})

        got = [[await layer.receive(c) for _ in range(2)] for c in members]
        assert (
            got
            == [[{"type": "batch", "lines": [1]}, {"type": "batch", "lines": [2]}]] * 3
        )
        got[0][0]["lines"].append("changed")
        assert got[1][0]["lines"] == [1]

    async def test_a_full_member_misses_the_message_and_the_others_get_it(
        self,
    ) -> None:
        layer = MemoryChannelLayer(capacity=1)
        full, free = await layer.new_channel(), await layer.new_channel()
        await layer.group_add("viewers", full)
        await layer.group_add("viewers", free)
        await layer.send(full, {"type": "first"})

        await layer.group_send("viewers", {"type": "batch"})
        assert await layer.receive(full) == {"type": "first"}
        assert await layer.receive(free) == {"type": "batch"}
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(layer.receive(full), 0.1)

    async def test_it_drops_expired_messages_and_their_channels_groups(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(layers, "SWEEP_S", 0.0)
        layer = MemoryChannelLayer(expiry=0)
        stale = await layer.new_channel()
        await layer.group_add("viewers", stale)
        await layer.group_send("viewers", {"type": "never read"})
        await asyncio.sleep(0.01)

        await layer.group_send("others", {"type": "sweeps"})
        assert stale not in layer.channels
        assert stale not in layer.groups.get("viewers", {})

    async def test_it_sweeps_at_most_once_a_sweep_period(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        layer = MemoryChannelLayer()
        sweeps = []
        monkeypatch.setattr(
            layers.InMemoryChannelLayer,
            "_clean_expired",
            lambda self: sweeps.append(1),
        )
        channel = await layer.new_channel()
        await layer.group_add("viewers", channel)
        for _ in range(100):
            await layer.group_send("viewers", {"type": "batch"})
            await layer.receive(channel)
        assert len(sweeps) == 1

        monkeypatch.setattr(layers, "SWEEP_S", 0.0)
        await layer.group_send("viewers", {"type": "batch"})
        assert len(sweeps) == 2
