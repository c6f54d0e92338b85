"""Read-ahead for one open file: how much to fetch, and in requests of what size.

Design. Each open file handle has a :class:`Prefetcher` that watches the offsets the
kernel asks for. A first read, or a read that is not near where the last one ended,
is random access: only the blocks it touches are fetched, in the smallest requests
(``block_size``), so random access wastes no bytes. Reads that follow on from the
last one build a *streak*; the longer the streak, the larger each request (up to
``max_request``, always 1 MiB x 2^k aligned so the service sends a checksum) and
the further ahead data is fetched (up to ``read_ahead``). A read a little behind or
ahead of the expected offset (the kernel's own readahead reorders requests, and
``tar`` skips small gaps) keeps the streak: it is inside the window, and what is in
flight there is still wanted. Nothing fetched ahead is thrown away: every leaf goes
to the disk cache, so a reader that stops early has cost bytes, never a refetch.

The per-mount memory budget (in :mod:`glacierfs.read.reader`) bounds what all of this
holds in memory at once, whatever the number of handles.
"""

from __future__ import annotations

from dataclasses import dataclass

from glacierfs.ranges import floor_power_of_two
from glacierfs.treehash import MIB


@dataclass(frozen=True)
class Advice:
    """Fetch leaves up to ``ahead`` bytes past this read, in requests of ``unit`` leaves."""

    unit: int
    ahead: int


class Prefetcher:
    """The access pattern of one open file handle."""

    def __init__(self, block_size: int, max_request: int, read_ahead: int) -> None:
        self.block_leaves = block_size // MIB
        self.max_leaves = max(max_request // MIB, self.block_leaves)
        self.read_ahead = read_ahead
        self.next_offset: int | None = None
        self.streak = 0

    def advise(self, offset: int, size: int) -> Advice:
        """Record a read and say how much to fetch around it."""
        expected = self.next_offset
        window = max(self.streak, 2 * MIB)
        if expected is not None and expected - window <= offset <= expected + window:
            self.streak += size
        else:
            self.streak = 0
        self.next_offset = offset + size
        if self.streak == 0:
            return Advice(self.block_leaves, 0)
        unit = floor_power_of_two(max(self.streak // MIB, 1))
        unit = max(self.block_leaves, min(unit, self.max_leaves))
        ahead = min(2 * self.streak, self.read_ahead)
        return Advice(unit, ahead)
