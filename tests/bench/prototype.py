"""A minimal pyfuse3 filesystem serving one file from memory, and a prototype read path.

Usage: python -m tests.bench.prototype SOURCE MOUNTPOINT [--from-file]

Serves the bytes of SOURCE (read into memory at start) as MOUNTPOINT/data, with the
options glacierfs mounts with (``ro``, ``default_permissions``, ``keep_cache``), until
unmounted. A read is a slice of a memoryview: no check, no lookup, no copy in Python.
What glacierfs delivers beside it is what its own design costs on this machine.

``--from-file`` is a prototype of the warm read path proposed in issue 14, not a
ceiling: each read is a ``preadv2(RWF_NOWAIT)`` of just the bytes asked for from
SOURCE into a buffer used again, on the trio thread (a worker thread only when the
bytes are not in the page cache), and the first read of each 64 KiB granule in the
mount checks it against an XXH3 sum taken at start (zlib.crc32 when xxhash is not
installed), as the cache would store one per granule with each leaf.
"""

from __future__ import annotations

import errno
import importlib
import os
import stat
import sys
import zlib
from collections.abc import Callable
from typing import Any

import pyfuse3
import trio

INODE = pyfuse3.ROOT_INODE + 1
NAME = b"data"


class Memory(pyfuse3.Operations):  # type: ignore[misc]
    def __init__(self, data: bytes) -> None:
        super().__init__()
        self.view = memoryview(data)

    def _attr(self, inode: int) -> Any:
        entry = pyfuse3.EntryAttributes()
        entry.st_ino = inode
        if inode == INODE:
            entry.st_mode, entry.st_size = stat.S_IFREG | 0o444, len(self.view)
        else:
            entry.st_mode, entry.st_size = stat.S_IFDIR | 0o555, 0
        entry.st_nlink, entry.st_blksize = 1, 1 << 20
        entry.st_uid, entry.st_gid = os.getuid(), os.getgid()
        entry.attr_timeout = entry.entry_timeout = 3600.0
        return entry

    async def getattr(self, inode: int, ctx: Any = None) -> Any:
        if inode not in (pyfuse3.ROOT_INODE, INODE):
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self._attr(inode)

    async def lookup(self, parent: int, name: bytes, ctx: Any = None) -> Any:
        if parent != pyfuse3.ROOT_INODE or name != NAME:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self._attr(INODE)

    async def opendir(self, inode: int, ctx: Any) -> int:
        return inode

    async def readdir(self, fh: int, start: int, token: Any) -> None:
        if start == 0:
            pyfuse3.readdir_reply(token, NAME, self._attr(INODE), 1)

    async def open(self, inode: int, flags: int, ctx: Any) -> Any:
        return pyfuse3.FileInfo(fh=inode, keep_cache=True)

    async def read(self, fh: int, offset: int, size: int) -> memoryview:
        return self.view[offset : offset + size]


GRANULE = 64 << 10


def fast_sum() -> Callable[[Any], int]:
    try:
        return importlib.import_module("xxhash").xxh3_64_intdigest  # type: ignore[no-any-return]
    except ImportError:
        return zlib.crc32


class FromFile(Memory):
    """The prototype: reads from a file, each granule checked on its first read."""

    def __init__(self, source: str) -> None:
        self.fd = os.open(source, os.O_RDONLY)
        self.size = os.fstat(self.fd).st_size
        super().__init__(b"")
        self.check = fast_sum()
        self.sums = []
        for offset in range(0, self.size, GRANULE):
            self.sums.append(self.check(os.pread(self.fd, GRANULE, offset)))
        self.checked = bytearray(len(self.sums))
        self.buffer = bytearray(1 << 20)  # handed to pyfuse3, which replies before we run again

    def _attr(self, inode: int) -> Any:
        entry = super()._attr(inode)
        if inode == INODE:
            entry.st_size = self.size
        return entry

    def _pread(self, view: memoryview, offset: int) -> int:
        try:
            return os.preadv(self.fd, [view], offset, os.RWF_NOWAIT)
        except BlockingIOError:  # not in the page cache: the disk, in a worker thread
            raise _Blocking from None

    async def read(self, fh: int, offset: int, size: int) -> memoryview:
        size = max(0, min(size, self.size - offset))
        first, stop = offset // GRANULE, -(-(offset + size) // GRANULE)
        if not all(self.checked[first:stop]):
            start, end = first * GRANULE, min(stop * GRANULE, self.size)
            view = memoryview(bytearray(end - start))
            await self._fill(view, start)
            for n in range(first, stop):
                piece = view[(n - first) * GRANULE : (n - first + 1) * GRANULE]
                if self.check(piece) != self.sums[n]:
                    raise pyfuse3.FUSEError(errno.EIO)
                self.checked[n] = 1
            return view[offset - start : offset - start + size]
        view = memoryview(self.buffer)[:size]
        await self._fill(view, offset)
        return view

    async def _fill(self, view: memoryview, offset: int) -> None:
        try:
            done = self._pread(view, offset)
        except _Blocking:
            done = await trio.to_thread.run_sync(os.preadv, self.fd, [view], offset)
        if done != len(view):
            raise pyfuse3.FUSEError(errno.EIO)


class _Blocking(Exception):
    pass


def main() -> int:
    source, mountpoint = sys.argv[1], sys.argv[2]
    operations: Memory
    if "--from-file" in sys.argv[3:]:
        operations = FromFile(source)
    else:
        with open(source, "rb") as stream:
            operations = Memory(stream.read())
    options = {"ro", "default_permissions", "fsname=ceiling", "subtype=ceiling"}
    pyfuse3.init(operations, mountpoint, options)
    try:
        trio.run(pyfuse3.main)
    finally:
        pyfuse3.close(unmount=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
