"""The classes of cached leaves, as the layer above tells the cache: which may go first.

The cache never sees a job record; the layer that does (:mod:`glacierfs.custody`) hands
it, through a callable given to the DiskCache, a :class:`Classes` value: the keys whose
archives were *delivered*, and for each key the leaf ranges a *live* job can send again,
each until a moment of :attr:`Classes.clock` (the service's time, for a mount). A leaf is

- :data:`DELIVERED` when its key is delivered: it goes first;
- :data:`REPLACEABLE` while a live job covers it: it goes next;
- :data:`CUSTODY` otherwise: paid for, and no one can send it again for free. Never
  evicted.

Least recently used first within each class. Without classes (a DiskCache given none)
every leaf is replaceable: plain LRU.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

DELIVERED, REPLACEABLE, CUSTODY = "delivered", "replaceable", "custody"

Live = tuple[int, int, float]
"""Leaves ``[first, stop)`` of a key that a live job can send until a moment of the clock."""


@dataclass(frozen=True)
class Classes:
    """What may be evicted: delivered keys, and the leaves live jobs cover, until when."""

    delivered: frozenset[str] = frozenset()
    live: Mapping[str, tuple[Live, ...]] = field(default_factory=dict)
    clock: Callable[[], float] = time.time

    def of(self, key: str, index: int, now: float) -> str:
        """The class of leaf ``index`` of ``key`` at ``now`` (of :attr:`clock`)."""
        if key in self.delivered:
            return DELIVERED
        for first, stop, until in self.live.get(key, ()):
            if first <= index < stop and now < until:
                return REPLACEABLE
        return CUSTODY


ClassesOf = Callable[[], Classes]
"""How a DiskCache learns the classes: called at each choice of victims (under its lock,
from any thread), so it must answer at once (say, the latest value the layer above set)."""


@dataclass(frozen=True)
class ClassBytes:
    """Bytes of leaves present in each class."""

    delivered: int = 0
    replaceable: int = 0
    custody: int = 0
