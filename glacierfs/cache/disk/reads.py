"""Verified reads: no byte leaves the cache unchecked in this lifetime.

The first time a granule of a leaf is read in a DiskCache's lifetime (see
:mod:`.granules`), its XXH3 sum is checked; afterwards it is trusted until close. A
power loss always starts a new lifetime, so a row whose bytes never reached the disk
fails its check on its first read. A leaf whose row has no sums (written before schema
3) is checked whole by its SHA-256 instead, once, and its sums are then filled in. A
leaf that fails its check, or reads short (a truncated file), is dropped: its row goes,
and its bytes are punched out, so that the next put writes it afresh.

Reads take the lock only to find the row and to record the outcome: ``pread`` and
hashing run outside it. A read that overlapped a removal in its object (the generation
moved) reads again, up to :data:`READ_ATTEMPTS` times, then is a miss.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from glacierfs.cache.disk import granules
from glacierfs.cache.disk.blocks import BlockStore, Handle
from glacierfs.cache.disk.eviction import Eviction
from glacierfs.cache.disk.leaves import LeafIndex, Located
from glacierfs.treehash import MIB

log = logging.getLogger(__name__)

READ_ATTEMPTS = 8
"""Reads of a leaf raced by removals in its object before giving up with a miss."""


@dataclass
class Snapshot:
    """Rows of an object as they were at ``generation``: index -> (length, digest, sums
    or None); ``handle``, its data file held for the caller (None when there is none)."""

    generation: int
    rows: dict[int, tuple[int, bytes, bytes | None]]
    handle: Handle | None


class Reads:
    """Reads of leaves and of ranges in them, checked as the module says. ``lock`` is
    the DiskCache's, which guards ``leaves``, ``blocks`` and ``eviction``."""

    def __init__(
        self, lock: threading.Lock, leaves: LeafIndex, blocks: BlockStore, eviction: Eviction
    ) -> None:
        self._lock = lock
        self._leaves = leaves
        self._blocks = blocks
        self._eviction = eviction
        self.bytes_read = 0  # from the data files, counted under the lock (status shows it)

    def leaf(self, key: str, index: int, owner: str | None) -> tuple[bytes, bytes] | None:
        """The whole leaf and its row's digest, or None (absent, not ``owner``'s, damaged)."""
        for _ in range(READ_ATTEMPTS):
            settled, found = self._leaf_once(key, index, owner)
            if settled:
                return found
        return None

    def range(self, key: str, index: int, offset: int, length: int, owner: str) -> bytes | None:
        """Bytes ``[offset, offset + length)`` of the leaf, or None as :meth:`leaf`."""
        if offset < 0 or length < 0:
            raise ValueError(f"bytes {offset} + {length} of a leaf")
        for _ in range(READ_ATTEMPTS):
            settled, found = self._range_once(key, index, offset, length, owner)
            if settled:
                return found
        return None

    # --- for a mount's inline reads (glacierfs.cache.local) -----------------------------

    def generation(self, key: str) -> int:
        """Removals in ``key`` so far. Read without the lock: one dict lookup, atomic under
        the GIL; a removal bumps it before it punches or rewrites any byte."""
        return self._leaves.generation[key]

    def snapshot(self, key: str, first: int, stop: int, hold: bool) -> Snapshot:
        """The rows of leaves ``[first, stop)`` of ``key`` and their generation, read
        together; with ``hold``, the data file too, held until :meth:`release`."""
        with self._lock:
            generation = self._leaves.generation[key]
            rows = self._leaves.sums_of(key, first, stop)
            handle = None
            if hold and rows:
                try:
                    handle = self._blocks.acquire(key, write=False)
                except OSError as error:
                    log.debug("disk cache: opening the data file of %s: %s", key, error)
                    rows = {}
        return Snapshot(generation, rows, handle)

    def release(self, handles: Iterable[Handle]) -> None:
        with self._lock:
            for handle in handles:
                self._blocks.release(handle)

    def touch(self, leaves: Iterable[tuple[str, int]]) -> None:
        """Leaves read inline since the last call: their last use is now."""
        with self._lock:
            for key, index in leaves:
                self._eviction.touch(key, index)

    def drop_damaged(self, key: str, index: int, generation: int) -> None:
        """A leaf read short or failing its sums at ``generation``: dropped, unless a
        removal came since (then the read raced it, and proves nothing)."""
        with self._lock:
            if self._leaves.generation[key] != generation:
                return
            length = self._leaves.length(key, index)
            if length is not None:
                log.warning("disk cache: leaf %d of %s is damaged on disk: dropped", index, key)
                self._leaves.remove_quietly([(key, index, length)])

    # --- the checked reads -----------------------------------------------------------

    def _leaf_once(
        self, key: str, index: int, owner: str | None
    ) -> tuple[bool, tuple[bytes, bytes] | None]:
        """One attempt: (True, found or None), or (False, None) when raced by a removal."""
        with self._lock:
            generation = self._leaves.generation[key]
            found = self._leaves.locate(key, index, owner)
        if found is None:
            return True, None
        data = self._blocks.read(found.handle, index * MIB, found.length)
        good, sums = data is not None, None
        if data is not None and not found.whole:
            if found.sums is not None:
                unchecked = _unset(found.checked, range(granules.count(found.length)))
                good = granules.matches(memoryview(data), 0, found.sums, unchecked)
            else:
                good = hashlib.sha256(data).digest() == found.digest
                sums = granules.sums(data) if good else None
        checked = granules.all_of(found.length)
        if not self._settle(key, index, found, generation, good, checked, found.length):
            return False, None
        if data is None or not good:
            return True, None
        if sums is not None:
            with self._lock:
                self._leaves.fill_sums(key, index, found.digest, sums)
        return True, (data, found.digest)

    def _range_once(
        self, key: str, index: int, offset: int, length: int, owner: str
    ) -> tuple[bool, bytes | None]:
        """One attempt, as :meth:`_leaf_once`."""
        with self._lock:
            generation = self._leaves.generation[key]
            found = self._leaves.locate(key, index, owner)
        if found is None:
            return True, None
        if offset + length > found.length or found.sums is None or length == 0:
            with self._lock:
                self._blocks.release(found.handle)
            if offset + length > found.length:
                raise ValueError(f"bytes {offset} + {length} of a leaf of {found.length}")
            if length == 0:
                return True, b""
            whole = self.leaf(key, index, owner)  # no sums: checked whole, sums filled in
            return True, None if whole is None else whole[0][offset : offset + length]
        wanted = granules.touched(offset, length)
        unchecked = _unset(found.checked, wanted)
        base = index * MIB
        if not unchecked:
            data = self._blocks.read(found.handle, base + offset, length)
            good, read = data is not None, length
        else:  # read the granules it touches, to check them
            start = wanted.start * granules.GRANULE
            stop = min(found.length, wanted.stop * granules.GRANULE)
            read = stop - start
            covering = self._blocks.read(found.handle, base + start, stop - start)
            good = covering is not None and granules.matches(
                memoryview(covering), wanted.start, found.sums, unchecked
            )
            data = None if covering is None else covering[offset - start : offset - start + length]
        if not self._settle(key, index, found, generation, good, _mask(wanted), read):
            return False, None
        return True, data if good else None

    def _settle(
        self,
        key: str,
        index: int,
        found: Located,
        generation: int,
        good: bool,
        checked: int,
        read: int,
    ) -> bool:
        """Record a read's outcome (``read``: bytes asked of the data file); False when it
        was raced by a removal."""
        with self._lock:
            self.bytes_read += read
            self._blocks.release(found.handle)
            if self._leaves.generation[key] != generation:
                return False
            if not good:
                log.warning("disk cache: leaf %d of %s is damaged on disk: dropped", index, key)
                self._leaves.remove_quietly([(key, index, found.length)])
                return True
            self._leaves.mark_checked(key, index, found.length, checked)
            self._eviction.touch(key, index)
        return True


def _mask(granule_range: range) -> int:
    return ((1 << granule_range.stop) - 1) & ~((1 << granule_range.start) - 1)


def _unset(checked: int, granule_range: range) -> list[int]:
    """The granules of ``granule_range`` not set in ``checked``."""
    return [g for g in granule_range if not checked >> g & 1]
