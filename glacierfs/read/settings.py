"""How a mount reads: request sizes, read-ahead, connections, budget, strictness."""

from __future__ import annotations

from dataclasses import dataclass, field

from glacierfs.config import Options
from glacierfs.read.prefetch import Prefetcher
from glacierfs.retry import RetryPolicy
from glacierfs.treehash import MIB


@dataclass(frozen=True)
class ReaderSettings:
    block_size: int = MIB
    max_request: int = 8 * MIB
    read_ahead: int = 64 * MIB
    connections: int = 8
    memory_budget: int = 64 * MIB
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
