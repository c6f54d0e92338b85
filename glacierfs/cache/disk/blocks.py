"""The block store: one sparse data file per object, leaf ``i`` at offset ``i * 1 MiB``.

Why one sparse file per object, not a file per leaf (a temporary file renamed, with a
header naming key and digest): with 1 GiB of leaves in the page cache (ext4, 2 cores),
reads later in a lifetime run at 13 GB/s against 7 GB/s for files per leaf (23 against
10 GB/s on two threads), as a leaf is one pread on an open file, not open, read and
close; first reads, which hash, run at 1.35 GB/s either way, and puts at 0.6-1.7 GB/s
either way, far above what Glacier delivers. There are far fewer files.

Files are opened relative to the held ``data`` directory, never following a symlink, and
must be regular files of ours with one link (:func:`glacierfs.trusted.open_file`);
anything else is a miss that cannot be written. They stay open in an LRU of descriptors;
one in use by a read or a write is closed only when released.

Removed leaves are punched out of their file (``fallocate`` PUNCH_HOLE), and a file
holding no leaves is deleted. A filesystem that cannot punch holes (ramfs) is refused
when the cache opens (:func:`can_punch`): evicted bytes would stay on it, and
``cache_size`` would not hold. Not thread-safe: the DiskCache's lock guards the LRU;
``pread`` and ``pwrite`` on an acquired handle run outside it.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from glacierfs import trusted
from glacierfs.treehash import MIB

log = logging.getLogger(__name__)

Writer = Callable[[int, memoryview, int], int]

OPEN_FILES = 256
"""Data files kept open: enough for every object a mount reads at once, and far below
the usual soft limit of 1024 descriptors, which sockets and FUSE share."""

_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02


@dataclass(eq=False)
class Handle:
    """An open data file, held by its users; ``writes`` orders the writes into it (see
    :meth:`BlockStore.write`)."""

    fd: int
    writable: bool
    users: int = 0
    retired: bool = False
    writes: threading.Lock = field(default_factory=threading.Lock)


def file_name(key: str) -> str:
    """The data file of the object ``key`` (keys are opaque and may hold any character)."""
    return hashlib.sha256(key.encode()).hexdigest()


class BlockStore:
    """Data files under the held ``data`` directory; ``root`` names the cache in messages,
    ``pwrite`` writes (tests pass a failing one to fill the disk)."""

    def __init__(self, directory: int, root: Path, pwrite: Writer, limit: int = OPEN_FILES):
        self.directory = directory
        self._root = root
        self._pwrite = pwrite
        self._limit = limit
        self._open: OrderedDict[str, Handle] = OrderedDict()
        self._punch = _load_fallocate()

    # --- open files ------------------------------------------------------------------

    def acquire(self, key: str, write: bool) -> Handle:
        """The open data file of ``key`` (created when ``write``), held until :meth:`release`."""
        name = file_name(key)
        handle = self._open.get(name)
        if handle is not None and (handle.writable or not write):
            self._open.move_to_end(name)
        else:
            self._forget(name)
            handle = self._open[name] = self._open_file(name, write)
            while len(self._open) > self._limit:
                self._retire(self._open.popitem(last=False)[1])
        handle.users += 1
        return handle

    def _open_file(self, name: str, write: bool) -> Handle:
        flags = os.O_RDWR | (os.O_CREAT if write else 0)
        try:
            return Handle(trusted.open_file(name, flags, self.directory), writable=True)
        except OSError as error:
            if write or error.errno not in (errno.EACCES, errno.EROFS, errno.EPERM):
                raise
        return Handle(trusted.open_file(name, os.O_RDONLY, self.directory), writable=False)

    def release(self, handle: Handle) -> None:
        handle.users -= 1
        if handle.retired and handle.users == 0:
            os.close(handle.fd)

    def _forget(self, name: str) -> None:
        """Close the file when its users release it (it is being deleted, or reopened)."""
        handle = self._open.pop(name, None)
        if handle is not None:
            self._retire(handle)

    def close(self) -> None:
        while self._open:
            self._retire(self._open.popitem()[1])

    @staticmethod
    def _retire(handle: Handle) -> None:
        handle.retired = True
        if handle.users == 0:
            os.close(handle.fd)

    # --- bytes -----------------------------------------------------------------------

    @staticmethod
    def read(handle: Handle, offset: int, length: int) -> bytes | None:
        """``length`` bytes at ``offset``; None when the read fails or comes up short (a
        truncated or damaged file)."""
        try:
            data = os.pread(handle.fd, length, offset)
        except OSError as error:
            log.debug("disk cache: reading %d bytes at %d: %s", length, offset, error)
            return None
        return data if len(data) == length else None

    def write(self, handle: Handle, data: memoryview, offset: int) -> None:
        """All of ``data`` at ``offset``, short writes carried on (OSError on failure).

        One write at a time per file: ext4 holds the inode's lock through a buffered
        write, and the file's other writers (up to one per connection) spin on it while
        its holder copies, on the cores the holder needs (1-4% of the daemon's CPU in
        perf profiles of cold loopback reads, 16 connections, 2 cores); waiting on a
        lock of ours, they sleep instead."""
        with handle.writes:
            while data:
                written = self._pwrite(handle.fd, data, offset)
                if written <= 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                data, offset = data[written:], offset + written

    # --- freeing ---------------------------------------------------------------------

    def delete(self, key: str) -> None:
        """Delete the data file of ``key`` (a link itself, never its target)."""
        self._forget(file_name(key))
        try:
            os.unlink(file_name(key), dir_fd=self.directory)
        except FileNotFoundError:
            pass
        except OSError as error:
            log.debug("disk cache: deleting the data file of %s: %s", key, error)

    def punch(self, key: str, indices: Iterable[int]) -> None:
        """Free the bytes of leaves ``indices`` of ``key`` (which must have no rows)."""
        indices = list(indices)
        if self._punch is None or not indices:
            return
        try:
            handle = self.acquire(key, write=False)
        except OSError:
            return
        try:
            for index in indices:
                self.punch_leaf(handle.fd, index)
        finally:
            self.release(handle)

    def punch_leaf(self, fd: int, index: int) -> None:
        if self._punch is None:
            return
        mode = _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE
        if self._punch(fd, mode, index * MIB, MIB) == 0:
            return
        code = ctypes.get_errno()
        if code in (errno.EOPNOTSUPP, errno.ENOSYS):
            log.info("disk cache %s: no hole punching here; evicted bytes stay on disk", self._root)
            self._punch = None
        else:
            log.debug("disk cache: punching a hole: %s", os.strerror(code))

    def keep_only(self, present: dict[str, set[int]]) -> None:
        """After a crash: delete files of no ``present`` name, and punch out the leaves
        holding data that ``present`` (file name -> leaf indices with rows) lacks."""
        with os.scandir(self.directory) as entries:
            names = [entry.name for entry in entries]
        for name in names:
            indices = present.get(name)
            if indices is None:
                with suppress(OSError):
                    os.unlink(name, dir_fd=self.directory)
                continue
            with suppress(OSError):
                fd = trusted.open_file(name, os.O_RDWR, self.directory)
                try:
                    for index in _data_leaves(fd):
                        if index not in indices:
                            self.punch_leaf(fd, index)
                finally:
                    os.close(fd)


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


def can_punch(directory: int) -> bool:
    """Whether the filesystem of the held ``directory`` frees the bytes of a punched
    hole, tried on a probe file (ramfs cannot: evicted bytes would stay, and
    ``cache_size`` would not hold). A probe that cannot be made (a full or read-only
    disk) says yes: that disk is refused, or its writes fail one by one, elsewhere."""
    punch = _load_fallocate()
    if punch is None:
        return False
    name = f".punch-probe-{os.getpid()}"
    try:
        fd = trusted.open_file(name, os.O_RDWR | os.O_CREAT | os.O_TRUNC, directory)
    except OSError:
        return True
    try:
        punched = punch(fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, 0, MIB) == 0
        return punched or ctypes.get_errno() not in (errno.EOPNOTSUPP, errno.ENOSYS)
    finally:
        os.close(fd)
        with suppress(OSError):
            os.unlink(name, dir_fd=directory)


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
