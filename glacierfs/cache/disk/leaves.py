"""The leaf index: a row per leaf present, the owners it is good for, and its removal.

The row is the commit point (see :mod:`.puts`): bytes without a row are never read.
Each row holds the leaf's key, index, length, SHA-256 digest, how it was verified, its
last use and its owners.

Ownership. A leaf is good for the job that fetched it (its bytes matched that job's
response), not yet for other jobs that name the same object: a job record can claim
any archive. Each row names its owners, as opaque tokens (the reader's: the job
that fetched it), or ``*`` once the object is proven whole (the reader
found the tree hash of all its leaf digests to be the archive's, and ``share`` made
every leaf the archive's). ``get`` with an owner answers only leaves shared or owned by
it. A put of a leaf already held with the same digest adds its owner to the row (same
digest, same bytes); with another digest it replaces a row that is not shared, and
leaves a shared row alone. Rows of schema 1 (no owners) became owned by no one: they
are earned again by a put with the same digest (no write), by ``adopt`` (the reader's
proof that they make up a job's output), or by ``share``.

Removal. Rows are deleted first, then the bytes are punched out of the data file, and a
data file holding no leaves is deleted, but never bytes a put in progress is writing.
Every removal bumps its object's generation, so that a read that overlapped it (and may
have read a fresh hole) knows to read again.
"""

from __future__ import annotations

import logging
import sqlite3
from collections import Counter
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import NamedTuple

from glacierfs.cache.disk import granules
from glacierfs.cache.disk.blocks import BlockStore, Handle
from glacierfs.cache.disk.eviction import Eviction, Victim
from glacierfs.cache.disk.index import SHORT_OF_FILES, Index, Unwritable, WriteHealth

log = logging.getLogger(__name__)

SHARED = "*"
"""The owners of a leaf proven to be its archive's: good for every job that names it."""


class LeafRow(NamedTuple):
    """What the index says of a leaf: its SHA-256, how it was verified, whom it is good for.

    ``owners`` is :data:`SHARED`, or owner tokens separated by spaces ("" for none).
    """

    digest: bytes
    verified: str
    owners: str

    def usable_by(self, owner: str) -> bool:
        return self.owners == SHARED or owner in self.owners.split()


def merged(old: LeafRow | None, digest: bytes, verified: str, owner: str) -> LeafRow | None:
    """The row after ``owner`` puts a leaf with ``digest`` over ``old``; None: ``old`` stays.

    Same digest: the same bytes, now good for ``owner`` too (and checked by a block
    checksum if either put was). Another digest over a shared row: the row stays, as
    the archive's own bytes are proven. Otherwise the new leaf replaces the old.
    """
    if old is not None and old.digest == digest:
        how = "block" if "block" in (verified, old.verified) else old.verified
        return LeafRow(digest, how, with_owner(old.owners, owner))
    if old is not None and old.owners == SHARED:
        return None
    return LeafRow(digest, verified, owner)


def with_owner(owners: str, owner: str) -> str:
    if owners == SHARED:
        return SHARED
    return " ".join(sorted(set(owners.split()) | {owner}))


@dataclass
class Located:
    """A leaf present, found for a read: its row and its open data file."""

    length: int
    digest: bytes
    sums: bytes | None  # granule sums; None for a row from before schema 3
    checked: int  # bitmask of the granules verified before in this lifetime
    handle: Handle

    @property
    def whole(self) -> bool:
        """Whether every granule is verified (so the whole leaf is)."""
        return self.checked == granules.all_of(self.length)


