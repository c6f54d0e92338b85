"""How a mount reads: request sizes, read-ahead, connections, budget, strictness."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from glacierfs.config import (
    DEFAULT_BLOCK_SIZE,
    DEFAULT_CONNECTIONS,
    DEFAULT_MAX_REQUEST,
    DEFAULT_MEMORY_BUDGET,
    DEFAULT_MEMORY_CACHE,
    DEFAULT_READ_AHEAD,
    Options,
)
from glacierfs.ranges import floor_power_of_two
from glacierfs.read.prefetch import Prefetcher
from glacierfs.retry import RetryPolicy
from glacierfs.treehash import MIB

IN_FLIGHT_SHARE = 3 / 16
"""The share of the disk cache that requests streaming into it may claim at once (see
:meth:`ReaderSettings.for_cache`)."""


@dataclass(frozen=True)
class ReaderSettings:
    """What a mount reads with; the defaults are the daemon's (:mod:`glacierfs.config`)."""

    block_size: int = DEFAULT_BLOCK_SIZE
    max_request: int = DEFAULT_MAX_REQUEST
    read_ahead: int = DEFAULT_READ_AHEAD
    connections: int = DEFAULT_CONNECTIONS
    memory_budget: int = DEFAULT_MEMORY_BUDGET
    strict: bool = False
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    memory_cache: int = DEFAULT_MEMORY_CACHE
    holds_responses: bool = True
    """Whether fetched bytes are handed over through memory (the loader's fallback, for a
    cache too small to stream into: a response is held until stored, its leaves go to
    the memory cache for their readers). Then requests are sized so that one per
    connection fits in the memory budget (:meth:`largest_request`), and the window stays
    within two thirds of the memory cache (:meth:`read_ahead_ceiling`), or leaves fetched
    ahead are pushed out before they are read and read back from disk (measured: 958 of
    1,024 MiB on loopback with a 1 GiB window). False when fetches stream to the disk
    cache (:meth:`for_cache`)."""
    cache_capacity: int | None = None
    """The disk cache's size, which bounds the window and, when fetches stream into it,
    the requests (:meth:`for_cache`); None: no such bound."""

    @classmethod
    def from_options(cls, options: Options, retry: RetryPolicy) -> ReaderSettings:
        """The settings a mount (and ``glacierfs retrieve``, in process) reads with."""
        return cls(
            block_size=options.block_size,
            max_request=options.max_request,
            read_ahead=options.read_ahead,
            connections=options.connections,
            memory_budget=options.memory_budget,
            memory_cache=options.memory_cache,
            strict=options.verify == "strict",
            retry=retry,
        )

    def prefetcher(self) -> Prefetcher:
        return Prefetcher()

    def for_cache(self, capacity: int) -> ReaderSettings:
        """These settings over a disk cache of ``capacity`` bytes. Fetches stream into it
        when a request per connection, a block at least, fits in 3/16 of it: with the
        window (an eighth at most), what is fetched and not yet read then stays under
        a third of the cache, so no leaf fetched ahead is evicted before it is read
        (measured without such a bound: leaves evicted, then fetched again). A smaller
        cache gets fetched bytes through memory, as :attr:`holds_responses` says."""
        streams = self.connections * self.block_size <= capacity * IN_FLIGHT_SHARE
        return replace(self, cache_capacity=capacity, holds_responses=not streams)

    def read_ahead_ceiling(self) -> int:
        """The largest window: ``read_ahead``, an eighth of the disk cache, and while
        fetched bytes pass through memory, two thirds of the memory cache."""
        ceiling = self.read_ahead
        if self.cache_capacity is not None:
            ceiling = min(ceiling, self.cache_capacity // 8)
        if self.holds_responses:
            ceiling = min(ceiling, self.memory_cache * 2 // 3)
        return ceiling

    def largest_request(self) -> int:
        """The most a request may be: ``max_request``, at least a block; and a connection's
        share of what may be in flight: while responses are held in memory, of the memory
        budget (every connection busy with read-ahead would otherwise wait on the budget,
        not on the link); when they stream, of 3/16 of the disk cache (:meth:`for_cache`)."""
        if self.holds_responses:
            room = self.memory_budget
        elif self.cache_capacity is not None:
            room = int(self.cache_capacity * IN_FLIGHT_SHARE)
        else:
            return self.max_request
        share = floor_power_of_two(max(room // self.connections // MIB, 1)) * MIB
        return max(min(self.max_request, share), self.block_size)
