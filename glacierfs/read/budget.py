"""The mount-wide byte budget: bytes requested from the service and not yet stored.

Design. Memory is bounded twice: the memory cache by ``memory_cache`` bytes, and the bytes
of requests in progress by this budget, whatever the number of files and readers. A
request holds its share from before its GET until its bytes are on disk, so a slow disk
slows the fetches instead of piling responses up in memory. A request takes its whole
share under one lock, so two large requests never each hold half of the budget and wait
on each other forever.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio


class ByteBudget:
    """``units`` units (leaves, for the reader) shared by every request of a mount."""

    def __init__(self, units: int) -> None:
        self._free = trio.Semaphore(units)
        self._taking = trio.Lock()

    @asynccontextmanager
    async def hold(self, units: int) -> AsyncIterator[None]:
        """Wait until ``units`` are free, hold them for the block, then give them back."""
        held = 0
        try:
            async with self._taking:
                while held < units:
                    await self._free.acquire()
                    held += 1
            yield
        finally:
            for _ in range(held):
                self._free.release()
