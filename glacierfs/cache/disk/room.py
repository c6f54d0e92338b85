"""Room for new leaves: what eviction may free, under the classes the layer above gives,
and what a full cache says.

A put that needs room evicts delivered, then replaceable leaves (:mod:`.eviction`);
when only leaves in custody could make room it evicts nothing and is refused, so its
reader is served from memory (the path a full disk takes), and :class:`CustodyFull`
warns once, with the bytes in custody and how to free them. The same classes over the
same leaves can never free more later (time only turns replaceable leaves into
custody), so a refusal is remembered and the next put of the same size skips the scan
until a leaf is added or removed or the classes change. :meth:`Room.fit` evicts down to
the capacity; when the custody alone is over it (the user lowered ``cache_size``),
nothing in custody goes, and one line says so.
"""

from __future__ import annotations

import logging
from pathlib import Path

from glacierfs.cache.disk.classes import ClassBytes, Classes, ClassesOf
from glacierfs.cache.disk.eviction import NOTHING, Eviction
from glacierfs.cache.disk.index import Unwritable, WriteHealth
from glacierfs.cache.disk.leaves import LeafIndex
from glacierfs.humane import size

log = logging.getLogger(__name__)


class Room:
    """Eviction to make room, under the classes. Not thread-safe: the DiskCache's lock
    guards it."""

    def __init__(
        self,
        root: Path,
        leaves: LeafIndex,
        eviction: Eviction,
        classes: ClassesOf | None,
        health: WriteHealth,
    ) -> None:
        self._health = health
        self._leaves = leaves
        self.eviction = self._eviction = eviction
        self._classes = classes
        self._custody = CustodyFull(root)
        self._no_room: tuple[Classes, int, tuple[str, int, int], int] | None = None

    def make(self, excess: int, keep: tuple[str, int, int]) -> None:
        """Evict leaves, not ``keep`` (key, first, stop), that free ``excess`` bytes, or
        none when the classes let too few go."""
        classes = None if self._classes is None else self._classes()
        if classes is not None and self._no_room is not None:
            before, used, kept, refused = self._no_room
            same = before is classes and used == self._leaves.used and kept == keep
            if same and excess >= refused:
                return
        victims = self._eviction.victims(excess, keep, classes)
        self._no_room = None
        if classes is not None and not victims:
            self._no_room = (classes, self._leaves.used, keep, excess)
        self._leaves.remove(victims)

    def refused(self) -> None:
        """A put found no room: warn once if custody is what fills the cache."""
        if self._classes is None:
            return
        classes = self._classes()
        if not self._custody.would_warn(len(classes.delivered)):
            return
        custody = self._eviction.class_bytes(classes).custody
        if custody:
            self._custody.refused(custody, len(classes.delivered))

    def fit(self, capacity: int) -> None:
        """Evict down to ``capacity``: with classes, every leaf that may go if that is not
        enough, and one line that the custody alone is over it. A disk that refuses the
        index's writes is noted (one warning), not raised."""
        try:
            self._fit(capacity)
        except Unwritable as error:
            self._health.failed(error)

    def _fit(self, capacity: int) -> None:
        excess = self._leaves.used - capacity
        if excess <= 0:
            return
        if self._classes is None:
            self._leaves.remove(self._eviction.victims(excess, NOTHING))
            return
        classes = self._classes()
        victims = self._eviction.evictable(NOTHING, classes, excess)
        if sum(length for _, _, length in victims) < excess:
            custody = self._eviction.class_bytes(classes).custody
            self._custody.over(custody, capacity, len(classes.delivered))
        self._leaves.remove(victims)

    def class_bytes(self) -> ClassBytes:
        self._eviction.flush()
        return self._eviction.class_bytes(None if self._classes is None else self._classes())


class CustodyFull:
    """One warning when new leaves cannot be cached because the rest is in custody (again
    only once more archives are delivered, and still no room), and one line when the
    custody alone is over the capacity."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._warned_at: int | None = None  # archives delivered when it last warned
        self._over = False

    def would_warn(self, delivered: int) -> bool:
        """Whether a refusal now would warn (``delivered``: archives delivered so far)."""
        return self._warned_at is None or delivered > self._warned_at

    def refused(self, custody: int, delivered: int) -> None:
        """A put found no room beside ``custody`` bytes; ``delivered`` archives so far."""
        if not self.would_warn(delivered):
            return
        self._warned_at = delivered
        log.warning(
            "disk cache %s is full of outputs in custody (%d bytes, %s: paid for, not"
            " delivered, and no live job can send them again): reading without caching;"
            " free some with `glacierfs deliver`, `glacierfs release` or a larger"
            " cache_size",
            self._root,
            custody,
            size(custody),
        )

    def over(self, custody: int, capacity: int, delivered: int) -> None:
        """The custody alone exceeds ``capacity`` (the user lowered cache_size); the puts
        it refuses say nothing more until more archives are delivered."""
        if not self._over:
            self._over = True
            self._warned_at = delivered
            log.warning(
                "disk cache %s holds %d bytes in custody, more than cache_size %s: nothing in"
                " custody is dropped and nothing new is cached until some is delivered"
                " (`glacierfs deliver`) or released (`glacierfs release`)",
                self._root,
                custody,
                size(capacity),
            )
