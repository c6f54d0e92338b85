"""The ceiling of the stack: a minimal pyfuse3 filesystem that serves one file from memory.

Usage: python -m tests.bench.ceiling SOURCE MOUNTPOINT

It loads SOURCE whole into memory, mounts one read-only file, ``MOUNTPOINT/data``, with
the options glacierfs mounts with (``ro``, ``default_permissions``, ``keep_cache`` on
open, ``st_blksize`` of 1 MiB, so the kernel sends reads of up to 1 MiB), and answers
each read with a slice of that memory (a memoryview: no copy in Python). Whatever
glacierfs does beyond this is its own cost: this process is what pyfuse3, trio and the
kernel's FUSE path give on this machine. It runs until unmounted, then prints on
stdout how many reads of each size the kernel sent, so the bench can show that the
reads were as large as glacierfs's.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import sys
from collections import Counter
from typing import Any

import pyfuse3
import trio

FILE_INODE = pyfuse3.ROOT_INODE + 1
NAME = b"data"


class Ceiling(pyfuse3.Operations):
    def __init__(self, data: bytes) -> None:
        super().__init__()
        self.data = memoryview(data)
        self.sizes: Counter[int] = Counter()

    def _attr(self, inode: int) -> Any:
        entry = pyfuse3.EntryAttributes()
        entry.st_ino = inode
        if inode == pyfuse3.ROOT_INODE:
            entry.st_mode, entry.st_nlink, entry.st_size = stat.S_IFDIR | 0o555, 2, 0
        else:
            entry.st_mode, entry.st_nlink = stat.S_IFREG | 0o444, 1
            entry.st_size = len(self.data)
        entry.st_uid, entry.st_gid = os.getuid(), os.getgid()
        entry.st_blksize = 1 << 20
        entry.st_blocks = -(-entry.st_size // 512)
        entry.attr_timeout = entry.entry_timeout = 3600.0
        return entry

    async def lookup(self, parent_inode: int, name: bytes, ctx: Any = None) -> Any:
        if parent_inode != pyfuse3.ROOT_INODE or name != NAME:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self._attr(FILE_INODE)

    async def getattr(self, inode: int, ctx: Any = None) -> Any:
        return self._attr(inode)

    async def opendir(self, inode: int, ctx: Any) -> int:
        return inode

    async def readdir(self, fh: int, start_id: int, token: Any) -> None:
        if start_id == 0:
            pyfuse3.readdir_reply(token, NAME, self._attr(FILE_INODE), 1)

    async def open(self, inode: int, flags: int, ctx: Any) -> Any:
        if inode != FILE_INODE:
            raise pyfuse3.FUSEError(errno.EISDIR)
        return pyfuse3.FileInfo(fh=inode, keep_cache=True)

    async def read(self, fh: int, off: int, size: int) -> memoryview:
        self.sizes[size] += 1
        return self.data[off : off + size]


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m tests.bench.ceiling SOURCE MOUNTPOINT", file=sys.stderr)
        return 2
    source, mountpoint = argv
    with open(source, "rb") as stream:
        data = stream.read()
    operations = Ceiling(data)
    options = {"ro", "default_permissions", "fsname=ceiling", "subtype=ceiling"}
    pyfuse3.init(operations, mountpoint, options)
    try:
        trio.run(pyfuse3.main)
    except BaseException:
        pyfuse3.close(unmount=False)
        raise
    pyfuse3.close()
    print(json.dumps({"read_sizes": dict(operations.sizes)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
