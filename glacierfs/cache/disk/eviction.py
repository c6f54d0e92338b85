"""Eviction: delivered leaves first, then replaceable ones, least recently used first
within each, never a leaf in custody; last uses are written lazily.

The cache holds at most ``capacity`` bytes of leaves. A put that would exceed it first
evicts leaves, of any object but never those being put (see :mod:`.leaves` for how a
leaf is removed: its row first, then its bytes). Which leaves may go is the classes'
say (:mod:`.classes`): without them, any leaf, least recently used first. With them, a
put that only custody leaves could make room for evicts nothing and is refused (see
:mod:`.room`).

Last-use times are coarse: kept in memory on get and put, written to the index every
few seconds, before an eviction and at close, so a warm read does not write SQLite.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Generator, Iterable
from contextlib import closing

from glacierfs.cache.disk.classes import CUSTODY, DELIVERED, REPLACEABLE, ClassBytes, Classes
from glacierfs.cache.disk.index import Index, Unwritable

log = logging.getLogger(__name__)

TOUCH_FLUSH_SECONDS = 5.0
"""How stale last-use times in the index may get. A warm read must not write SQLite, and
losing a few seconds of recency in a crash only blurs the LRU order."""

Victim = tuple[str, int, int]
"""A leaf to remove: key, index, length."""

NOTHING = ("", 0, 0)
"""No leaves to keep from eviction (a ``keep`` of key, first, stop)."""


class Eviction:
    """Last uses of leaves, and the choice of victims. Not thread-safe: the DiskCache's
    lock guards it. ``clock`` gives last-use times in seconds."""

    def __init__(self, index: Index, clock: Callable[[], float]) -> None:
        self._index = index
        self._clock = clock
        self._touched: dict[tuple[str, int], float] = {}  # last uses not yet in the index
        self._last_flush = clock()

    def touch(self, key: str, index: int) -> None:
        """The leaf was used now; written to the index within a few seconds."""
        now = self._clock()
        self._touched[(key, index)] = now
        if now - self._last_flush >= TOUCH_FLUSH_SECONDS:
            self.flush()

    def note(self, key: str, index: int, used: float) -> None:
        """The leaf was used at ``used``; written at the next flush."""
        self._touched[(key, index)] = used

    def forget(self, key: str, index: int) -> None:
        """The leaf is gone: its last use need not be written."""
        self._touched.pop((key, index), None)

    def flush(self) -> None:
        """Write the last uses kept in memory to the index (lost on a full disk)."""
        self._last_flush = self._clock()
        if not self._touched:
            return
        rows = [(used, key, index) for (key, index), used in self._touched.items()]
        self._touched.clear()
        try:
            with self._index.transaction() as db:
                db.executemany("UPDATE leaves SET used = ? WHERE key = ? AND idx = ?", rows)
        except Unwritable as error:
            log.debug("disk cache: last-use times not saved: %s", error)

    def victims(
        self, excess: int, keep: tuple[str, int, int], classes: Classes | None = None
    ) -> list[Victim]:
        """Leaves, not ``keep`` (key, first, stop), that free ``excess`` bytes: the least
        recently used of any class without ``classes``, or all there are; with them,
        delivered then replaceable ones, and none at all when they cannot free enough."""
        self.flush()
        if classes is None:
            with closing(self._rows(keep)) as rows:
                return _enough(rows, excess)
        found = self.evictable(keep, classes, excess)
        if sum(length for _, _, length in found) < excess:
            return []
        return _enough(found, excess)

    def evictable(
        self, keep: tuple[str, int, int], classes: Classes, enough: int | None = None
    ) -> list[Victim]:
        """The leaves that may go, in the order they would (delivered, then replaceable,
        least recently used first in each): all of them, or the first that free
        ``enough`` bytes."""
        delivered = self._delivered(keep, classes)
        freed = sum(length for _, _, length in delivered)
        replaceable: list[Victim] = []
        now = classes.clock()
        with closing(self._rows(keep)) as rows:
            for key, index, length in rows:
                if enough is not None and freed >= enough:
                    break
                if classes.of(key, index, now) == REPLACEABLE:
                    replaceable.append((key, index, length))
                    freed += length
        return delivered + replaceable

    def _delivered(self, keep: tuple[str, int, int], classes: Classes) -> list[Victim]:
        if not classes.delivered:
            return []
        query = (
            "SELECT key, idx, length FROM leaves WHERE key IN (SELECT value FROM json_each(?))"
            " AND NOT (key = ? AND idx >= ? AND idx < ?) ORDER BY used, key, idx"
        )
        keys = json.dumps(sorted(classes.delivered))
        with closing(self._index.execute(query, (keys, *keep))) as cursor:
            return [(key, index, length) for key, index, length in cursor]

    def class_bytes(self, classes: Classes | None) -> ClassBytes:
        """Bytes present in each class (all replaceable without classes)."""
        if classes is None:
            return ClassBytes(replaceable=sum(row[2] for row in self._rows(NOTHING)))
        sums: Counter[str] = Counter()
        now = classes.clock()
        for key, index, length in self._rows(NOTHING):
            sums[classes.of(key, index, now)] += length
        return ClassBytes(sums[DELIVERED], sums[REPLACEABLE], sums[CUSTODY])

    def _rows(self, keep: tuple[str, int, int]) -> Generator[Victim]:
        """Every leaf but ``keep``, least recently used first; the cursor is closed once
        the rows are read or the iterator is closed."""
        query = (
            "SELECT key, idx, length FROM leaves"
            " WHERE NOT (key = ? AND idx >= ? AND idx < ?) ORDER BY used, key, idx"
        )
        with closing(self._index.execute(query, keep)) as cursor:
            yield from cursor


def _enough(rows: Iterable[Victim], excess: int) -> list[Victim]:
    """The first rows that free ``excess`` bytes, or all there are."""
    victims: list[Victim] = []
    freed = 0
    for victim in rows:
        if freed >= excess:
            break
        victims.append(victim)
        freed += victim[2]
    return victims
