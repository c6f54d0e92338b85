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
from glacierfs.read.prefetch import Prefetcher
from glacierfs.retry import RetryPolicy


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
        return Prefetcher(self.block_size, self.max_request, self.read_ahead)
