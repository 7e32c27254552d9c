"""The disk room of a server, one account for everything that writes to its files.

The file routes and every SFTP session and open file of a server draw on the same
quota. The room is measured when a writer comes while none is at work: the server's
disk limit less what its directory holds, and never more than the disk has free.
Each writer then reserves the bytes it adds, and keeps them until it is done; once
the last writer is done, the next one measures again and sees what was written.

NB: while writers are at work, the room is not measured again: what the server's
own process adds or removes meanwhile, and files that shrink, count from the next
measure on.
"""

import asyncio
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from devdaemon.errors import TooLarge
from devdaemon.stats import directory_size

if TYPE_CHECKING:
    from devdaemon.servers import Server


class Quota:
    def __init__(self, server: "Server") -> None:
        self.server = server
        self.used = 0
        self.free = 0
        self.reserved = 0
        self.writers: set[object] = set()
        self.lock = asyncio.Lock()

    async def reserve(self, writer: object, growth: int) -> None:
        """Let `writer` add `growth` bytes to the server's files, or TooLarge.

        A writer that adds nothing still counts as at work: a file it rewrites
        may be shorter on disk for a while than what it holds.
        """
        async with self.lock:
            await self.measure()
            if growth > 0:
                room = self.left()
                if growth > room:
                    raise TooLarge(self.refusal(room))
                self.reserved += growth
            self.writers.add(writer)

    def release(self, writer: object) -> None:
        """`writer` is done; its bytes are on disk, where a new measure finds them."""
        self.writers.discard(writer)

    @contextmanager
    def writer(self) -> Iterator[object]:
        """A writer for one request, released however the request ends."""
        writer = object()
        try:
            yield writer
        finally:
            self.release(writer)

    def refusal(self, room: int) -> str:
        return (
            f"disk quota exceeded: server {self.server.id} may use "
            f"{self.server.config.limits.disk_mb} MB and has {max(room, 0)} bytes left"
        )

    async def measure(self) -> None:
        if self.writers:
            return
        directory = self.server.directory
        self.used = await asyncio.to_thread(directory_size, directory)
        self.free = shutil.disk_usage(directory).free
        self.reserved = 0

    def left(self) -> int:
        limit = self.server.config.limits.disk_bytes
        return min(limit - self.used, self.free) - self.reserved
