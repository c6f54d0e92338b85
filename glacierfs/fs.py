"""The pyfuse3 adapter: the only module that imports pyfuse3, and a thin one.

Each handler calls :class:`~glacierfs.filesystem.Filesystem` and turns its result
into a reply, or its error into an errno, in one place (:func:`_replying`). An
unexpected exception is logged with its traceback and answered with EIO: the daemon
never dies because one request failed.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pyfuse3

from glacierfs.errors import GlacierfsError, ShuttingDown
from glacierfs.filesystem import Attr, Filesystem
from glacierfs.logs import LogOnce

log = logging.getLogger(__name__)

REPEAT_QUIET = 60.0
"""Seconds an error already logged stays quiet: a `cp` of a failing file is one line."""

_failures = LogOnce(log, every=REPEAT_QUIET)


def _log_failure(operation: str, error: GlacierfsError) -> None:
    """No news (a name or attribute that does not exist, a mount ending) is not logged."""
    if isinstance(error, ShuttingDown) or error.errno in (errno.ENOENT, errno.ENODATA):
        return
    text = f"{operation}: {error}"
    _failures.warning(text, "%s", text)


FILE_TIMEOUT = 3600.0
"""Outputs never change, so the kernel may keep their names and attributes an hour."""

DIR_TIMEOUT = 5.0
"""Directories change when jobs appear or expire; keep them fresh."""

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def _replying(handler: F) -> F:
    @functools.wraps(handler)
    async def wrapper(self: Any, *args: Any) -> Any:
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "fuse %s%r",
                handler.__name__,
                args[:-1] if args and isinstance(args[-1], pyfuse3.RequestContext) else args,
            )
        try:
            return await handler(self, *args)
        except pyfuse3.FUSEError:
            raise
        except GlacierfsError as error:
            _log_failure(handler.__name__, error)
            raise pyfuse3.FUSEError(error.errno) from None
        except Exception:
            log.exception("unexpected error in %s%r", handler.__name__, args)
            raise pyfuse3.FUSEError(errno.EIO) from None

    return wrapper  # type: ignore[return-value]


class Operations(pyfuse3.Operations):
    supports_dot_lookup = True
    enable_writeback_cache = False
    enable_acl = False

    def __init__(self, fs: Filesystem) -> None:
        super().__init__()
        self.fs = fs

    def _entry(self, attr: Attr) -> Any:
        entry = pyfuse3.EntryAttributes()
        entry.st_ino = attr.inode
        entry.st_mode = attr.mode
        entry.st_nlink = attr.nlink
        entry.st_size = attr.size
        entry.st_uid = attr.uid
        entry.st_gid = attr.gid
        entry.st_blksize = 1 << 20
        entry.st_blocks = -(-attr.size // 512)
        mtime_ns = int(attr.mtime * 1e9)
        entry.st_atime_ns = entry.st_mtime_ns = entry.st_ctime_ns = mtime_ns
        timeout = DIR_TIMEOUT if attr.mode & 0o040000 else FILE_TIMEOUT
        entry.attr_timeout = entry.entry_timeout = timeout
        entry.generation = 0
        return entry

    @_replying
    async def lookup(self, parent_inode: int, name: bytes, ctx: Any = None) -> Any:
        return self._entry(self.fs.lookup(parent_inode, os.fsdecode(name)))

    @_replying
    async def getattr(self, inode: int, ctx: Any = None) -> Any:
        return self._entry(self.fs.getattr(inode))

    @_replying
    async def opendir(self, inode: int, ctx: Any) -> int:
        return self.fs.opendir(inode)

    @_replying
    async def readdir(self, fh: int, start_id: int, token: Any) -> None:
        for name, attr, next_id in self.fs.readdir(fh, start_id):
            if not pyfuse3.readdir_reply(token, os.fsencode(name), self._entry(attr), next_id):
                break

    @_replying
    async def releasedir(self, fh: int) -> None:
        self.fs.releasedir(fh)

    @_replying
    async def open(self, inode: int, flags: int, ctx: Any) -> Any:
        return pyfuse3.FileInfo(fh=self.fs.open(inode, flags), keep_cache=True)

    @_replying
    async def read(self, fh: int, off: int, size: int) -> Any:
        return await self.fs.read(fh, off, size)

    @_replying
    async def release(self, fh: int) -> None:
        self.fs.release(fh)

    @_replying
    async def getxattr(self, inode: int, name: bytes, ctx: Any) -> bytes:
        return await self.fs.getxattr(inode, os.fsdecode(name))

    @_replying
    async def listxattr(self, inode: int, ctx: Any) -> list[bytes]:
        return [os.fsencode(name) for name in await self.fs.xattrs(inode)]

    @_replying
    async def statfs(self, ctx: Any) -> Any:
        total, nodes = self.fs.statfs_totals()
        result = pyfuse3.StatvfsData()
        result.f_bsize = result.f_frsize = 1 << 20
        result.f_blocks = -(-total // (1 << 20))
        result.f_bfree = result.f_bavail = 0
        result.f_files = nodes
        result.f_ffree = result.f_favail = 0
        result.f_namemax = 255
        return result

    @_replying
    async def access(self, inode: int, mode: int, ctx: Any) -> bool:
        self.fs.getattr(inode)
        return not mode & os.W_OK

    # Read-only everywhere: the kernel refuses most of these itself (the mount is "ro").

    async def setattr(self, inode: int, attr: Any, fields: Any, fh: Any, ctx: Any) -> Any:
        raise pyfuse3.FUSEError(errno.EROFS)

    async def mknod(self, parent: int, name: bytes, mode: int, rdev: int, ctx: Any) -> Any:
        raise pyfuse3.FUSEError(errno.EROFS)

    async def mkdir(self, parent: int, name: bytes, mode: int, ctx: Any) -> Any:
        raise pyfuse3.FUSEError(errno.EROFS)

    async def unlink(self, parent: int, name: bytes, ctx: Any) -> None:
        raise pyfuse3.FUSEError(errno.EROFS)

    async def rmdir(self, parent: int, name: bytes, ctx: Any) -> None:
        raise pyfuse3.FUSEError(errno.EROFS)

    async def symlink(self, parent: int, name: bytes, target: bytes, ctx: Any) -> Any:
        raise pyfuse3.FUSEError(errno.EROFS)

    async def rename(
        self,
        old_parent: int,
        old_name: bytes,
        new_parent: int,
        new_name: bytes,
        flags: int,
        ctx: Any,
    ) -> None:
        raise pyfuse3.FUSEError(errno.EROFS)

    async def link(self, inode: int, new_parent: int, new_name: bytes, ctx: Any) -> Any:
        raise pyfuse3.FUSEError(errno.EROFS)

    async def create(self, parent: int, name: bytes, mode: int, flags: int, ctx: Any) -> Any:
        raise pyfuse3.FUSEError(errno.EROFS)

    async def write(self, fh: int, off: int, buf: bytes) -> int:
        raise pyfuse3.FUSEError(errno.EROFS)

    async def setxattr(self, inode: int, name: bytes, value: bytes, ctx: Any) -> None:
        raise pyfuse3.FUSEError(errno.EROFS)

    async def removexattr(self, inode: int, name: bytes, ctx: Any) -> None:
        raise pyfuse3.FUSEError(errno.EROFS)


def init(fs: Filesystem, mountpoint: Path, options: set[str], debug: bool = False) -> None:
    """Mount: after this returns the mount is up (the kernel queues requests)."""
    if debug:
        options = options | {"debug"}
    pyfuse3.init(Operations(fs), str(mountpoint), options)


async def main() -> None:
    """Serve requests until the filesystem is unmounted or :func:`terminate` is called."""
    await pyfuse3.main()


def terminate() -> None:
    pyfuse3.terminate()


def close(unmount: bool = True) -> None:
    pyfuse3.close(unmount=unmount)
