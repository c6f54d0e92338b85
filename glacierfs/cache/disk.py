"""The disk cache: verified 1 MiB leaves of job outputs, kept across mounts and expiries.

Layout. Everything format-specific lives under ``root/v1/``; a future format takes
``v2`` and never misreads this one::

    root/lock                     flock()ed while a DiskCache is open; holds its pid
    root/v1/index.sqlite3         SQLite, WAL: a row per leaf present, and metadata
    root/v1/data/<sha256(key)>    one sparse file per object; leaf i at offset i * 1 MiB

Why one sparse file per object, not a file per leaf (a temporary file renamed, with a
header naming key and digest): with 1 GiB of leaves in the page cache (ext4, 2 cores),
reads later in a lifetime run at 13 GB/s against 7 GB/s for files per leaf (23 against
10 GB/s on two threads), as a leaf is one pread on an open file, not open, read and
close; first reads, which hash, run at 1.35 GB/s either way, and puts at 0.6-1.7 GB/s
either way, far above what Glacier delivers. There are far fewer files, and the index
also keeps job records, so an output wholly cached stays listable after the service
forgets its job.

Held, not found again by path. The daemon often runs as root, so a path that another
user could redirect would let them aim our writes at any file. The root's path is
checked once, from ``/`` down (:mod:`glacierfs.trusted`: every directory must be ours
or root's and writable by no one else, a root-owned sticky one like /tmp aside). The
root itself must be ours alone. Then it is held open, and everything under it is
opened relative to the held descriptors (root, ``v1``, ``data``) without following a
symlink. The lock, the index and the data files must be regular files of ours with one
link. Anything else is unusable: the cache is refused at start, or a data file becomes
a miss that cannot be written. SQLite takes a name, not a descriptor, so the index is
named through ``/proc/self/fd/<v1>``. SQLite 3.40 resolves that to the held
directory's current path (see :func:`_index_name`). That path is the one checked, and
no one but us and root can change it. Afterwards a check confirms that SQLite has the
very file opened here by descriptor.

Commit protocol. ``put`` writes a leaf's bytes with ``pwrite``, and only then commits its
row (key, index, length, SHA-256 digest, how it was verified, last use). The row is the
commit point: bytes without a row are never read, so a ``kill -9`` at any moment leaves
each leaf wholly present with its digest or absent (bytes written for rows that never
committed are punched out at the next open). There is no fsync per leaf. A killed
process loses nothing it wrote, since the kernel holds the bytes; a power loss can
leave a row whose bytes never reached the disk, but every leaf's digest is checked the
first time it is read in a DiskCache's lifetime, and a power loss always starts a new
lifetime, so such a leaf fails its digest, is dropped and is fetched again. After its
first read a leaf is trusted until close: checking costs about 1 ms per MiB, once.

Ownership. A leaf is good for the job that fetched it (its bytes matched that job's
response), not yet for other jobs that name the same object: a job record can claim
any archive. Each row names its owners, as opaque tokens (the reader's: a job's
archive as its vault names it), or ``*`` once the object is proven whole (the reader
found the tree hash of all its leaf digests to be the archive's, and :meth:`share`
made every leaf the archive's). ``get`` with an owner answers only leaves shared or
owned by it. A put of a leaf already held with the same digest adds its owner to the
row (same digest, same bytes); with another digest it replaces a row that is not
shared, and leaves a shared row alone. Two puts never write the same leaf at once:
the second skips it. Rows of schema 1 (no owners) became owned by no one: they are
earned again by a put with the same digest (no write), by :meth:`adopt` (the
reader's proof that they make up a job's output), or by :meth:`share`.

Eviction. The cache holds at most ``capacity`` bytes of leaves. A put that would exceed
it first evicts the least recently used leaves, of any object but never those being
put: rows are deleted first, then the bytes are punched out of the sparse file (left in
place where the filesystem cannot punch holes: the row is what counts), and a data file
holding no leaves is deleted. Puts in progress reserve their bytes, so that concurrent
puts never take the cache past its capacity; a leaf already held with the same digest
is not written again. Last-use times are coarse: kept in memory on get and put,
written to the index every few seconds, before an eviction and at close, so a warm read
does not write SQLite.

A full or failing disk (ENOSPC, EDQUOT, EROFS, EACCES, EIO on a write or a commit) makes
``put`` return False without a row and log one warning, until a put succeeds again. A
read error is a miss and drops the leaf, so that the next put writes it afresh. The
daemon keeps serving from the network.

Concurrency. Every method may be called from any thread. One lock guards the SQLite
connection and the state in memory; ``pread``, ``pwrite`` and hashing run outside it,
so reads of different leaves run in parallel. A read that overlapped the removal of a
leaf of the same object (which may punch a hole under it) is told so by a per-object
generation count, bumped on every removal, and reads again. Data files stay open in an
LRU of descriptors; one in use by a read or a write is closed only when released.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import hashlib
import json
import logging
import os
import sqlite3
import stat
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from glacierfs import trusted
from glacierfs.errors import ConfigError
from glacierfs.treehash import MIB

log = logging.getLogger(__name__)

Buffer = bytes | bytearray | memoryview
Writer = Callable[[int, memoryview, int], int]

LAYOUT = "v1"
SCHEMA_VERSION = 2
"""1: leaves and metadata. 2: each leaf names its owners (migrated: owned by no job)."""

SHARED = "*"
"""The owners of a leaf proven to be its archive's: good for every job that names it."""

