"""The mount-wide byte budget: bytes of requests held in memory, not in the disk cache.

Design. Fetched bytes stream into the disk cache through a few reusable buffers per
connection (:mod:`glacierfs.read.fetch`), so requests in progress hold no response in
memory. Only when the disk cannot take them (full, failing) are a request's leaves kept
in memory for its waiters: such a request holds its share of this budget from before
its GET until its bytes are handed out and offered to the disk, so a full disk slows
the fetches instead of piling responses up in memory. A request takes its whole
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
