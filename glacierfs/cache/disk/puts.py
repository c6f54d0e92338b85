"""The commit protocol: claim room, write the bytes, then commit the rows.

``put`` writes a leaf's bytes with ``pwrite``, and only then commits its row (key,
index, length, SHA-256 digest, how it was verified, last use, owner). The row is the
commit point: bytes without a row are never read, so a ``kill -9`` at any moment leaves
each leaf wholly present with its digest or absent (bytes written for rows that never
committed are punched out at the next open). There is no fsync per leaf. A killed
process loses nothing it wrote, since the kernel holds the bytes; a power loss can
leave a row whose bytes never reached the disk, but every leaf is checked the first
time it is read in a DiskCache's lifetime, and a power loss always starts a new
lifetime, so such a leaf fails its check, is dropped and is fetched again.

Claims. Under the lock, a put finds the leaves it must write (a leaf held with the same
digest only gains the owner; a leaf another put is writing is skipped, so that no two
writes of one leaf ever interleave), evicts to make room, and reserves the bytes, so
that concurrent puts never take the cache past its capacity. The bytes are written
outside the lock. A full or failing disk (ENOSPC, EDQUOT, EROFS, EACCES, EIO on a
write or a commit) makes the put return False without a row.

Streamed puts. A fetch streams its response into the cache leaf by leaf, so the same
protocol is cut in four calls (:class:`~glacierfs.cache.disk.DiskCache` ``begin_put``,
``write_leaf``, ``commit``, ``abandon``):

1. ``begin_put`` claims, *before the GET*, the leaves of the range that have no row and
   that no other put is writing (their bytes reserved, evicting if needed; the leaves
   marked pending, so that eviction and recovery leave them alone), and notes the
   digests of those that have a row. None when there is no room: the caller keeps the
   bytes in memory instead.
2. ``write_leaf`` (outside the lock, from the fetch's thread) writes one leaf's bytes at
   its place, unverified, and sums its granules; a leaf with a row is never written
   (its bytes are only hashed by the caller), and False tells the caller the cache did
   not take the leaf (another digest is stored there, another put writes it, or the
   disk refused): the caller keeps those bytes itself.
3. ``commit``, once the whole response is verified, inserts the rows of every leaf
   written in one transaction (the commit point), and gives the owner the leaves
   present with the same digest; it answers which leaves are now there for the owner.
4. ``abandon``, for a response that failed its check or was cut, commits nothing and
   punches what was written. A ``kill -9`` between 1 and 3 leaves bytes without rows,
   which the next open punches out as for any put.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from glacierfs.cache.disk import granules
from glacierfs.cache.disk.blocks import BlockStore, Handle
from glacierfs.cache.disk.index import UNWRITABLE_ERRNOS, Index, Unwritable, WriteHealth
from glacierfs.cache.disk.leaves import LeafIndex, merged
from glacierfs.cache.disk.room import Room
from glacierfs.treehash import MIB

log = logging.getLogger(__name__)

_COLUMNS = "key, idx, length, digest, verified, used, owners, sums"
_PLACES = ", ".join("?" * 8)


@dataclass
class Claim:
    """A put between claiming its room and committing its rows."""

    key: str
    first: int
    todo: list[int]  # offsets from ``first`` of the leaves to write
    lengths: list[int]
    reserved: int
    handle: Handle | None  # None when there is nothing to write
    owner: str
    sums: dict[int, bytes] = field(default_factory=dict)  # granule sums of leaves written
    done: bool = False
    present: dict[int, bytes] = field(default_factory=dict)  # offset -> digest of its row
    written: set[int] = field(default_factory=set)  # offsets whose bytes are written
    failure: Unwritable | None = None  # the disk refused a write: nothing more is written
    open: frozenset[int] = frozenset()  # ``todo`` of a streamed put, for lookups


class Puts:
    """Claims, writes and commits of leaves. ``claim``, ``commit`` and ``abandon`` run
    under the DiskCache's lock; ``write`` outside it."""

    def __init__(
        self,
        index: Index,
        leaves: LeafIndex,
        blocks: BlockStore,
        room: Room,
        health: WriteHealth,
        clock: Callable[[], float],
    ) -> None:
        self._index = index
        self._leaves = leaves
        self._blocks = blocks
        self._room = room
        self._eviction = room.eviction
        self._health = health
        self._clock = clock
        self.reserved = 0  # bytes claimed by puts in progress

    def claim(
        self,
        key: str,
        first: int,
        digests: Sequence[bytes],
        lengths: list[int],
        verified: str,
        owner: str,
        capacity: int,
    ) -> Claim | bool:
        """Find the leaves to write and make room for them; True when there are none.

        Raises :class:`Unwritable` when the index or the data file cannot be written."""
        todo = self._to_write(key, first, digests, verified, owner)
        if not todo:
            return True
        claim = self._reserve(key, first, todo, lengths, owner, capacity)
        return False if claim is None else claim

    def begin(
        self, key: str, first: int, lengths: list[int], owner: str, capacity: int
    ) -> Claim | None:
        """The claim of a streamed put (see the module); None when there is no room.

        Raises :class:`Unwritable` when the data file cannot be opened for writing."""
        stored = self._leaves.rows(key, first, first + len(lengths))
        present = {
            n: stored[first + n][1].digest for n in range(len(lengths)) if first + n in stored
        }
        todo = [
            n
            for n in range(len(lengths))
            if n not in present and not self._leaves.pending[(key, first + n)]
        ]
        claim = self._reserve(key, first, todo, lengths, owner, capacity)
        if claim is not None:
            claim.present, claim.open = present, frozenset(todo)
        return claim

    def _reserve(
        self, key: str, first: int, todo: list[int], lengths: list[int], owner: str, capacity: int
    ) -> Claim | None:
        """Make room for leaves ``todo`` and mark them pending; None when there is none."""
        needed = sum(lengths[n] for n in todo)
        excess = self._leaves.used + self.reserved + needed - capacity
        if excess > 0:
            self._room.make(excess, (key, first, first + len(lengths)))
        if self._leaves.used + self.reserved + needed > capacity:
            log.debug("disk cache: no room for %d bytes of %s beside puts in progress", needed, key)
            self._room.refused()
            return None
        handle = None
        if todo:
            try:
                handle = self._blocks.acquire(key, write=True)
            except OSError as error:
                if error.errno not in UNWRITABLE_ERRNOS:
                    raise
                raise Unwritable(f"{error.strerror} opening the data file of {key}") from error
        self._leaves.writing[key] += 1
        self._leaves.pending.update((key, first + n) for n in todo)
        self.reserved += needed
        return Claim(key, first, todo, lengths, needed, handle, owner)

    def _to_write(
        self, key: str, first: int, digests: Sequence[bytes], verified: str, owner: str
    ) -> list[int]:
        """Offsets of the leaves to write; leaves held with the same digest gain ``owner``."""
        stored, now = self._leaves.rows(key, first, first + len(digests)), self._clock()
        todo, owned = [], []
        for n, digest in enumerate(digests):
            length, row = stored.get(first + n, (0, None))
            after = merged(row, digest, verified, owner)
            if after is None or self._leaves.pending[(key, first + n)]:
                continue
            if row is not None and row.digest == digest:
                self._eviction.note(key, first + n, now)
                if after != row:
                    owned.append((after.verified, after.owners, key, first + n))
                continue
            if row is not None:  # a digest the caller says is wrong
                self._leaves.remove([(key, first + n, length)])
            todo.append(n)
        if owned:
            with self._index.transaction() as db:
                update = "UPDATE leaves SET verified = ?, owners = ? WHERE key = ? AND idx = ?"
                db.executemany(update, owned)
        return todo

    def write(self, claim: Claim, view: memoryview) -> Unwritable | None:
        """Write the claimed leaves of ``view`` and sum their granules; an Unwritable when
        the disk refused."""
        assert claim.handle is not None
        for n in claim.todo:
            claim.sums[n] = granules.sums(view[n * MIB : (n + 1) * MIB])
        try:
            for start, stop in _runs(claim.todo):
                piece = view[start * MIB : stop * MIB]
                self._blocks.write(claim.handle, piece, (claim.first + start) * MIB)
        except OSError as error:
            if error.errno not in UNWRITABLE_ERRNOS:
                raise
            return Unwritable(f"{error.strerror} writing {claim.key}")
        claim.written.update(claim.todo)
        return None

    def write_leaf(self, claim: Claim, n: int, view: memoryview, digest: bytes) -> bool:
        """Write leaf ``n`` of a streamed put (unverified) at its place; False when the
        cache did not take it (see the module). Outside the lock."""
        if n not in claim.open:
            return claim.present.get(n) == digest
        if claim.failure is not None:
            return False
        assert claim.handle is not None
        claim.sums[n] = granules.sums(view)
        try:
            self._blocks.write(claim.handle, view, (claim.first + n) * MIB)
        except OSError as error:
            if error.errno not in UNWRITABLE_ERRNOS:
                raise
            claim.failure = Unwritable(f"{error.strerror} writing {claim.key}")
            return False
        claim.written.add(n)
        return True

    def commit(
        self, claim: Claim, digests: Sequence[bytes], verified: str, failure: Unwritable | None
    ) -> bool:
        """Commit the rows of a put whose bytes are written (unless ``failure``)."""
        self.abandon(claim)
        if failure is None:
            failure = self._insert(claim, digests, verified)
        if failure is not None:
            self._leaves.discard_bytes(claim.key, [claim.first + n for n in claim.todo])
            self._health.failed(failure)
            return False
        self._health.succeeded()
        return True

    def commit_stream(self, claim: Claim, digests: Sequence[bytes], verified: str) -> set[int]:
        """Commit a verified streamed put (see the module): the offsets of the leaves now
        there for its owner."""
        self.abandon(claim)
        failure = self._insert(claim, digests, verified)
        unwritten = [claim.first + n for n in claim.todo if failure or n not in claim.written]
        if unwritten:
            self._leaves.discard_bytes(claim.key, unwritten)
        refused = failure or claim.failure
        if refused is not None:
            self._health.failed(refused)
        else:
            self._health.succeeded()
        if failure is not None:
            return set()
        return set(claim.written) | self._adopt_present(claim, digests, verified)

    def _insert(self, claim: Claim, digests: Sequence[bytes], verified: str) -> Unwritable | None:
        """Insert the rows of the leaves written, in one transaction (the commit point)."""
        key, first, now = claim.key, claim.first, self._clock()
        rows = [
            (
                key,
                first + n,
                claim.lengths[n],
                digests[n],
                verified,
                now,
                claim.owner,
                claim.sums[n],
            )
            for n in sorted(claim.written)
        ]
        if not rows:
            return None
        try:
            with self._index.transaction() as db:
                query = "SELECT COALESCE(SUM(length), 0) FROM leaves WHERE key = ? AND idx = ?"
                replaced = sum(db.execute(query, row[:2]).fetchone()[0] for row in rows)
                insert = f"INSERT OR REPLACE INTO leaves ({_COLUMNS}) VALUES ({_PLACES})"
                db.executemany(insert, rows)
        except Unwritable as error:
            return error
        self._leaves.used += sum(row[2] for row in rows) - replaced
        for row in rows:
            self._leaves.forget_checks(key, row[1])
        return None

    def _adopt_present(self, claim: Claim, digests: Sequence[bytes], verified: str) -> set[int]:
        """Give the owner the leaves that had a row with these digests (still there)."""
        key, first, now = claim.key, claim.first, self._clock()
        stored = self._leaves.rows(key, first, first + len(claim.lengths))
        same, owned = set(), []
        for n in claim.present:
            row = stored.get(first + n, (0, None))[1]
            if row is None or row.digest != digests[n]:
                continue  # gone, or other bytes: the caller kept this leaf itself
            after = merged(row, digests[n], verified, claim.owner)
            self._eviction.note(key, first + n, now)
            same.add(n)
            if after is not None and after != row:
                owned.append((after.verified, after.owners, key, first + n))
        if owned:
            try:
                with self._index.transaction() as db:
                    update = "UPDATE leaves SET verified = ?, owners = ? WHERE key = ? AND idx = ?"
                    db.executemany(update, owned)
            except Unwritable as error:
                self._health.failed(error)
                return set()
        return same

    def abandon(self, claim: Claim) -> None:
        """Give back what a put claimed."""
        if claim.done:
            return
        claim.done = True
        self.reserved -= claim.reserved
        _decrement(self._leaves.writing, claim.key)
        for n in claim.todo:
            _decrement(self._leaves.pending, (claim.key, claim.first + n))
        if claim.handle is not None:
            self._blocks.release(claim.handle)

    def abandon_stream(self, claim: Claim) -> None:
        """Give back a streamed put's claim and punch the bytes it wrote: no row."""
        if claim.done:
            return
        self.abandon(claim)
        self._leaves.discard_bytes(claim.key, [claim.first + n for n in claim.todo])


def leaf_lengths(size: int, count: int) -> list[int]:
    """The lengths of ``count`` leaves of ``size`` bytes in all: only the last is short."""
    if -(-size // MIB) != count:
        raise ValueError(f"{size} bytes are not {count} leaves")
    return [min(MIB, size - n * MIB) for n in range(count)]


def _runs(offsets: list[int]) -> Iterator[tuple[int, int]]:
    """Runs of consecutive numbers in sorted ``offsets``, as (start, stop)."""
    start = previous = offsets[0]
    for n in offsets[1:]:
        if n != previous + 1:
            yield start, previous + 1
            start = n
        previous = n
    yield start, previous + 1


def _decrement(counter: Counter[Any], item: Any) -> None:
    counter[item] -= 1
    if not counter[item]:
        del counter[item]
