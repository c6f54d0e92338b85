"""Eviction: the least recently used leaves go first; last uses are written lazily.

The cache holds at most ``capacity`` bytes of leaves. A put that would exceed it first
evicts the least recently used leaves, of any object but never those being put (see
:mod:`.leaves` for how a leaf is removed: its row first, then its bytes).

Last-use times are coarse: kept in memory on get and put, written to the index every
few seconds, before an eviction and at close, so a warm read does not write SQLite.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from glacierfs.cache.disk.index import Index, Unwritable

log = logging.getLogger(__name__)

TOUCH_FLUSH_SECONDS = 5.0
"""How stale last-use times in the index may get. A warm read must not write SQLite, and
losing a few seconds of recency in a crash only blurs the LRU order."""

Victim = tuple[str, int, int]
"""A leaf to remove: key, index, length."""


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

    def victims(self, excess: int, keep: tuple[str, int, int]) -> list[Victim]:
        """The least recently used leaves, not ``keep`` (key, first, stop), that free
        ``excess`` bytes, or all there are."""
        self.flush()
        query = (
            "SELECT key, idx, length FROM leaves"
            " WHERE NOT (key = ? AND idx >= ? AND idx < ?) ORDER BY used, key, idx"
        )
        victims: list[Victim] = []
        freed = 0
        cursor = self._index.execute(query, keep)
        for key, index, length in cursor:
            victims.append((key, index, length))
            freed += length
            if freed >= excess:
                break
        cursor.close()
        return victims
