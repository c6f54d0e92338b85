"""The filesystem without the kernel: `Filesystem` and the pyfuse3 `Operations` driven directly.

No mount: the handlers are awaited as pyfuse3 would await them, on trio (pytest-trio),
in front of the real catalog, disk cache, memory cache and reader. The service is a
fake in memory that lists job records as ListJobs returns them and serves outputs as
Get Job Output does (a tree hash exactly for tree-hash aligned ranges). What the
kernel itself does (path walks, the read-only refusals of an ``ro`` mount, the page
cache) is tested through a real mount in test_mount.py.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import random
import stat
import threading
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any

import pyfuse3
import pytest
import trio

from glacierfs.cache.aio import AsyncDisk
from glacierfs.cache.disk import DiskCache
from glacierfs.cache.memory import MemoryCache
from glacierfs.catalog import Catalog
from glacierfs.config import (
    DEFAULT_MEMORY_CACHE,
)
from glacierfs.fuse_adapter import DIR_TIMEOUT, FILE_TIMEOUT, Operations
from glacierfs.jobs import Job
from glacierfs.read.reader import Reader, ReaderSettings
from glacierfs.retry import RetryPolicy
from glacierfs.stats import Stats
from glacierfs.treehash import MIB, is_tree_hash_aligned, tree_hash
from glacierfs.view.filesystem import Access, Filesystem
from glacierfs.view.tree import ROOT_INODE, archive_id_name
from glacierfs.wire import OutputPart
from tests.support.records import archive_record

ARN = "arn:aws:glacier:us-east-1:123456789012:vaults/photos"
UID, GID, UMASK = 1234, 5678, 0o022
FAST_RETRY = RetryPolicy(attempts=2, timeout=30, base_delay=0.001, max_delay=0.01)
SETTINGS = ReaderSettings(retry=FAST_RETRY)  # the daemon's, but retries that give up at once
CTX = pyfuse3.RequestContext()
PHOTO = bytes(random.Random(1).randbytes(3 * MIB + 12345))  # four leaves, the last short
NOTE = b"a small archive, one short leaf"
BEACH_MTIME = 1.6e9


class Glacier:
    """Job records and outputs, as ListJobs and Get Job Output give them."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.outputs: dict[str, bytes] = {}
        self.corrupt = False
        self.requests: list[tuple[str, int, int]] = []
        self._lock = threading.Lock()

    def add_archive(self, job_id: str, archive_id: str, data: bytes) -> None:
        self.outputs[job_id] = data
        self.records.append(archive_record(job_id, archive_id, data, ARN))

    def list_jobs(self) -> list[dict[str, Any]]:
        return [dict(record) for record in self.records]

    def fetch_part(self, job: Job, start: int, end: int) -> OutputPart:
        """Bytes ``start..end`` of the output; a tree hash when the range is aligned."""
        with self._lock:
            self.requests.append((job.job_id, start, end))
        data = self.outputs[job.job_id]
        body = bytearray(data[start : end + 1])
        checksum = tree_hash(body) if is_tree_hash_aligned(start, end, len(data)) else None
        if self.corrupt:
            body[len(body) // 2] ^= 0xFF
        return OutputPart(bytes(body), checksum, None)


def namer(job: Job) -> tuple[tuple[str, ...], float | None]:
    """The archives view: one archive in a subdirectory, the other by its id."""
    if job.archive_id == "A1":
        return ("holiday", "beach.jpg"), BEACH_MTIME
    return archive_id_name(job)


@pytest.fixture
def glacier() -> Glacier:
    service = Glacier()
    service.add_archive("J1", "A1", PHOTO)
    service.add_archive("J2", "A2", NOTE)
    return service


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[DiskCache]:
    with DiskCache(tmp_path / "cache", 64 * MIB) as cache:
        yield cache


@pytest.fixture
async def fs(glacier: Glacier, disk: DiskCache, nursery: trio.Nursery) -> Filesystem:
    aio = AsyncDisk(disk)
    reader = await Reader.create(
        glacier.fetch_part,
        aio,
        MemoryCache(DEFAULT_MEMORY_CACHE),
        SETTINGS,
        Stats(),
        nursery=nursery,
    )
    catalog = Catalog(glacier.list_jobs, aio, ARN, FAST_RETRY)
    assert await catalog.refresh()
    return Filesystem(catalog, reader, Access(UID, GID, UMASK), namer=namer)


@pytest.fixture
def ops(fs: Filesystem) -> Operations:
    return Operations(fs)


async def fuse_errno(call: Awaitable[object]) -> int:
    """The errno a handler answers with; fails the test when it answers without one."""
    with pytest.raises(pyfuse3.FUSEError) as raised:
        await call
    return raised.value.errno


async def inode_of(ops: Operations, *names: str) -> int:
    inode = ROOT_INODE
    for name in names:
        inode = (await ops.lookup(inode, name.encode(), CTX)).st_ino
    return inode


# --- lookup and getattr --------------------------------------------------------------


async def test_the_root_is_a_directory_whose_dot_and_dotdot_are_itself(ops: Operations) -> None:
    root = await ops.getattr(ROOT_INODE, CTX)
    assert stat.S_ISDIR(root.st_mode) and root.st_ino == ROOT_INODE
    assert (await ops.lookup(ROOT_INODE, b".", CTX)).st_ino == ROOT_INODE
    assert (await ops.lookup(ROOT_INODE, b"..", CTX)).st_ino == ROOT_INODE


async def test_dotdot_of_a_directory_is_the_directory_holding_it(ops: Operations) -> None:
    archives = await inode_of(ops, "archives")
    holiday = await inode_of(ops, "archives", "holiday")
    jobs = await inode_of(ops, "jobs")
    assert len({ROOT_INODE, archives, holiday, jobs}) == 4
    assert (await ops.lookup(holiday, b".", CTX)).st_ino == holiday
    assert (await ops.lookup(holiday, b"..", CTX)).st_ino == archives  # beach.jpg's parent
    assert (await ops.lookup(archives, b"..", CTX)).st_ino == ROOT_INODE
    assert (await ops.lookup(jobs, b"..", CTX)).st_ino == ROOT_INODE


async def test_dot_and_dotdot_of_a_file_are_not_a_directory(ops: Operations) -> None:
    beach = await inode_of(ops, "archives", "holiday", "beach.jpg")
    for name in (b".", b"..", b"anything"):
        assert await fuse_errno(ops.lookup(beach, name, CTX)) == errno.ENOTDIR


async def test_a_job_and_its_archive_are_two_files_with_one_link_each(ops: Operations) -> None:
    """jobs/<id> is the job; archives/PATH is the archive, assembled from its jobs."""
    by_id = await ops.lookup(await inode_of(ops, "jobs"), b"J1", CTX)
    by_name = await ops.lookup(await inode_of(ops, "archives", "holiday"), b"beach.jpg", CTX)
    assert by_id.st_ino != by_name.st_ino
    assert by_id.st_nlink == by_name.st_nlink == 1
    assert by_id.st_size == by_name.st_size
    assert await inode_of(ops, "archives", "A2") != await inode_of(ops, "jobs", "J2")
    archive = await inode_of(ops, "archives", "holiday", "beach.jpg")
    holiday = await inode_of(ops, "archives", "holiday")
    jobs = await inode_of(ops, "jobs")
    assert ops.fs.tree.nodes[archive].parent == holiday
    assert ops.fs.tree.nodes[by_id.st_ino].parent == jobs


async def test_getattr_gives_a_read_only_file_of_the_output_size(ops: Operations) -> None:
    beach = await ops.getattr(await inode_of(ops, "archives", "holiday", "beach.jpg"), CTX)
    assert stat.S_ISREG(beach.st_mode)
    assert stat.S_IMODE(beach.st_mode) == 0o444 & ~UMASK
    assert (beach.st_size, beach.st_uid, beach.st_gid) == (len(PHOTO), UID, GID)
    assert beach.st_blocks == -(-len(PHOTO) // 512)
    assert beach.st_mtime_ns == int(BEACH_MTIME * 1e9)
    assert beach.attr_timeout == beach.entry_timeout == FILE_TIMEOUT
    job = await ops.getattr(await inode_of(ops, "jobs", "J1"), CTX)
    assert (job.st_size, stat.S_IMODE(job.st_mode)) == (len(PHOTO), 0o444 & ~UMASK)
    holiday = await ops.getattr(await inode_of(ops, "archives", "holiday"), CTX)
    assert stat.S_IMODE(holiday.st_mode) == 0o555 & ~UMASK
    assert holiday.attr_timeout == holiday.entry_timeout == DIR_TIMEOUT


async def test_statfs_counts_the_outputs_and_the_nodes(ops: Operations, fs: Filesystem) -> None:
    result = await ops.statfs(CTX)
    assert result.f_blocks == -(-(len(PHOTO) + len(NOTE)) // MIB)
    assert result.f_files == len(fs.tree.nodes)
    assert result.f_bavail == result.f_ffree == 0


# --- listing directories -----------------------------------------------------------


async def test_readdir_continues_from_any_next_id_it_gave(fs: Filesystem) -> None:
    handle = fs.opendir(ROOT_INODE)
    whole = fs.readdir(handle, 0)
    assert [name for name, _, _ in whole] == ["archives", "inventories", "jobs"]
    assert [next_id for _, _, next_id in whole] == [1, 2, 3]
    assert [attr.inode for _, attr, _ in whole] == [
        fs.lookup(ROOT_INODE, name).inode for name, _, _ in whole
    ]
    for name, _, next_id in whole:  # a kernel buffer that holds one entry at a time
        assert fs.readdir(handle, next_id) == whole[next_id:], f"after {name}"
    assert fs.readdir(handle, len(whole)) == []
    fs.releasedir(handle)


async def test_readdir_lists_the_directory_as_it_was_opened(
    fs: Filesystem, glacier: Glacier
) -> None:
    jobs = fs.lookup(ROOT_INODE, "jobs").inode
    handle = fs.opendir(jobs)
    first = fs.readdir(handle, 0)[:1]
    glacier.add_archive("J0", "A0", b"new")  # sorts first: must not shift the next page
    assert await fs.catalog.refresh()
    await fs.rebuild()
    rest = fs.readdir(handle, first[0][2])
    assert [name for name, _, _ in first + rest] == ["J1", "J2"]
    fs.releasedir(handle)
    assert [name for name, _, _ in fs.readdir(fs.opendir(jobs), 0)] == ["J0", "J1", "J2"]


async def test_operations_readdir_stops_when_the_kernel_buffer_is_full(
    ops: Operations, fs: Filesystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pyfuse3.readdir_reply is stubbed: a real one needs a kernel request to fill."""
    token = pyfuse3.ReaddirToken()
    room = 1  # entries the stub's buffer takes per call
    offered: list[bytes] = []
    replied: list[tuple[bytes, int, int]] = []

    def readdir_reply(
        got: pyfuse3.ReaddirToken, name: bytes, attr: pyfuse3.EntryAttributes, next_id: int
    ) -> bool:
        assert got is token
        offered.append(name)
        if len(offered) > room:
            return False
        replied.append((name, attr.st_ino, next_id))
        return True

    monkeypatch.setattr(pyfuse3, "readdir_reply", readdir_reply)
    fh = await ops.opendir(ROOT_INODE, CTX)
    start = 0
    for _ in range(10):  # as the kernel does: again from the last next_id, until nothing comes
        offered.clear()
        await ops.readdir(fh, start, token)
        assert len(offered) <= room + 1, "went on after the buffer was full"
        if not offered:
            break
        start = replied[-1][2]
    await ops.releasedir(fh)
    assert [name for name, _, _ in replied] == [b"archives", b"inventories", b"jobs"]
    assert [inode for _, inode, _ in replied] == [
        fs.lookup(ROOT_INODE, name.decode()).inode for name, _, _ in replied
    ]


async def test_opendir_of_a_file_is_not_a_directory(ops: Operations) -> None:
    beach = await inode_of(ops, "jobs", "J1")
    assert await fuse_errno(ops.opendir(beach, CTX)) == errno.ENOTDIR


async def test_readdir_of_an_unknown_handle_is_a_bad_handle(ops: Operations) -> None:
    fh = await ops.opendir(ROOT_INODE, CTX)
    await ops.releasedir(fh)
    token = pyfuse3.ReaddirToken()
    assert await fuse_errno(ops.readdir(fh, 0, token)) == errno.EBADF
    assert await fuse_errno(ops.readdir(fh + 1000, 0, token)) == errno.EBADF


# --- open and read ---------------------------------------------------------------------


async def test_open_for_reading_keeps_the_page_cache(ops: Operations) -> None:
    beach = await inode_of(ops, "jobs", "J1")
    for flags in (os.O_RDONLY, os.O_RDONLY | os.O_NOATIME, os.O_RDONLY | os.O_CLOEXEC):
        info = await ops.open(beach, flags, CTX)
        assert info.keep_cache
        await ops.release(info.fh)


@pytest.mark.parametrize(
    "flags",
    [os.O_WRONLY, os.O_RDWR, os.O_RDONLY | os.O_TRUNC, os.O_WRONLY | os.O_APPEND],
    ids=["wronly", "rdwr", "trunc", "append"],
)
async def test_open_for_writing_is_refused_read_only(ops: Operations, flags: int) -> None:
    beach = await inode_of(ops, "jobs", "J1")
    assert await fuse_errno(ops.open(beach, flags, CTX)) == errno.EROFS


async def test_open_of_a_directory_is_a_directory(ops: Operations) -> None:
    assert await fuse_errno(ops.open(ROOT_INODE, os.O_RDONLY, CTX)) == errno.EISDIR


async def test_read_returns_the_output_bytes_across_leaves_and_at_the_end(
    ops: Operations,
) -> None:
    fh = (await ops.open(await inode_of(ops, "jobs", "J1"), os.O_RDONLY, CTX)).fh
    size = len(PHOTO)
    cases = [
        (0, 4096),
        (MIB - 100, 200),  # across the first leaf boundary
        (MIB // 2, 2 * MIB),  # three leaves
        (0, size),  # the whole output at once
        (size - 10, 4096),  # short at the end
        (3 * MIB, 12345),  # exactly the short last leaf
    ]
    for offset, length in cases:
        assert bytes(await ops.read(fh, offset, length)) == PHOTO[offset : offset + length]
    assert bytes(await ops.read(fh, size, 4096)) == b""
    assert bytes(await ops.read(fh, size + MIB, 4096)) == b""
    await ops.release(fh)


async def test_reads_at_random_places_equal_the_source(ops: Operations) -> None:
    rng = random.Random(7)
    fh = (await ops.open(await inode_of(ops, "jobs", "J1"), os.O_RDONLY, CTX)).fh
    for _ in range(200):
        offset = rng.randrange(len(PHOTO) + 10)
        length = rng.choice([1, 4096, 131072, rng.randrange(1, 2 * MIB)])
        assert bytes(await ops.read(fh, offset, length)) == PHOTO[offset : offset + length]
    await ops.release(fh)


async def test_a_small_output_reads_whole(ops: Operations) -> None:
    fh = (await ops.open(await inode_of(ops, "archives", "A2"), os.O_RDONLY, CTX)).fh
    assert bytes(await ops.read(fh, 0, 131072)) == NOTE
    await ops.release(fh)


async def test_read_of_an_unknown_or_released_handle_is_a_bad_handle(ops: Operations) -> None:
    fh = (await ops.open(await inode_of(ops, "jobs", "J2"), os.O_RDONLY, CTX)).fh
    await ops.release(fh)
    assert await fuse_errno(ops.read(fh, 0, 10)) == errno.EBADF
    assert await fuse_errno(ops.read(fh + 1000, 0, 10)) == errno.EBADF


@pytest.mark.expected_logs(r"is damaged", r"checksum mismatch")
async def test_bytes_that_fail_their_checksum_are_eio_and_never_served(
    ops: Operations, glacier: Glacier, fs: Filesystem, caplog: pytest.LogCaptureFixture
) -> None:
    fh = (await ops.open(await inode_of(ops, "jobs", "J1"), os.O_RDONLY, CTX)).fh
    glacier.corrupt = True
    with caplog.at_level(logging.WARNING):
        assert await fuse_errno(ops.read(fh, 0, 4096)) == errno.EIO
    assert fs.reader.stats.checksum_failures >= FAST_RETRY.attempts
    assert "checksum mismatch" in caplog.text
    glacier.corrupt = False
    assert bytes(await ops.read(fh, 0, 4096)) == PHOTO[:4096]
    await ops.release(fh)


# --- extended attributes ---------------------------------------------------------------


async def test_xattrs_describe_the_job(ops: Operations) -> None:
    beach = await inode_of(ops, "jobs", "J1")
    names = set(await ops.listxattr(beach, CTX))
    assert {
        b"user.glacier.job_id",
        b"user.glacier.archive_id",
        b"user.glacier.tree_hash",
        b"user.glacier.expires",
    } <= names
    for name in names:  # every name listed can be read
        assert isinstance(await ops.getxattr(beach, name, CTX), bytes)
    assert await ops.getxattr(beach, b"user.glacier.job_id", CTX) == b"J1"
    assert await ops.getxattr(beach, b"user.glacier.archive_id", CTX) == b"A1"
    assert await ops.getxattr(beach, b"user.glacier.tree_hash", CTX) == tree_hash(PHOTO).encode()
    assert await ops.getxattr(beach, b"user.glacier.expires", CTX) == b"2026-11-02T14:00:00Z"


async def test_a_missing_xattr_is_no_data(ops: Operations) -> None:
    beach = await inode_of(ops, "jobs", "J1")
    assert await fuse_errno(ops.getxattr(beach, b"user.nothing", CTX)) == errno.ENODATA
    holiday = await inode_of(ops, "archives", "holiday")
    assert await ops.listxattr(holiday, CTX) == []
    assert await fuse_errno(ops.getxattr(holiday, b"user.glacier.job_id", CTX)) == errno.ENODATA


async def test_a_whole_read_shows_as_verified_and_cached(ops: Operations) -> None:
    beach = await inode_of(ops, "jobs", "J1")
    fh = (await ops.open(beach, os.O_RDONLY, CTX)).fh
    assert bytes(await ops.read(fh, 0, len(PHOTO))) == PHOTO
    await ops.release(fh)
    assert await ops.getxattr(beach, b"user.glacierfs.verified", CTX) == b"tree-hash"
    assert await ops.getxattr(beach, b"user.glacierfs.cached", CTX) == str(len(PHOTO)).encode()


async def test_the_root_xattr_gives_the_mount_figures(ops: Operations) -> None:
    stats = json.loads(await ops.getxattr(ROOT_INODE, b"user.glacierfs.stats", CTX))
    assert stats["jobs"] == 2 and stats["pid"] == os.getpid()


# --- errors to errno -------------------------------------------------------------------


async def test_unknown_inodes_and_names_are_not_found(ops: Operations) -> None:
    unknown = 999_999
    assert await fuse_errno(ops.getattr(unknown, CTX)) == errno.ENOENT
    assert await fuse_errno(ops.lookup(unknown, b"x", CTX)) == errno.ENOENT
    assert await fuse_errno(ops.lookup(unknown, b"..", CTX)) == errno.ENOENT
    assert await fuse_errno(ops.lookup(ROOT_INODE, b"nope", CTX)) == errno.ENOENT
    jobs = await inode_of(ops, "jobs")
    assert await fuse_errno(ops.lookup(jobs, b"J9", CTX)) == errno.ENOENT
    assert await fuse_errno(ops.opendir(unknown, CTX)) == errno.ENOENT
    assert await fuse_errno(ops.open(unknown, os.O_RDONLY, CTX)) == errno.ENOENT
    assert await fuse_errno(ops.getxattr(unknown, b"user.glacier.job_id", CTX)) == errno.ENOENT
    assert await fuse_errno(ops.listxattr(unknown, CTX)) == errno.ENOENT


async def test_write_calls_reach_pyfuse3s_default_not_a_handler(ops: Operations) -> None:
    """The kernel refuses writes on the ``ro`` mount; were one sent, it is not implemented."""
    beach = await inode_of(ops, "jobs", "J1")
    jobs = await inode_of(ops, "jobs")
    assert await fuse_errno(ops.write(1, 0, b"x")) == errno.ENOSYS
    assert await fuse_errno(ops.mkdir(ROOT_INODE, b"d", 0o755, CTX)) == errno.ENOSYS
    assert await fuse_errno(ops.unlink(jobs, b"J1", CTX)) == errno.ENOSYS
    assert await fuse_errno(ops.setxattr(beach, b"user.x", b"1", CTX)) == errno.ENOSYS
    assert await fuse_errno(ops.create(jobs, b"f", 0o644, os.O_WRONLY, CTX)) == errno.ENOSYS
    assert await inode_of(ops, "jobs", "J1") == beach


async def test_a_rebuild_builds_the_tree_off_the_trio_thread_and_shows_it_whole(
    fs: Filesystem, glacier: Glacier
) -> None:
    trio_thread, threads = threading.current_thread(), set()

    def watching(job: Job) -> tuple[tuple[str, ...], float | None]:
        threads.add(threading.current_thread())
        return namer(job)

    fs.namer = watching
    glacier.add_archive("J3", "A3", b"new")
    assert await fs.catalog.refresh()
    await fs.rebuild()
    assert threads and trio_thread not in threads  # reads are answered meanwhile
    archives = fs.lookup(ROOT_INODE, "archives").inode
    assert fs.lookup(archives, "A3").size == 3
