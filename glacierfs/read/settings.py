"""How a mount reads: request sizes, read-ahead, connections, budget, strictness."""

from __future__ import annotations

from dataclasses import dataclass, field

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

    def prefetcher(self) -> Prefetcher:
        return Prefetcher(self.block_size, self.max_request, self.read_ahead)
