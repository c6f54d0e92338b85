"""The cache directory: its root held by descriptor, locked, and the session it records.

Layout. Everything format-specific lives under ``root/v1/``; a future format takes
``v2`` and never misreads this one::

    root/lock                     flock()ed while a DiskCache is open; holds its pid
    root/identity                 the cache's secret (0600), by which a mount proves it
                                  holds this cache (not a pid in a file)
    root/v1/index.sqlite3         SQLite, WAL: a row per leaf present, and metadata
    root/v1/data/<sha256(key)>    one sparse file per object; leaf i at offset i * 1 MiB

Held, not found again by path. The daemon often runs as root, so a path that another
user could redirect would let them aim our writes at any file. The root's path is
checked once, from ``/`` down (:mod:`glacierfs.cacheroot`: every directory must be ours
or root's and writable by no one else, a root-owned sticky one like /tmp aside). The
root itself must be ours alone. Then it is held open, and everything under it is
opened relative to the held descriptors (root, ``v1``, ``data``) without following a
symlink. The lock, the index and the data files must be regular files of ours with one
link. Anything else is unusable: the cache is refused at start, or a data file becomes
a miss that cannot be written.

Crash recovery. The index's ``session`` table holds the pid of the open DiskCache and
is emptied by a clean close. Found non-empty at open, the last one died: bytes written
for rows that never committed are punched out, and data files without rows deleted
(:meth:`CacheDirectory.recover`).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from glacierfs.cache.disk.blocks import BlockStore, can_punch, file_name
from glacierfs.cache.disk.index import INDEX, Index, open_index
from glacierfs.cacheroot import Held, identity, open_root
from glacierfs.errors import ConfigError

LAYOUT = "v1"


class CacheDirectory:
    """The root (held, locked), its ``v1`` and ``data`` directories, and the index."""

    def __init__(self, root: Path) -> None:
        self.root = root
        held = open_root(root)
        self._directories: list[Held] = [held]  # root, layout, data: all held open
        try:
            self._lock_fd = _take_lock(root, held)
            try:
                self.identity = identity(held)
                self.index = self._open_layout()
            except BaseException:
                os.close(self._lock_fd)
                raise
        except BaseException:
            _close_all(self._directories)
            raise

    def _open_layout(self) -> Index:
        layout = self._directories[0].directory(LAYOUT)
        self._directories.append(layout)
        data = layout.directory("data")
        self._directories.append(data)
        if not can_punch(data.fd):
            raise ConfigError(
                f"cache directory {self.root}: its filesystem cannot punch holes (fallocate),"
                " so evicted bytes would stay and cache_size could not hold; put the cache on"
                " another filesystem (ext4, xfs, btrfs, tmpfs)"
            )
        return open_index(layout, self.root / LAYOUT / INDEX)

    @property
    def data(self) -> int:
        """The held ``data`` directory."""
        return self._directories[2].fd

    def crashed(self) -> bool:
        """Whether the last DiskCache on this root was not closed."""
        return self.index.execute("SELECT pid FROM session").fetchone() is not None

    def recover(self, blocks: BlockStore) -> None:
        """Delete data files without rows and punch out bytes without rows."""
        present: dict[str, set[int]] = {}
        for key, index in self.index.execute("SELECT key, idx FROM leaves"):
            present.setdefault(file_name(key), set()).add(index)
        blocks.keep_only(present)

    def begin_session(self) -> None:
        """Note this DiskCache as open (may raise :class:`~.index.Unwritable`)."""
        with self.index.transaction() as db:
            db.execute("DELETE FROM session")
            db.execute("INSERT INTO session VALUES (?)", (os.getpid(),))

    def end_session(self) -> None:
        """Note a clean close (may raise :class:`~.index.Unwritable`)."""
        with self.index.transaction() as db:
            db.execute("DELETE FROM session")

    def close(self) -> None:
        """Close the index, release the lock and the directories."""
        self.index.close()
        os.close(self._lock_fd)
        _close_all(self._directories)


def _close_all(directories: list[Held]) -> None:
    while directories:
        directories.pop().close()


def _take_lock(root: Path, directory: Held) -> int:
    """Lock ``root`` for this DiskCache's lifetime; return the lock file's descriptor.

    The lock is a regular file of ours with one link, opened without following a
    symlink, or the cache is refused: it is truncated, so it must be nobody else's.
    """
    path = root / "lock"
    try:
        fd = directory.open("lock", os.O_RDWR | os.O_CREAT)
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
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError as error:  # a full or read-only disk: the cache cannot be used
        os.close(fd)
        raise ConfigError(
            f"cache directory {root}: cannot write {path}: {error.strerror}"
        ) from None
    return fd