TOUCH_FLUSH_SECONDS = 5.0
"""How stale last-use times in the index may get. A warm read must not write SQLite, and
losing a few seconds of recency in a crash only blurs the LRU order."""

OPEN_FILES = 256
"""Data files kept open: enough for every object a mount reads at once, and far below
the usual soft limit of 1024 descriptors, which sockets and FUSE share."""

READ_ATTEMPTS = 8
"""Reads of a leaf raced by removals in its object before giving up with a miss."""

_SHORT_OF_FILES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM})
_UNWRITABLE_ERRNOS = _SHORT_OF_FILES | {
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
    errno.EIO,
    errno.EFBIG,
}
_UNWRITABLE_SQLITE = frozenset(
    {
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_PERM,
    }
)
_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02

_SCHEMA = """
CREATE TABLE IF NOT EXISTS leaves (
    key TEXT NOT NULL, idx INTEGER NOT NULL, length INTEGER NOT NULL,
    digest BLOB NOT NULL, verified TEXT NOT NULL, used REAL NOT NULL,
    owners TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (key, idx)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS leaves_by_use ON leaves (used);
CREATE TABLE IF NOT EXISTS meta (
    namespace TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (namespace, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS session (pid INTEGER NOT NULL);
"""


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
        return LeafRow(digest, how, _with_owner(old.owners, owner))
    if old is not None and old.owners == SHARED:
        return None
    return LeafRow(digest, verified, owner)


def _with_owner(owners: str, owner: str) -> str:
    if owners == SHARED:
        return SHARED
    return " ".join(sorted(set(owners.split()) | {owner}))


@dataclass(frozen=True)
class CacheUsage:
    """How full the disk cache is: bytes of leaves present, leaves, objects, capacity."""

    used: int
    leaves: int
    objects: int
    capacity: int


class _Unwritable(Exception):
    """The disk or the index refused a write: full, read-only or failing."""


@dataclass(eq=False)
class _Handle:
    fd: int
    writable: bool
    users: int = 0
    retired: bool = False


class _Files:
    """An LRU of open data files. Not thread-safe: the DiskCache's lock guards it."""

    def __init__(self, directory: int, limit: int) -> None:
        self.directory = directory  # a descriptor: files are opened relative to it
        self._limit = limit
        self._open: OrderedDict[str, _Handle] = OrderedDict()

    def acquire(self, name: str, write: bool) -> _Handle:
        """An open file (created when ``write``), held until :meth:`release`."""
        handle = self._open.get(name)
        if handle is not None and (handle.writable or not write):
            self._open.move_to_end(name)
        else:
            self.forget(name)
            handle = self._open[name] = self._open_file(name, write)
            while len(self._open) > self._limit:
                self._retire(self._open.popitem(last=False)[1])
        handle.users += 1
        return handle

    def _open_file(self, name: str, write: bool) -> _Handle:
        flags = os.O_RDWR | (os.O_CREAT if write else 0)
        try:
            return _Handle(trusted.open_file(name, flags, self.directory), writable=True)
        except OSError as error:
            if write or error.errno not in (errno.EACCES, errno.EROFS, errno.EPERM):
                raise
        return _Handle(trusted.open_file(name, os.O_RDONLY, self.directory), writable=False)

    def release(self, handle: _Handle) -> None:
        handle.users -= 1
        if handle.retired and handle.users == 0:
            os.close(handle.fd)

    def forget(self, name: str) -> None:
        """Close the file when its users release it (it is being deleted, or reopened)."""
        handle = self._open.pop(name, None)
        if handle is not None:
            self._retire(handle)

    def close_all(self) -> None:
        while self._open:
            self._retire(self._open.popitem()[1])

    @staticmethod
    def _retire(handle: _Handle) -> None:
        handle.retired = True
        if handle.users == 0:
            os.close(handle.fd)


@dataclass
class _Put:
    """A put between claiming its room and committing its rows."""

    key: str
    first: int
    todo: list[int]  # offsets from ``first`` of the leaves to write
    lengths: list[int]
    reserved: int
    handle: _Handle
    owner: str
    done: bool = False


