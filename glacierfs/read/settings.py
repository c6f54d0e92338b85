"""How a mount reads: request sizes, read-ahead, connections, budget, strictness."""

from __future__ import annotations

from dataclasses import dataclass, field

from glacierfs.config import (
    DEFAULT_BLOCK_SIZE,
    DEFAULT_CONNECTIONS,
    DEFAULT_MAX_REQUEST,
    DEFAULT_MEMORY_BUDGET,
    DEFAULT_READ_AHEAD,
    Options,
)
from glacierfs.ranges import floor_power_of_two
from glacierfs.read.prefetch import Prefetcher
from glacierfs.retry import RetryPolicy
from glacierfs.treehash import MIB


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
    holds_responses: bool = True
    """Whether a response is held whole in memory until it is stored (today's fetch):
    then requests are sized so that one per connection fits in the memory budget
    (:meth:`largest_request`). False once fetches stream to the disk cache."""

    @classmethod
    def from_options(cls, options: Options, retry: RetryPolicy) -> ReaderSettings:
        """The settings a mount (and ``glacierfs retrieve``, in process) reads with."""
        return cls(
            block_size=options.block_size,
            max_request=options.max_request,
            read_ahead=options.read_ahead,
            connections=options.connections,
            memory_budget=options.memory_budget,
            strict=options.verify == "strict",
            retry=retry,
        )

    def prefetcher(self) -> Prefetcher:
        return Prefetcher()

    def largest_request(self) -> int:
        """The most a request may be: ``max_request``; and while responses are held in
        memory, a connection's share of the memory budget (every connection busy with
        read-ahead would otherwise wait on the budget, not on the link), at least a block."""
        if not self.holds_responses:
            return self.max_request
        share = floor_power_of_two(max(self.memory_budget // self.connections // MIB, 1)) * MIB
        return max(min(self.max_request, share), self.block_size)
