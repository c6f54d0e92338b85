"""The DiskCache: one lock, and the parts of the disk cache behind one interface.

Concurrency. Every method may be called from any thread. One lock guards the SQLite
connection and the state in memory of every part; ``pread``, ``pwrite`` and hashing
run outside it, so reads of different leaves run in parallel (:mod:`.reads`).

Streamed puts. A fetch claims its leaves before its GET (``begin_put``), writes each
leaf as it arrives (``write_leaf``, outside the lock, from the fetch's thread), then
``commit`` or ``abandon``: see :mod:`.puts` for the protocol.

Failures. A full or failing disk makes ``put`` return False without a row (a streamed
put: ``write_leaf`` False, and only the leaves written before are committed) and log one
warning, until a put succeeds again. A read error is a miss and drops the leaf, so
that the next put writes it afresh. The daemon keeps serving from the network.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from glacierfs.cache.disk.blocks import BlockStore, Writer
from glacierfs.cache.disk.classes import ClassBytes, ClassesOf
from glacierfs.cache.disk.directory import LAYOUT, CacheDirectory
from glacierfs.cache.disk.eviction import Eviction
from glacierfs.cache.disk.index import INDEX, Unwritable, WriteHealth
from glacierfs.cache.disk.leaves import SHARED, LeafIndex, LeafRow
from glacierfs.cache.disk.meta import MetaStore
from glacierfs.cache.disk.puts import Claim, Puts, leaf_lengths
from glacierfs.cache.disk.reads import Reads
from glacierfs.cache.disk.room import Room
from glacierfs.errors import ConfigError

log = logging.getLogger(__name__)

Buffer = bytes | bytearray | memoryview

Clock = Callable[[], float]

CLOSE_WAIT = 30.0
"""Seconds ``close`` waits for streamed pwrites under way (each writes one leaf to the page
cache: milliseconds, unless the disk hangs)."""


@dataclass(frozen=True)
class CacheUsage:
    """How full the disk cache is: bytes of leaves present, leaves, objects, capacity;
    bytes read from its data files in this lifetime; bytes in each class (:mod:`.room`)."""

    used: int
    leaves: int
    objects: int
    capacity: int
    bytes_read: int = 0
    classes: ClassBytes = field(default_factory=ClassBytes)


class DiskCache:
    """Leaves of objects named by opaque keys, in files under ``root``; see the package.

    ``clock`` gives last-use times (seconds); ``pwrite`` writes data files. Both are
    there for tests: a frozen clock orders the LRU, a failing writer fills the disk.

    ``classes`` says which leaves may be evicted (:mod:`.room`); without it, any (plain
    LRU), fitted to ``capacity`` when opened; with it, call :meth:`fit` once it is known.
    """

    def __init__(
        self,
        root: Path,
        capacity: int,
        *,
        clock: Clock = time.time,
        pwrite: Writer = os.pwrite,
        classes: ClassesOf | None = None,
    ) -> None:
        if capacity < 0:
            raise ValueError(f"disk cache capacity {capacity} is negative")
        self.root = Path(root)
        self.capacity = capacity
        self._lock = threading.Lock()
        self._closed = False
        self._writes = threading.Condition()  # pwrites of streamed puts in progress
        self._writing = 0
        self._stopping = False  # set by close: no streamed pwrite starts any more
        self._directory = CacheDirectory(self.root)
        try:
            self._start(clock, pwrite, classes)
        except BaseException as error:
            self._directory.close()
            if isinstance(error, sqlite3.Error):
                path = self.root / LAYOUT / INDEX
                raise ConfigError(f"cache index {path}: {error}") from error
            raise

    def _start(self, clock: Callable[[], float], pwrite: Writer, classes: ClassesOf | None) -> None:
        """Wire the parts, recover from an unclean shutdown, and fit the capacity."""
        index = self._directory.index
        self._health = WriteHealth(self.root)
        self._blocks = BlockStore(self._directory.data, self.root, pwrite)
        if self._directory.crashed():
            log.info("disk cache %s was not closed cleanly: removing stray bytes", self.root)
            self._directory.recover(self._blocks)
        self._eviction = Eviction(index, clock)
        self._leaves = LeafIndex(index, self._blocks, self._eviction, self._health)
        self._room = Room(self.root, self._leaves, self._eviction, classes, self._health)
        self._puts = Puts(index, self._leaves, self._blocks, self._room, self._health, clock)
        self._meta = MetaStore(index, self._health.failed)
        self._reads = Reads(self._lock, self._leaves, self._blocks, self._eviction)
        try:
            self._directory.begin_session()
            if classes is None:
                self._room.fit(self.capacity)
        except Unwritable as error:
            self._health.failed(error)

    def fit(self) -> None:
        """Evict down to the capacity, never custody (:meth:`.room.Room.fit`)."""
        with self._lock:
            if not self._closed:
                self._room.fit(self.capacity)

    def close(self) -> None:
        """Write last-use times, close the index and the files, release the directory.

        With streamed puts still in progress (a fetch's thread outliving its mount), the
        pwrites under way are waited for and no more start; the session is left open, so
        that the next open punches out what they wrote."""
        with self._writes:
            self._stopping = True
            self._writes.wait_for(lambda: not self._writing, timeout=CLOSE_WAIT)
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._eviction.flush()
            if not self._leaves.writing:  # else a put's thread may write on: recover next time
                with suppress(Unwritable):
                    self._directory.end_session()
            self._blocks.close()
            self._directory.close()

    def __enter__(self) -> DiskCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- leaves ----------------------------------------------------------------------

    def get(self, key: str, index: int, owner: str | None = None) -> bytes | None:
        """The whole leaf, or None when it is absent, unreadable or fails its check.

        With ``owner``, also None when the leaf is neither shared nor owned by it.
        """
        found = self._reads.leaf(key, index, owner)
        return None if found is None else found[0]

    def get_leaf(self, key: str, index: int, owner: str) -> tuple[bytes, bytes] | None:
        """The leaf (if good for ``owner``, as :meth:`get`) and the digest its row has."""
        return self._reads.leaf(key, index, owner)

    def read_range(
        self, key: str, index: int, offset: int, length: int, owner: str
    ) -> bytes | None:
        """Bytes ``[offset, offset + length)`` of the leaf (if good for ``owner``), or None
        as :meth:`get`. One pread of those bytes once the granules they touch have been
        checked in this lifetime; else of those granules, which are checked first
        (see :mod:`.reads`). ValueError for a range outside the leaf."""
        return self._reads.range(key, index, offset, length, owner)

    @property
    def reads(self) -> Reads:
        """The checked reads, for a mount's inline reads (:mod:`glacierfs.cache.local`)."""
        return self._reads

    def put(
        self,
        key: str,
        first: int,
        data: Buffer,
        digests: Sequence[bytes],
        verified: str,
        *,
        owner: str,
    ) -> bool:
        """Store leaves ``first ..`` of ``key``: ``data`` is their bytes, ``digests`` theirs.

        Every leaf but the object's last is 1 MiB. ``verified`` says how the caller checked
        them ("block", "size"); the digests are not taken on trust: each is checked
        against its leaf's bytes (ValueError: the caller's bug), as the row that commits
        the leaf vouches for them to every later read. The leaves are good for ``owner``
        (see :mod:`.leaves` on ownership). False when nothing was stored: the data is
        larger than the cache, or the disk cannot take it.
        """
        view = memoryview(data).cast("B")
        lengths = leaf_lengths(len(view), len(digests))
        if first < 0:
            raise ValueError(f"leaf index {first} is negative")
        if not digests:
            return True
        _check_digests(key, first, view, lengths, digests)
        if len(view) > self.capacity:
            return False
        with self._lock:
            try:
                claim = self._puts.claim(
                    key, first, digests, lengths, verified, owner, self.capacity
                )
            except Unwritable as error:
                self._health.failed(error)
                return False
        if not isinstance(claim, Claim):
            return claim
        try:
            failure = self._puts.write(claim, view)
        except BaseException:
            with self._lock:
                self._puts.abandon(claim)
            raise
        with self._lock:
            return self._puts.commit(claim, digests, verified, failure)

    @property
    def writable(self) -> bool:
        """False while the disk refuses writes (since the last failed put)."""
        return not self._health.failing

    @property
    def write_failure(self) -> str | None:  # the disk's last refusal in this lifetime, if any
        return self._health.cause or None

    def begin_put(self, key: str, first: int, lengths: Sequence[int], owner: str) -> Claim | None:
        """Claim leaves ``first ..`` of ``key`` (of ``lengths``) for a streamed put, before
        its bytes arrive; None when the cache cannot take them (no room, or the disk
        refuses): keep the bytes elsewhere."""
        if first < 0:
            raise ValueError(f"leaf index {first} is negative")
        with self._lock:
            if self._closed:
                return None
            try:
                return self._puts.begin(key, first, list(lengths), owner, self.capacity)
            except Unwritable as error:
                self._health.failed(error)
                return None

    def write_leaf(self, claim: Claim, n: int, view: Buffer, digest: bytes) -> bool:
        """Write leaf ``first + n`` of the claim, not yet verified, whose SHA-256 is
        ``digest``; False when the cache did not take it (keep its bytes elsewhere).
        Outside the lock: call it from the one thread that streams the claim."""
        with self._writes:
            if self._stopping:
                return False
            self._writing += 1
        try:
            return self._puts.write_leaf(claim, n, memoryview(view).cast("B"), digest)
        finally:
            with self._writes:
                self._writing -= 1
                if self._stopping:  # only close waits on it
                    self._writes.notify_all()

    def commit(self, claim: Claim, digests: Sequence[bytes], verified: str) -> set[int]:
        """The claim's bytes are verified (``digests``, one per leaf, checked ``verified``):
        commit their rows in one transaction. The offsets of the leaves now there for the
        claim's owner (written, or already present with the same digest)."""
        with self._lock:
            if self._closed:
                self._abandon_closed(claim)
                return set()
            return self._puts.commit_stream(claim, digests, verified)

    def abandon(self, claim: Claim) -> None:
        """Commit nothing of the claim (its bytes failed their check, or never came
        whole) and punch out what was written."""
        with self._lock:
            if self._closed:
                self._abandon_closed(claim)
            else:
                self._puts.abandon_stream(claim)

    def _abandon_closed(self, claim: Claim) -> None:
        """After close: give the claim back; the next open punches out what it wrote (the
        session was left open), never this one, which another cache may now be using."""
        self._puts.abandon(claim)

    def contains(self, key: str, index: int) -> bool:
        """Whether the leaf has a row (its bytes are checked only when read)."""
        with self._lock:
            return self._leaves.length(key, index) is not None

    def leaves(self, key: str) -> dict[int, LeafRow]:
        """Index -> digest, how verified, owners, of each leaf of ``key`` present."""
        with self._lock:
            return {i: row for i, (_, row) in self._leaves.rows(key).items()}

    def share(self, key: str, digests: Sequence[bytes]) -> bool:
        """Make leaves ``0 ..`` of ``key`` good for every job, if they are all present
        with these ``digests`` (whose tree hash the caller found to be the object's)."""
        with self._lock:
            return self._leaves.grant(key, 0, digests, SHARED)

    def adopt(self, key: str, first: int, digests: Sequence[bytes], owner: str) -> bool:
        """Make leaves ``first ..`` good for ``owner`` too, if they are all present with
        these ``digests`` (which the caller proved to be ``owner``'s bytes)."""
        with self._lock:
            return self._leaves.grant(key, first, digests, owner)

    def disown(self, key: str, index: int, owner: str) -> None:
        """``owner`` no longer vouches for the leaf; a leaf no one vouches for is removed.
        A shared leaf stays: the archive's own tree hash covers it."""
        with self._lock:
            self._leaves.disown(key, index, owner)

    def cached_bytes(self, key: str) -> int:
        """Bytes of ``key`` present."""
        with self._lock:
            return self._leaves.cached_bytes(key)

    def drop(self, key: str, index: int) -> None:
        """Remove the leaf (say, because its object's tree hash came out wrong)."""
        with self._lock:
            length = self._leaves.length(key, index)
            if length is not None:
                self._leaves.remove_quietly([(key, index, length)])

    def usage(self) -> CacheUsage:
        """Bytes and leaves present, objects, capacity, bytes in each class."""
        with self._lock:
            leaves, objects = self._leaves.counts()
            used, read = self._leaves.used, self._reads.bytes_read
            return CacheUsage(used, leaves, objects, self.capacity, read, self._room.class_bytes())

    def get_meta(self, namespace: str, name: str) -> Any | None:
        """The JSON value saved under ``(namespace, name)``, or None."""
        with self._lock:
            text = self._meta.get(namespace, name)
        return None if text is None else json.loads(text)

    def put_meta(self, namespace: str, name: str, value: Any) -> None:
        """Save a JSON-able value; on a full disk it is lost (and logged), like a leaf."""
        text = json.dumps(value)
        with self._lock:
            self._meta.put(namespace, name, text)

    def list_meta(self, namespace: str) -> dict[str, Any]:
        """Every name in ``namespace`` with its value."""
        with self._lock:
            rows = self._meta.list(namespace)
        return {name: json.loads(text) for name, text in rows}

    def delete_meta(self, namespace: str, name: str) -> None:
        """Forget ``(namespace, name)``, if it was saved."""
        with self._lock:
            self._meta.delete(namespace, name)


def _check_digests(
    key: str, first: int, view: memoryview, lengths: Sequence[int], digests: Sequence[bytes]
) -> None:
    """ValueError unless each leaf of ``view`` has its digest (a put trusts none)."""
    at = 0
    for n, length in enumerate(lengths):
        if hashlib.sha256(view[at : at + length]).digest() != digests[n]:
            raise ValueError(f"leaf {first + n} of {key}: its bytes are not its digest's")
        at += length
