"""The mount-wide byte budget: bytes of requests held in memory, not in the disk cache.

Design. Fetched bytes stream into the disk cache through a few reusable buffers per
connection (:mod:`glacierfs.read.fetch`), so requests in progress hold no response in
memory. Only when the disk cannot take them (full, failing, a cache too small to stream
into) are a request's leaves kept in memory for its waiters: such a request holds its
share of this budget from before its GET until its bytes are handed out and offered to
the disk, so a full disk slows the fetches instead of piling responses up in memory. It
bounds memory, not the read-ahead window (:mod:`glacierfs.read.prefetch`). Shares are
granted by a :class:`~glacierfs.read.scheduler.Scheduler`, in the order the connections
are (demand first, then the stream with the fewest requests holding some, nearest
first), and whole: a request never holds part of its share while waiting for the rest,
so two large requests never each hold half of the budget and wait on each other
forever, and one larger than the whole budget takes all of it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from glacierfs.read.scheduler import REQUEST, Scheduler


class ByteBudget:
    """``units`` units (leaves, for the reader) shared by every request of a mount."""

    def __init__(self, units: int) -> None:
        self._shares = Scheduler(max(units, 1))

    @asynccontextmanager
    async def hold(self, units: int) -> AsyncIterator[None]:
        """Wait until ``units`` are granted (the request's ticket, :data:`REQUEST`, gives
        its place), hold them for the block, then give them back."""
        async with self._shares.connection(REQUEST.get(), units):
            yield
