"""The pyfuse3 adapter: the only module that imports pyfuse3, and a thin one.

Each handler calls :class:`~glacierfs.view.filesystem.Filesystem` and turns its result
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

from glacierfs.errors import FsError, GlacierfsError, ShuttingDown
from glacierfs.logs import LogOnce
from glacierfs.view.filesystem import Attr, Filesystem

log = logging.getLogger(__name__)

REPEAT_QUIET = 60.0
"""Seconds an error already logged stays quiet: a `cp` of a failing file is one line."""

_failures = LogOnce(log, every=REPEAT_QUIET)


def _log_failure(operation: str, error: GlacierfsError) -> None:
    """What went wrong in the daemon or at the service, once a minute per message.

    A plain answer to the caller's own request (no such name, not a directory, read-only,
    a bad handle: :class:`FsError`) and the end of the mount are no news, not logged.
    """
    if isinstance(error, FsError | ShuttingDown) or error.errno in (errno.ENOENT, errno.ENODATA):
        return
    text = f"{operation}: {error}"
    _failures.warning(text, "%s", text)


FILE_TIMEOUT = 3600.0
"""Outputs never change, so the kernel may keep their names and attributes an hour."""

DIR_TIMEOUT = 5.0
"""Directories change when jobs appear or expire; keep them fresh."""

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def _answer(name: str, error: GlacierfsError) -> pyfuse3.FUSEError:
    _log_failure(name, error)
    return pyfuse3.FUSEError(error.errno)


def _replying(handler: F) -> F:
    """Log the call (at debug level); answer a failure with its errno, one line logged
    for a domain error (:func:`_log_failure`), a traceback for any other."""

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
            raise _answer(handler.__name__, error) from None
        except Exception:
            log.exception("unexpected error in %s%r", handler.__name__, args)
            raise pyfuse3.FUSEError(errno.EIO) from None

    return wrapper  # type: ignore[return-value]


class Operations(pyfuse3.Operations):
    """The read calls of a read-only mount; pyfuse3's defaults answer every write call.

    The mount is ``ro``: the kernel answers EROFS to a write call before it reaches
    the daemon, so no write handler is defined here (pyfuse3's default is ENOSYS), and
    an open for writing, should one arrive, is refused by :meth:`Filesystem.open`.
    """

    supports_dot_lookup = True
    enable_writeback_cache = False
    enable_acl = False

    def __init__(self, fs: Filesystem) -> None:
        super().__init__()
        self.fs = fs
        self._recycle = fs.reader.recycle_after_reply

    def _entry(self, attr: Attr) -> pyfuse3.EntryAttributes:
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
    async def lookup(
        self, parent_inode: pyfuse3.InodeT, name: pyfuse3.FileNameT, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        return self._entry(self.fs.lookup(parent_inode, os.fsdecode(name)))

    @_replying
    async def getattr(
        self, inode: pyfuse3.InodeT, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        return self._entry(self.fs.getattr(inode))

    @_replying
    async def opendir(
        self, inode: pyfuse3.InodeT, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.FileHandleT:
        return self.fs.opendir(inode)

    @_replying
    async def readdir(
        self, fh: pyfuse3.FileHandleT, start_id: int, token: pyfuse3.ReaddirToken
    ) -> None:
        for name, attr, next_id in self.fs.readdir(fh, start_id):
            if not pyfuse3.readdir_reply(token, os.fsencode(name), self._entry(attr), next_id):
                break

    @_replying
    async def releasedir(self, fh: pyfuse3.FileHandleT) -> None:
        self.fs.releasedir(fh)

    @_replying
    async def open(
        self, inode: pyfuse3.InodeT, flags: pyfuse3.FlagT, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.FileInfo:
        return pyfuse3.FileInfo(fh=await self.fs.open(inode, flags), keep_cache=True)

    async def read(  # type: ignore[override]  # pyfuse3 takes any buffer: no copy of a leaf
        self, fh: pyfuse3.FileHandleT, off: int, size: int
    ) -> bytes | memoryview:
        """As :func:`_replying` would wrap it, but one coroutine, not two: a warm read
        (:meth:`Filesystem.read_now`) awaits nothing, and each layer costs it."""
        if log.isEnabledFor(logging.DEBUG):
            log.debug("fuse read(%r, %r, %r)", fh, off, size)
        try:
            data = self.fs.read_now(fh, off, size)
            if data is None:
                data = await self.fs.read(fh, off, size)
        except GlacierfsError as error:
            raise _answer("read", error) from None
        except Exception:
            log.exception("unexpected error in read%r", (fh, off, size))
            raise pyfuse3.FUSEError(errno.EIO) from None
        self._recycle(data)  # pyfuse3 replies before any task runs
        return data

    @_replying
    async def release(self, fh: pyfuse3.FileHandleT) -> None:
        self.fs.release(fh)

    @_replying
    async def getxattr(
        self, inode: pyfuse3.InodeT, name: pyfuse3.XAttrNameT, ctx: pyfuse3.RequestContext
    ) -> bytes:
        return await self.fs.getxattr(inode, os.fsdecode(name))

    @_replying
    async def listxattr(
        self, inode: pyfuse3.InodeT, ctx: pyfuse3.RequestContext
    ) -> list[pyfuse3.XAttrNameT]:
        return [os.fsencode(name) for name in await self.fs.xattrs(inode)]

    @_replying
    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        total, nodes = self.fs.statfs_totals()
        result = pyfuse3.StatvfsData()
        result.f_bsize = result.f_frsize = 1 << 20
        result.f_blocks = -(-total // (1 << 20))
        result.f_bfree = result.f_bavail = 0
        result.f_files = nodes
        result.f_ffree = result.f_favail = 0
        result.f_namemax = 255
        return result


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