class LeafIndex:
    """The rows of leaves present, and in memory beside them: bytes used, leaves checked
    in this lifetime, puts in progress, removals per object. Not thread-safe: the
    DiskCache's lock guards it."""

    def __init__(
        self, index: Index, blocks: BlockStore, eviction: Eviction, health: WriteHealth
    ) -> None:
        self._index = index
        self._blocks = blocks
        self._eviction = eviction
        self._health = health
        query = "SELECT COALESCE(SUM(length), 0) FROM leaves"
        self.used = int(index.execute(query).fetchone()[0])  # bytes of the leaves with rows
        # Granules read and verified in this lifetime, a bitmask per leaf, and the length
        # the leaf had then (a leaf replaced by one of another length starts afresh).
        self.checked: dict[tuple[str, int], tuple[int, int]] = {}
        self.generation: Counter[str] = Counter()  # removals per object
        self.writing: Counter[str] = Counter()  # puts in progress per object
        self.pending: Counter[tuple[str, int]] = Counter()  # leaves they are writing

    # --- rows ------------------------------------------------------------------------

    def length(self, key: str, index: int) -> int | None:
        query = "SELECT length FROM leaves WHERE key = ? AND idx = ?"
        row = self._index.execute(query, (key, index)).fetchone()
        return None if row is None else int(row[0])

    def rows(self, key: str, first: int = 0, stop: int = 1 << 62) -> dict[int, tuple[int, LeafRow]]:
        """Index -> (length, row) of the leaves of ``key`` present in ``[first, stop)``."""
        query = (
            "SELECT idx, length, digest, verified, owners FROM leaves"
            " WHERE key = ? AND idx >= ? AND idx < ?"
        )
        rows = self._index.execute(query, (key, first, stop))
        return {i: (n, LeafRow(bytes(d), v, o)) for i, n, d, v, o in rows}

    def sums_of(
        self, key: str, first: int, stop: int
    ) -> dict[int, tuple[int, bytes, bytes | None]]:
        """Index -> (length, digest, granule sums or None) of the leaves of ``key`` in
        ``[first, stop)``."""
        query = (
            "SELECT idx, length, digest, sums FROM leaves WHERE key = ? AND idx >= ? AND idx < ?"
        )
        rows = self._index.execute(query, (key, first, stop))
        return {int(i): (int(n), bytes(d), bytes(s) if s else None) for i, n, d, s in rows}

    def cached_bytes(self, key: str) -> int:
        query = "SELECT COALESCE(SUM(length), 0) FROM leaves WHERE key = ?"
        return int(self._index.execute(query, (key,)).fetchone()[0])

    def counts(self) -> tuple[int, int]:
        """Leaves present, and objects they belong to."""
        query = "SELECT COUNT(*), COUNT(DISTINCT key) FROM leaves"
        leaves, objects = self._index.execute(query).fetchone()
        return int(leaves), int(objects)

    def locate(self, key: str, index: int, owner: str | None) -> Located | None:
        """A leaf present (and good for ``owner``, when given), its data file held."""
        query = "SELECT length, digest, owners, sums FROM leaves WHERE key = ? AND idx = ?"
        row = self._index.execute(query, (key, index)).fetchone()
        if row is None:
            return None
        if owner is not None and not LeafRow(b"", "", row[2]).usable_by(owner):
            return None
        length, digest, sums = int(row[0]), bytes(row[1]), row[3] and bytes(row[3])
        was, checked = self.checked.get((key, index), (length, 0))
        checked = checked if was == length else 0
        try:
            handle = self._blocks.acquire(key, write=False)
            return Located(length, digest, sums or None, checked, handle)
        except OSError as error:
            if error.errno in SHORT_OF_FILES:
                log.debug("disk cache: opening the data file of %s: %s", key, error)
                return None
            # Missing or damaged: its rows must go, or a put would skip the leaves.
            log.warning("disk cache: data file of %s unreadable (%s): dropped", key, error)
            query = "SELECT key, idx, length FROM leaves WHERE key = ?"
            self.remove_quietly(self._index.execute(query, (key,)).fetchall())
        return None

    def mark_checked(self, key: str, index: int, length: int, checked: int) -> None:
        """Granules ``checked`` (a bitmask) of the leaf are verified, for this lifetime."""
        was, before = self.checked.get((key, index), (length, 0))
        self.checked[(key, index)] = (length, checked | (before if was == length else 0))

    def forget_checks(self, key: str, index: int) -> None:
        """The leaf's bytes changed or went: check it again on its next read."""
        self.checked.pop((key, index), None)

    def fill_sums(self, key: str, index: int, digest: bytes, sums: bytes) -> None:
        """Store the sums of a leaf from before schema 3, found whole by its SHA-256."""
        try:
            with self._index.transaction() as db:
                query = "UPDATE leaves SET sums = ? WHERE key = ? AND idx = ? AND digest = ?"
                db.execute(query, (sums, key, index, digest))
        except Unwritable as error:
            log.debug("disk cache: sums of leaf %d of %s not saved: %s", index, key, error)

    # --- owners ----------------------------------------------------------------------

    def grant(self, key: str, first: int, digests: Sequence[bytes], owner: str) -> bool:
        """Make leaves ``first ..`` good for ``owner`` (or :data:`SHARED`) if they are all
        present with ``digests``."""
        rows = self.rows(key, first, first + len(digests))
        if any(
            first + n not in rows or rows[first + n][1].digest != d for n, d in enumerate(digests)
        ):
            return False
        updates = [
            (SHARED if owner == SHARED else with_owner(row.owners, owner), key, index)
            for index, (_, row) in rows.items()
        ]
        try:
            with self._index.transaction() as db:
                query = "UPDATE leaves SET owners = ? WHERE key = ? AND idx = ?"
                db.executemany(query, updates)
        except Unwritable as error:
            self._health.failed(error)
            return False
        return True

    def disown(self, key: str, index: int, owner: str) -> None:
        """``owner`` no longer vouches for the leaf; a leaf no one vouches for is removed."""
        found = self.rows(key, index, index + 1).get(index)
        if found is None or found[1].owners == SHARED:
            return
        length, row = found
        rest = " ".join(o for o in row.owners.split() if o != owner)
        if not rest:
            self.remove_quietly([(key, index, length)])
            return
        try:
            with self._index.transaction() as db:
                update = "UPDATE leaves SET owners = ? WHERE key = ? AND idx = ?"
                db.execute(update, (rest, key, index))
        except Unwritable as error:
            self._health.failed(error)

    # --- removing --------------------------------------------------------------------

    def remove(self, victims: Sequence[Victim]) -> None:
        """Delete the rows of ``victims`` (key, index, length), then their bytes."""
        if not victims:
            return
        with self._index.transaction() as db:
            query = "DELETE FROM leaves WHERE key = ? AND idx = ?"
            db.executemany(query, [(key, index) for key, index, _ in victims])
        by_key: dict[str, list[int]] = {}
        for key, index, length in victims:
            self.used -= length
            self.forget_checks(key, index)
            self._eviction.forget(key, index)
            by_key.setdefault(key, []).append(index)
        for key, indices in by_key.items():
            self.generation[key] += 1
            self.discard_bytes(key, indices)

    def remove_quietly(self, victims: Sequence[Victim]) -> None:
        try:
            self.remove(victims)
        except Unwritable as error:
            self._health.failed(error)

    def discard_bytes(self, key: str, indices: Sequence[int]) -> None:
        """Free the bytes of leaves without rows: the whole file when it has no leaves,
        else holes, but not where a put in progress is writing."""
        if self._unlink_if_empty(key):
            return
        indices = [i for i in indices if not self.pending[(key, i)]]
        with suppress(sqlite3.Error):
            self._blocks.punch(key, [i for i in indices if self.length(key, i) is None])

    def _unlink_if_empty(self, key: str) -> bool:
        if self.writing[key]:
            return False
        query = "SELECT 1 FROM leaves WHERE key = ? LIMIT 1"
        if self._index.execute(query, (key,)).fetchone() is not None:
            return False
        self._blocks.delete(key)
        self.generation[key] += 1
        return True