class DiskCache:
    """Leaves of objects named by opaque keys, in files under ``root``; see the module.

    ``clock`` gives last-use times (seconds); ``pwrite`` writes data files. Both are
    there for tests: a frozen clock orders the LRU, a failing writer fills the disk.
    """

    def __init__(
        self,
        root: Path,
        capacity: int,
        *,
        clock: Callable[[], float] = time.time,
        pwrite: Writer = os.pwrite,
    ) -> None:
        if capacity < 0:
            raise ValueError(f"disk cache capacity {capacity} is negative")
        self.root = Path(root)
        self.capacity = capacity
        self._clock = clock
        self._pwrite = pwrite
        self._lock = threading.Lock()
        self._checked: dict[tuple[str, int], int] = {}  # leaves read and verified: lengths
        self._touched: dict[tuple[str, int], float] = {}  # last uses not yet in the index
        self._generation: Counter[str] = Counter()  # removals per object
        self._writing: Counter[str] = Counter()  # puts in progress per object
        self._pending: Counter[tuple[str, int]] = Counter()  # leaves they are writing
        self._reserved = 0  # bytes they claimed
        self._used = 0  # bytes of the leaves in the index
        self._failing = False
        self._punch = _load_fallocate()
        self._closed = False
        self._directories = [_open_root(self.root)]  # root, layout, data: all held open
        try:
            self._lock_fd = _take_lock(self.root, self._directories[0])
            try:
                self._open_layout()
            except BaseException:
                os.close(self._lock_fd)
                raise
        except BaseException:
            _close_all(self._directories)
            raise

    def _open_layout(self) -> None:
        base = self.root / LAYOUT
        what = f"cache directory {self.root}"
        layout = trusted.open_subdirectory(self._directories[0], LAYOUT, what)
        self._directories.append(layout)
        data = trusted.open_subdirectory(layout, "data", f"{what}/{LAYOUT}")
        self._directories.append(data)
        self._files = _Files(data, OPEN_FILES)
        self._db = _open_index(layout, base / "index.sqlite3")
        self._last_flush = self._clock()
        try:
            self._start_session()
        except BaseException as error:
            self._db.close()
            if isinstance(error, sqlite3.Error):
                raise ConfigError(f"cache index {base / 'index.sqlite3'}: {error}") from error
            raise

    def _start_session(self) -> None:
        """Recover from an unclean shutdown, note this one, and fit the capacity."""
        if self._db.execute("SELECT pid FROM session").fetchone() is not None:
            log.info("disk cache %s was not closed cleanly: removing stray bytes", self.root)
            self._recover()
        query = "SELECT COALESCE(SUM(length), 0) FROM leaves"
        self._used = int(self._db.execute(query).fetchone()[0])
        try:
            with self._transaction() as db:
                db.execute("DELETE FROM session")
                db.execute("INSERT INTO session VALUES (?)", (os.getpid(),))
            if self._used > self.capacity:
                self._evict(self._used - self.capacity, ("", 0, 0))
        except _Unwritable as error:
            self._unwritable(error)

    # --- the public interface --------------------------------------------------------

    def close(self) -> None:
        """Write last-use times, close the index and the files, release the directory."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._flush_touches()
            with suppress(_Unwritable), self._transaction() as db:
                db.execute("DELETE FROM session")
            self._db.close()
            self._files.close_all()
            os.close(self._lock_fd)
            _close_all(self._directories)

    def __enter__(self) -> DiskCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, key: str, index: int, owner: str | None = None) -> bytes | None:
        """The whole leaf, or None when it is absent, unreadable or fails its digest.

        With ``owner``, also None when the leaf is neither shared nor owned by it.
        """
        found = self._get(key, index, owner)
        return None if found is None else found[0]

    def get_leaf(self, key: str, index: int, owner: str) -> tuple[bytes, bytes] | None:
        """The leaf (if good for ``owner``, as :meth:`get`) and the digest its row has."""
        return self._get(key, index, owner)

    def _get(self, key: str, index: int, owner: str | None) -> tuple[bytes, bytes] | None:
        for _ in range(READ_ATTEMPTS):
            settled, found = self._read(key, index, owner)
            if settled:
                return found
        return None

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
        them ("block", "size"); the digests are trusted. The leaves are good for ``owner``
        (see the module on ownership). False when nothing was stored: the data is larger
        than the cache, or the disk cannot take it.
        """
        view = memoryview(data).cast("B")
        lengths = _leaf_lengths(len(view), len(digests))
        if first < 0:
            raise ValueError(f"leaf index {first} is negative")
        if not digests:
            return True
        if len(view) > self.capacity:
            return False
        with self._lock:
            try:
                claim = self._claim(key, first, digests, lengths, verified, owner)
            except _Unwritable as error:
                self._unwritable(error)
                return False
        if not isinstance(claim, _Put):
            return claim
        failure: _Unwritable | None = None
        try:
            for start, stop in _runs(claim.todo):
                piece = view[start * MIB : stop * MIB]
                self._write_all(claim.handle.fd, piece, (first + start) * MIB)
        except OSError as error:
            if error.errno not in _UNWRITABLE_ERRNOS:
                with self._lock:
                    self._abandon(claim)
                raise
            failure = _Unwritable(f"{error.strerror} writing {key}")
        with self._lock:
            return self._commit(claim, digests, verified, failure)

    def contains(self, key: str, index: int) -> bool:
        """Whether the leaf has a row (its bytes are checked only when read)."""
        with self._lock:
            query = "SELECT 1 FROM leaves WHERE key = ? AND idx = ?"
            return self._db.execute(query, (key, index)).fetchone() is not None

    def leaves(self, key: str) -> dict[int, LeafRow]:
        """Index -> digest, how verified, owners, of each leaf of ``key`` present."""
        with self._lock:
            query = "SELECT idx, digest, verified, owners FROM leaves WHERE key = ?"
            return {i: LeafRow(bytes(d), v, o) for i, d, v, o in self._db.execute(query, (key,))}

    def share(self, key: str, digests: Sequence[bytes]) -> bool:
        """Make leaves ``0 ..`` of ``key`` good for every job, if they are all present
        with these ``digests`` (whose tree hash the caller found to be the object's)."""
        return self._grant(key, 0, digests, SHARED)

    def adopt(self, key: str, first: int, digests: Sequence[bytes], owner: str) -> bool:
        """Make leaves ``first ..`` good for ``owner`` too, if they are all present with
        these ``digests`` (which the caller proved to be ``owner``'s bytes)."""
        return self._grant(key, first, digests, owner)

    def disown(self, key: str, index: int, owner: str) -> None:
        """``owner`` no longer vouches for the leaf; a leaf no one vouches for is removed.
        A shared leaf stays: the archive's own tree hash covers it."""
        with self._lock:
            query = "SELECT length, owners FROM leaves WHERE key = ? AND idx = ?"
            row = self._db.execute(query, (key, index)).fetchone()
            if row is None or row[1] == SHARED:
                return
            rest = " ".join(o for o in row[1].split() if o != owner)
            if not rest:
                self._remove_quietly([(key, index, row[0])])
                return
            try:
                with self._transaction() as db:
                    update = "UPDATE leaves SET owners = ? WHERE key = ? AND idx = ?"
                    db.execute(update, (rest, key, index))
            except _Unwritable as error:
                self._unwritable(error)

    def cached_bytes(self, key: str) -> int:
        """Bytes of ``key`` present."""
        with self._lock:
            query = "SELECT COALESCE(SUM(length), 0) FROM leaves WHERE key = ?"
            return int(self._db.execute(query, (key,)).fetchone()[0])

    def drop(self, key: str, index: int) -> None:
        """Remove the leaf (say, because its object's tree hash came out wrong)."""
        with self._lock:
            query = "SELECT length FROM leaves WHERE key = ? AND idx = ?"
            row = self._db.execute(query, (key, index)).fetchone()
            if row is not None:
                self._remove_quietly([(key, index, row[0])])

    def _grant(self, key: str, first: int, digests: Sequence[bytes], owner: str) -> bool:
        stop = first + len(digests)
        with self._lock:
            query = "SELECT idx, digest, owners FROM leaves WHERE key = ? AND idx >= ? AND idx < ?"
            rows = {i: (bytes(d), o) for i, d, o in self._db.execute(query, (key, first, stop))}
            if any(rows.get(first + n, (None,))[0] != d for n, d in enumerate(digests)):
                return False
            updates = [
                (SHARED if owner == SHARED else _with_owner(owners, owner), key, index)
                for index, (_, owners) in rows.items()
            ]
            try:
                with self._transaction() as db:
                    query = "UPDATE leaves SET owners = ? WHERE key = ? AND idx = ?"
                    db.executemany(query, updates)
            except _Unwritable as error:
                self._unwritable(error)
                return False
            return True

    def get_meta(self, namespace: str, name: str) -> Any | None:
        """The JSON value saved under ``(namespace, name)``, or None."""
        with self._lock:
            query = "SELECT value FROM meta WHERE namespace = ? AND name = ?"
            row = self._db.execute(query, (namespace, name)).fetchone()
        return None if row is None else json.loads(row[0])

    def put_meta(self, namespace: str, name: str, value: Any) -> None:
        """Save a JSON-able value; on a full disk it is lost (and logged), like a leaf."""
        text = json.dumps(value)
        with self._lock:
            try:
                with self._transaction() as db:
                    query = "INSERT OR REPLACE INTO meta VALUES (?, ?, ?)"
                    db.execute(query, (namespace, name, text))
            except _Unwritable as error:
                self._unwritable(error)

    def list_meta(self, namespace: str) -> dict[str, Any]:
        """Every name in ``namespace`` with its value."""
        with self._lock:
            query = "SELECT name, value FROM meta WHERE namespace = ?"
            rows = self._db.execute(query, (namespace,)).fetchall()
        return {name: json.loads(text) for name, text in rows}

    def delete_meta(self, namespace: str, name: str) -> None:
        """Forget ``(namespace, name)``, if it was saved."""
        with self._lock:
            try:
                with self._transaction() as db:
                    query = "DELETE FROM meta WHERE namespace = ? AND name = ?"
                    db.execute(query, (namespace, name))
            except _Unwritable as error:
                self._unwritable(error)

    def usage(self) -> CacheUsage:
        """Bytes and leaves present, objects, capacity."""
        with self._lock:
            query = "SELECT COUNT(*), COUNT(DISTINCT key) FROM leaves"
            leaves, objects = self._db.execute(query).fetchone()
            return CacheUsage(self._used, leaves, objects, self.capacity)

    # --- reading ---------------------------------------------------------------------

    def _read(
        self, key: str, index: int, owner: str | None
    ) -> tuple[bool, tuple[bytes, bytes] | None]:
        """One attempt: (True, (leaf, its row's digest) or None), or (False, None) when
        raced by a removal."""
        with self._lock:
            generation = self._generation[key]
            found = self._locate(key, index, owner)
        if found is None:
            return True, None
        length, digest, checked, handle = found
        try:
            data: bytes | None = os.pread(handle.fd, length, index * MIB)
        except OSError as error:
            log.debug("disk cache: reading leaf %d of %s: %s", index, key, error)
            data = None
        good = data is not None and len(data) == length
        if data is not None and good and not checked:
            good = hashlib.sha256(data).digest() == digest
        with self._lock:
            self._files.release(handle)
            if self._generation[key] != generation:
                return False, None
            if not good:
                log.warning("disk cache: leaf %d of %s is damaged on disk: dropped", index, key)
                self._remove_quietly([(key, index, length)])
                return True, None
            self._checked[(key, index)] = length
            self._touch(key, index)
        return True, None if data is None else (data, digest)

    def _locate(
        self, key: str, index: int, owner: str | None
    ) -> tuple[int, bytes, bool, _Handle] | None:
        """Length, digest, whether already checked, and open file of a leaf present (and
        good for ``owner``, when given)."""
        query = "SELECT length, digest, owners FROM leaves WHERE key = ? AND idx = ?"
        row = self._db.execute(query, (key, index)).fetchone()
        if row is None:
            return None
        if owner is not None and not LeafRow(b"", "", row[2]).usable_by(owner):
            return None
        length, digest = int(row[0]), bytes(row[1])
        checked = self._checked.get((key, index)) == length
        try:
            return length, digest, checked, self._files.acquire(_file_name(key), write=False)
        except OSError as error:
            if error.errno in _SHORT_OF_FILES:
                log.debug("disk cache: opening the data file of %s: %s", key, error)
                return None
            # Missing or damaged: its rows must go, or a put would skip the leaves.
            log.warning("disk cache: data file of %s unreadable (%s): dropped", key, error)
            query = "SELECT key, idx, length FROM leaves WHERE key = ?"
            self._remove_quietly(self._db.execute(query, (key,)).fetchall())
        return None

    # --- writing ---------------------------------------------------------------------

    def _claim(
        self,
        key: str,
        first: int,
        digests: Sequence[bytes],
        lengths: list[int],
        verified: str,
        owner: str,
    ) -> _Put | bool:
        """Find the leaves to write and make room for them; True when there are none.

        Leaves held with the same digest only gain ``owner``; a leaf another put is
        writing is skipped, so that no two writes of one leaf ever interleave."""
        stop, now = first + len(digests), self._clock()
        query = (
            "SELECT idx, length, digest, verified, owners FROM leaves"
            " WHERE key = ? AND idx >= ? AND idx < ?"
        )
        stored = {
            i: (n, LeafRow(bytes(d), v, o))
            for i, n, d, v, o in self._db.execute(query, (key, first, stop))
        }
        todo, owned = [], []
        for n, digest in enumerate(digests):
            length, row = stored.get(first + n, (0, None))
            after = merged(row, digest, verified, owner)
            if after is None or self._pending[(key, first + n)]:
                continue
            if row is not None and row.digest == digest:
                self._touched[(key, first + n)] = now
                if after != row:
                    owned.append((after.verified, after.owners, key, first + n))
                continue
            if row is not None:  # a digest the caller says is wrong
                self._remove([(key, first + n, length)])
            todo.append(n)
        if owned:
            with self._transaction() as db:
                update = "UPDATE leaves SET verified = ?, owners = ? WHERE key = ? AND idx = ?"
                db.executemany(update, owned)
        if not todo:
            return True
        needed = sum(lengths[n] for n in todo)
        excess = self._used + self._reserved + needed - self.capacity
        if excess > 0:
            self._evict(excess, (key, first, stop))
        if self._used + self._reserved + needed > self.capacity:
            log.debug("disk cache: no room for %d bytes of %s beside puts in progress", needed, key)
            return False
        try:
            handle = self._files.acquire(_file_name(key), write=True)
        except OSError as error:
            if error.errno not in _UNWRITABLE_ERRNOS:
                raise
            raise _Unwritable(f"{error.strerror} opening the data file of {key}") from error
        self._writing[key] += 1
        self._pending.update((key, first + n) for n in todo)
        self._reserved += needed
        return _Put(key, first, todo, lengths, needed, handle, owner)

    def _write_all(self, fd: int, data: memoryview, offset: int) -> None:
        while data:
            written = self._pwrite(fd, data, offset)
            if written <= 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            data, offset = data[written:], offset + written

    def _commit(
        self, claim: _Put, digests: Sequence[bytes], verified: str, failure: _Unwritable | None
    ) -> bool:
        """Commit the rows of a put whose bytes are written (unless ``failure``)."""
        self._abandon(claim)
        key, first, now = claim.key, claim.first, self._clock()
        rows = [
            (key, first + n, claim.lengths[n], digests[n], verified, now, claim.owner)
            for n in claim.todo
        ]
        replaced = 0
        if failure is None:
            try:
                with self._transaction() as db:
                    query = "SELECT COALESCE(SUM(length), 0) FROM leaves WHERE key = ? AND idx = ?"
                    replaced = sum(db.execute(query, row[:2]).fetchone()[0] for row in rows)
                    insert = "INSERT OR REPLACE INTO leaves VALUES (?, ?, ?, ?, ?, ?, ?)"
                    db.executemany(insert, rows)
            except _Unwritable as error:
                failure = error
        if failure is not None:
            self._discard_bytes(key, [row[1] for row in rows])
            self._unwritable(failure)
            return False
        self._used += sum(row[2] for row in rows) - replaced
        for row in rows:
            self._checked.pop((key, row[1]), None)
        if self._failing:
            self._failing = False
            log.info("disk cache %s can be written again: caching resumed", self.root)
        return True

    def _abandon(self, claim: _Put) -> None:
        """Give back what a put claimed (under the lock)."""
        if claim.done:
            return
        claim.done = True
        self._reserved -= claim.reserved
        _decrement(self._writing, claim.key)
        for n in claim.todo:
            _decrement(self._pending, (claim.key, claim.first + n))
        self._files.release(claim.handle)

    # --- removing --------------------------------------------------------------------

    def _evict(self, excess: int, keep: tuple[str, int, int]) -> None:
        """Remove least recently used leaves, not ``keep`` (key, first, stop), to free
        ``excess`` bytes or as many as there are."""
        self._flush_touches()
        query = (
            "SELECT key, idx, length FROM leaves"
            " WHERE NOT (key = ? AND idx >= ? AND idx < ?) ORDER BY used, key, idx"
        )
        victims, freed = [], 0
        cursor = self._db.execute(query, keep)
        for row in cursor:
            victims.append(row)
            freed += row[2]
            if freed >= excess:
                break
        cursor.close()
        self._remove(victims)

    def _remove(self, victims: Sequence[tuple[str, int, int]]) -> None:
        """Delete the rows of ``victims`` (key, index, length), then their bytes."""
        if not victims:
            return
        with self._transaction() as db:
            query = "DELETE FROM leaves WHERE key = ? AND idx = ?"
            db.executemany(query, [(key, index) for key, index, _ in victims])
        by_key: dict[str, list[int]] = {}
        for key, index, length in victims:
            self._used -= length
            self._checked.pop((key, index), None)
            self._touched.pop((key, index), None)
            by_key.setdefault(key, []).append(index)
        for key, indices in by_key.items():
            self._generation[key] += 1
            self._discard_bytes(key, indices)

    def _remove_quietly(self, victims: Sequence[tuple[str, int, int]]) -> None:
        try:
            self._remove(victims)
        except _Unwritable as error:
            self._unwritable(error)

    def _unlink_if_empty(self, key: str) -> bool:
        if self._writing[key]:
            return False
        query = "SELECT 1 FROM leaves WHERE key = ? LIMIT 1"
        if self._db.execute(query, (key,)).fetchone() is not None:
            return False
        name = _file_name(key)
        self._files.forget(name)
        self._generation[key] += 1
        try:
            os.unlink(name, dir_fd=self._files.directory)  # a link itself, never its target
        except FileNotFoundError:
            pass
        except OSError as error:
            log.debug("disk cache: deleting the data file of %s: %s", key, error)
        return True

    def _discard_bytes(self, key: str, indices: Sequence[int]) -> None:
        """Free the bytes of leaves without rows: the whole file when it has no leaves,
        else holes, but not where a put in progress is writing."""
        if self._unlink_if_empty(key):
            return
        indices = [i for i in indices if not self._pending[(key, i)]]
        query = "SELECT 1 FROM leaves WHERE key = ? AND idx = ?"
        with suppress(sqlite3.Error):
            indices = [i for i in indices if not self._db.execute(query, (key, i)).fetchone()]
            self._punch_leaves(key, indices)

    def _punch_leaves(self, key: str, indices: Sequence[int]) -> None:
        if self._punch is None or not indices:
            return
        try:
            handle = self._files.acquire(_file_name(key), write=False)
        except OSError:
            return
        try:
            for index in indices:
                self._punch_hole(handle.fd, index * MIB, MIB)
        finally:
            self._files.release(handle)

    def _punch_hole(self, fd: int, offset: int, length: int) -> None:
        if self._punch is None:
            return
        if self._punch(fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, offset, length) == 0:
            return
        code = ctypes.get_errno()
        if code in (errno.EOPNOTSUPP, errno.ENOSYS):
            log.info("disk cache %s: no hole punching here; evicted bytes stay on disk", self.root)
            self._punch = None
        else:
            log.debug("disk cache: punching a hole: %s", os.strerror(code))

    def _recover(self) -> None:
        """Delete data files without rows and punch out bytes without rows."""
        present: dict[str, set[int]] = {}
        for key, index in self._db.execute("SELECT key, idx FROM leaves"):
            present.setdefault(_file_name(key), set()).add(index)
        directory = self._files.directory
        with os.scandir(directory) as entries:
            names = [entry.name for entry in entries]
        for name in names:
            indices = present.get(name)
            if indices is None:
                with suppress(OSError):
                    os.unlink(name, dir_fd=directory)
                continue
            with suppress(OSError):
                fd = trusted.open_file(name, os.O_RDWR, directory)
                try:
                    for index in _data_leaves(fd):
                        if index not in indices:
                            self._punch_hole(fd, index * MIB, MIB)
                finally:
                    os.close(fd)

    # --- the index -------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction; a full or failing disk comes out as :class:`_Unwritable`."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            yield self._db
            self._db.execute("COMMIT")
        except BaseException as error:
            if self._db.in_transaction:
                with suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
            if isinstance(error, sqlite3.Error) and _sqlite_unwritable(error):
                raise _Unwritable(f"cache index: {error}") from error
            raise

    def _touch(self, key: str, index: int) -> None:
        now = self._clock()
        self._touched[(key, index)] = now
        if now - self._last_flush >= TOUCH_FLUSH_SECONDS:
            self._flush_touches()

    def _flush_touches(self) -> None:
        self._last_flush = self._clock()
        if not self._touched:
            return
        rows = [(used, key, index) for (key, index), used in self._touched.items()]
        self._touched.clear()
        try:
            with self._transaction() as db:
                db.executemany("UPDATE leaves SET used = ? WHERE key = ? AND idx = ?", rows)
        except _Unwritable as error:
            log.debug("disk cache: last-use times not saved: %s", error)

    def _unwritable(self, error: Exception) -> None:
        if not self._failing:
            self._failing = True
            log.warning(
                "disk cache %s cannot be written (%s): reading from the network without"
                " caching until it can",
                self.root,
                error,
            )


