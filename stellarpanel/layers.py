"""The in-memory channel layer, for one panel process, with a cheaper fan-out.

Channels' own in-memory layer walks every channel and group for expired
messages on each receive and group send, and starts a task for each member of a
group it sends to. A console watched by a hundred viewers pays that a hundred
times over for every batch. This one sweeps for expired messages at most once
every SWEEP_S, and puts a group's messages on its members' queues in one pass.
Expiry, capacity (a full member misses the message, the others get it) and
group expiry behave as before, within SWEEP_S.
"""

import asyncio
import time
from contextlib import suppress
from copy import deepcopy
from typing import Any

from channels.layers import InMemoryChannelLayer

SWEEP_S = 1.0


class MemoryChannelLayer(InMemoryChannelLayer):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.swept = 0.0

    def _clean_expired(self) -> None:
        now = time.monotonic()
        if now - self.swept >= SWEEP_S:
            self.swept = now
            super()._clean_expired()

    async def flush(self) -> None:
        await super().flush()
        self.swept = 0.0

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        assert isinstance(message, dict), "Message is not a dict"
        self.require_valid_group_name(group)
        self._clean_expired()
        expires = time.time() + self.expiry
        for channel in list(self.groups.get(group, ())):
            queue = self.channels.get(channel)
            if queue is None:
                queue = self.channels[channel] = asyncio.Queue(
                    maxsize=self.get_capacity(channel)
                )
            # A full member misses it, as with ChannelFull on a send.
            with suppress(asyncio.QueueFull):
                queue.put_nowait((expires, deepcopy(message)))
