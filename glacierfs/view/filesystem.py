"""What the mount does, independent of FUSE: lookups, attributes, listings, reads.

:mod:`glacierfs.fuse_adapter` is a thin adapter from pyfuse3 to this class, so this logic is
tested without the kernel. Every method returns domain values or raises a
:class:`~glacierfs.errors.GlacierfsError` carrying its errno.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import stat
import time
from dataclasses import dataclass
from itertools import count

import trio

from glacierfs import __version__
from glacierfs.cacheroot import IDENTITY_XATTR, answer
from glacierfs.catalog import Catalog
from glacierfs.custody import Custody
from glacierfs.errors import FsError
from glacierfs.jobs import Job
from glacierfs.read.prefetch import Prefetcher
from glacierfs.read.reader import Reader
from glacierfs.view.archive_files import ArchiveFiles
from glacierfs.view.archives import Archive, Known, unknown
from glacierfs.view.damage import DamagedJobs
from glacierfs.view.tree import ROOT_INODE, Namer, Node, Settled, Tree, archive_id_name

log = logging.getLogger(__name__)

XATTR_PREFIX = "user.glacier."
STATS_XATTR = "user.glacierfs.stats"
DAMAGED_XATTR = "user.glacierfs.damaged"
PROBLEM_XATTR = "user.glacierfs.problem"


@dataclass(frozen=True)
class Attr:
    inode: int
    mode: int
    nlink: int
    size: int
    uid: int
    gid: int
    mtime: float


@dataclass(frozen=True)
class Access:
    uid: int
    gid: int
    umask: int


class Filesystem:
    def __init__(
        self,
        catalog: Catalog,
        reader: Reader,
        access: Access,
        namer: Namer = archive_id_name,
        settled: Settled | None = None,
        file_inodes: dict[str, int] | None = None,
        paths: dict[str, list[str]] | None = None,
        damage: DamagedJobs | None = None,
        about: dict[str, object] | None = None,
        identity: bytes = b"",
        custody: Custody | None = None,
        known: Known = unknown,
    ) -> None:
        self.about = dict(about or {})  # where the mount's parts are, for `status`
        self.identity = identity  # the cache's secret: the root answers challenges with it
        self.catalog = catalog
        self.reader = reader
        self.access = access
        self.damage = damage if damage is not None else DamagedJobs()
        self.archives = ArchiveFiles(reader, self.damage, custody)
        self.namer = namer
        self.settled: Settled = settled or (lambda job: False)
        self.tree = Tree(file_inodes, paths)
        self.known = known  # what the inventory says each archive is
        self.tree.build(catalog.jobs.values(), namer, self.settled, known)
        self.started = time.time()
        self._handles: dict[int, tuple[Job, Prefetcher]] = {}
        self._archive_handles: dict[int, tuple[Archive, dict[str, Prefetcher]]] = {}
        self._dir_handles: dict[int, list[tuple[str, int]]] = {}
        self._next_handle = count(1)

    async def rebuild(self) -> None:
        """Show what the catalog and the namer say now.

        The tree is built in a worker thread: 50,000 jobs are seconds of Python, which
        on the trio thread would stall every read meanwhile (the thread gives the
        interpreter back every few milliseconds). Lookups see the tree before until the
        new one is whole. One rebuild at a time: the caller serialises them.
        """
        jobs = list(self.catalog.jobs.values())
        await trio.to_thread.run_sync(
            self.tree.build, jobs, self.namer, self.settled, self.known, abandon_on_cancel=True
        )

    def _node(self, inode: int) -> Node:
        node = self.tree.nodes.get(inode)
        if node is None:
            raise FsError(errno.ENOENT)
        return node

    def attr(self, node: Node) -> Attr:
        if node.is_dir:
            mode = stat.S_IFDIR | (0o555 & ~self.access.umask)
            size = 0
        else:
            mode = stat.S_IFREG | (0o444 & ~self.access.umask)
            size = node.archive.size if node.archive else node.job.size if node.job else 0
        return Attr(
            node.inode, mode, node.nlink, size, self.access.uid, self.access.gid, node.mtime
        )

    def _dir(self, inode: int) -> Node:
        node = self._node(inode)
        if not node.is_dir:
            raise FsError(errno.ENOTDIR)
        return node

    def lookup(self, parent: int, name: str) -> Attr:
        """The entry ``name`` of directory ``parent``, ``.`` and ``..`` included.

        The kernel resolves ``.`` and ``..`` itself while walking paths; it asks for them
        when it reconnects a handle to its directory (``supports_dot_lookup``, NFS export).
        """
        directory = self._dir(parent)
        if name == ".":
            return self.attr(directory)
        if name == "..":
            return self.attr(self._node(directory.parent))
        node = self.tree.lookup(parent, name)
        if node is None:
            raise FsError(errno.ENOENT)
        return self.attr(node)

    def getattr(self, inode: int) -> Attr:
        return self.attr(self._node(inode))

    def opendir(self, inode: int) -> int:
        node = self._dir(inode)
        handle = next(self._next_handle)
        self._dir_handles[handle] = sorted(node.children.items())
        return handle

    def readdir(self, handle: int, start: int) -> list[tuple[str, Attr, int]]:
        """Entries from index ``start`` on, each with the index of the next one."""
        entries = self._dir_handles.get(handle)
        if entries is None:
            raise FsError(errno.EBADF)
        result = []
        for index in range(start, len(entries)):
            name, inode = entries[index]
            node = self.tree.nodes.get(inode)
            if node is not None:
                result.append((name, self.attr(node), index + 1))
        return result

    def releasedir(self, handle: int) -> None:
        self._dir_handles.pop(handle, None)

    async def open(self, inode: int, flags: int) -> int:
        """A handle for reading the file; the one place a write is refused.

        The mount is ``ro``, so the kernel refuses writes before they reach the daemon;
        this answers the same should an open for writing reach it anyway. Every other
        write call is left to pyfuse3's default, ENOSYS, which the kernel never sends.
        A file whose verdict is ``mismatch`` is not opened (IntegrityError): an empty
        or short one would otherwise read, as no read of it reaches the daemon.
        """
        node = self._node(inode)
        if node.is_dir:
            raise FsError(errno.EISDIR)
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND):
            raise FsError(errno.EROFS)
        if node.archive is not None:
            await self.archives.check(node.archive)
            handle = next(self._next_handle)
            self._archive_handles[handle] = (node.archive, {})
            return handle
        assert node.job is not None
        await self.reader.verdicts.check(node.job)
        handle = next(self._next_handle)
        self._handles[handle] = (node.job, self.reader.settings.prefetcher())
        return handle

    def read_now(self, handle: int, offset: int, size: int) -> bytes | memoryview | None:
        """:meth:`read`'s bytes when the disk cache serves them at once (no ``await``:
        :mod:`glacierfs.read.warm`), else None: then call :meth:`read`."""
        opened = self._handles.get(handle)
        if opened is not None:
            return self.archives.read_job_now(opened[0], offset, size, opened[1])
        archive = self._archive_handles.get(handle)
        if archive is not None:
            return self.archives.read_now(archive[0], offset, size, archive[1])
        return None

    async def read(self, handle: int, offset: int, size: int) -> bytes | memoryview:
        archive = self._archive_handles.get(handle)
        if archive is not None:
            return await self.archives.read(archive[0], offset, size, archive[1])
        opened = self._handles.get(handle)
        if opened is None:
            raise FsError(errno.EBADF)
        return await self.archives.read_job(opened[0], offset, size, opened[1])

    def release(self, handle: int) -> None:
        self._handles.pop(handle, None)
        self._archive_handles.pop(handle, None)

    # --- extended attributes ---------------------------------------------------------

    async def xattrs(self, inode: int) -> dict[str, bytes]:
        node = self._node(inode)
        if inode == ROOT_INODE:
            return {STATS_XATTR: json.dumps(await self.stats()).encode()}
        if node.archive is not None:
            return await self.archives.xattrs(node.archive)
        if node.job is None:
            return {}
        job = node.job
        values = {
            "job_id": job.job_id,
            "archive_id": job.archive_id,
            "tree_hash": job.tree_hash,
            "expires": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(job.expires)),
        }
        found = {XATTR_PREFIX + k: v.encode() for k, v in values.items() if v}
        found["user.glacierfs.verified"] = (await self.reader.verification(job)).encode()
        found["user.glacierfs.cached"] = str(await self.reader.cached_bytes(job)).encode()
        found.update(await self.archives.custody_xattr(job))
        if job.job_id in self.damage.known:
            found[DAMAGED_XATTR] = self.damage.known[job.job_id].describe().encode()
        problems = self.reader.problems(job)
        if problems:  # what the service said of the job against what else it said
            found[PROBLEM_XATTR] = "; ".join(problems).encode()
        return found

    async def getxattr(self, inode: int, name: str) -> bytes:
        if inode == ROOT_INODE and name.startswith(IDENTITY_XATTR) and self.identity:
            return answer(self.identity, name[len(IDENTITY_XATTR) :])  # not listed
        values = await self.xattrs(inode)
        if name not in values:
            raise FsError(errno.ENODATA)
        return values[name]

    async def stats(self) -> dict[str, object]:
        usage = await self.reader.cache_usage()
        return {
            "version": __version__,
            "pid": os.getpid(),
            "started": self.started,
            "jobs": len(self.catalog.jobs),
            "damaged": sorted(self.damage.known),
            "cache_used": usage.used,
            "cache_capacity": usage.capacity,
            "cache_custody": usage.classes.custody,
            "cache_replaceable": usage.classes.replaceable,
            "cache_delivered": usage.classes.delivered,
            "cache_free": max(usage.capacity - usage.used, 0),
            "disk_bytes_read": usage.bytes_read,
            **self.reader.local_reads(),
            **self.reader.stats.as_dict(),
            **self.about,
        }

    def statfs_totals(self) -> tuple[int, int]:
        """(total bytes of all outputs, number of nodes)."""
        total = sum(job.size for job in self.catalog.jobs.values())
        return total, len(self.tree.nodes)