# --- helpers -------------------------------------------------------------------------


def _decrement(counter: Counter[Any], item: Any) -> None:
    counter[item] -= 1
    if not counter[item]:
        del counter[item]


def _file_name(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _leaf_lengths(size: int, count: int) -> list[int]:
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


def _data_leaves(fd: int) -> Iterator[int]:
    """The leaves of a sparse file that hold any data."""
    offset = 0
    while True:
        try:
            offset = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError:  # ENXIO: no data past offset
            return
        end = os.lseek(fd, offset, os.SEEK_HOLE)
        yield from range(offset // MIB, -(-end // MIB))
        offset = end


def _sqlite_unwritable(error: sqlite3.Error) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in _UNWRITABLE_SQLITE


def _load_fallocate() -> Callable[[int, int, int, int], int] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    function = getattr(libc, "fallocate64", None) or getattr(libc, "fallocate", None)
    if function is None:
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    function.restype = ctypes.c_int
    return function


def _close_all(descriptors: list[int]) -> None:
    while descriptors:
        os.close(descriptors.pop())


def _open_root(root: Path) -> int:
    """The cache root, held by descriptor once its path is checked (see
    :mod:`glacierfs.trusted`); created 0700 with any missing parents. It must be ours
    alone: a root-owned sticky directory is fine on the way, not as the cache."""
    fd = trusted.open_directory(root, f"cache directory {root}", create=True)
    info = os.fstat(fd)
    problem = None
    if info.st_uid != os.geteuid():
        problem = f"belongs to uid {info.st_uid}, not to uid {os.geteuid()}"
    elif info.st_mode & 0o022:
        mode = stat.S_IMODE(info.st_mode)
        problem = f"is writable by group or others (mode {mode:04o}); make it 0700"
    if problem is not None:
        os.close(fd)
        raise ConfigError(f"cache directory {root} {problem}")
    return fd


def _take_lock(root: Path, directory: int) -> int:
    """Lock ``root`` for this DiskCache's lifetime; return the lock file's descriptor.

    The lock is a regular file of ours with one link, opened without following a
    symlink, or the cache is refused: it is truncated, so it must be nobody else's.
    """
    path = root / "lock"
    try:
        fd = trusted.open_file("lock", os.O_RDWR | os.O_CREAT, directory)
    except OSError as error:
        message = f"cache directory {root}: cannot open {path}: {error.strerror}"
        raise ConfigError(message) from error
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        if isinstance(error, BlockingIOError):
            raise ConfigError(
                f"cache directory {root} is in use by another glacierfs (pid {owner})"
            ) from None
        message = f"cache directory {root}: cannot lock {path}: {error.strerror}"
        raise ConfigError(message) from error
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _migrate(db: sqlite3.Connection, version: int) -> None:
    """Bring an index of schema ``version`` (0: new) to :data:`SCHEMA_VERSION`, in one
    transaction: a crash leaves the old schema whole, and no row or byte is lost.

    1 -> 2: rows gain owners, none: no job vouched for a leaf then, so each is earned
    again (see the module) before it is served."""
    db.execute("BEGIN IMMEDIATE")
    try:
        if version == 1:
            db.execute("ALTER TABLE leaves ADD COLUMN owners TEXT NOT NULL DEFAULT ''")
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                db.execute(statement)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


_INDEX = "index.sqlite3"
_INDEX_COMPANIONS = (f"{_INDEX}-wal", f"{_INDEX}-shm", f"{_INDEX}-journal")


def _open_index(directory: int, path: Path) -> sqlite3.Connection:
    """The index, in WAL mode, in the held ``directory`` (``path`` names it in messages);
    created 0600 (SQLite gives its -wal and -shm the same)."""
    try:
        db = _connect_index(directory, path)
    except (OSError, sqlite3.Error) as error:
        raise ConfigError(f"cache index {path}: {error}") from error
    try:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")  # WAL: durable across crashes; see module
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, 1, SCHEMA_VERSION):
            raise ConfigError(f"cache index {path} has schema {version}, not {SCHEMA_VERSION}")
        _migrate(db, version)
    except sqlite3.Error as error:
        db.close()
        message = f"cache index {path} is unusable ({error}); delete it to start afresh"
        raise ConfigError(message) from error
    except BaseException:
        db.close()
        raise
    return db


def _connect_index(directory: int, path: Path) -> sqlite3.Connection:
    """A connection to the index file opened here by descriptor (see :func:`_index_name`)."""
    try:
        fd = trusted.open_file(_INDEX, os.O_RDWR | os.O_CREAT, directory)
    except OSError as error:
        raise ConfigError(f"cache index {path}: {error.strerror}") from error
    try:
        _check_companions(directory, path)
        db = sqlite3.connect(
            _index_name(directory, path), check_same_thread=False, isolation_level=None
        )
        try:
            db.execute("PRAGMA schema_version")  # SQLite opens the file on first use
            if not _holds(fd):
                raise ConfigError(f"cache index {path} was replaced while it was opened")
        except BaseException:
            db.close()
            raise
        return db
    finally:
        os.close(fd)


def _index_name(directory: int, path: Path) -> str:
    """The name SQLite opens the index by: through the held directory.

    SQLite takes a name, not a descriptor, so the index is named through
    ``/proc/self/fd/<directory>``. SQLite (3.40) resolves that link itself and opens the
    directory's path as the kernel names it at that moment, then adds ``-wal`` and
    ``-shm`` to it. That path is the one the walk checked, and every directory on it
    belongs to us or root and no one else can write it, so no other user can make it name
    another file. Afterwards :func:`_holds` checks that the file SQLite opened is the one
    opened here by descriptor. Without /proc, the checked path is used as it is.
    """
    proc = f"/proc/self/fd/{directory}"
    return f"{proc}/{_INDEX}" if os.path.isdir(proc) else os.fspath(path)


def _check_companions(directory: int, path: Path) -> None:
    """SQLite opens -wal and -shm by name, following links: any present must be ours."""
    for name in _INDEX_COMPANIONS:
        try:
            info = os.stat(name, dir_fd=directory, follow_symlinks=False)
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() or info.st_nlink != 1:
            raise ConfigError(
                f"cache index {path}: {name} is not a regular file of uid {os.geteuid()}"
                " (one link); delete it"
            )


def _holds(fd: int) -> bool:
    """Whether another descriptor of this process is open on ``fd``'s file (True when
    /proc cannot tell)."""
    mine = os.fstat(fd)
    try:
        others = [int(name) for name in os.listdir("/proc/self/fd") if int(name) != fd]
    except OSError:
        return True
    for other in others:
        with suppress(OSError):
            info = os.stat(f"/proc/self/fd/{other}")
            if (info.st_dev, info.st_ino) == (mine.st_dev, mine.st_ino):
                return True
    return False
