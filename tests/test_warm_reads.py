"""Warm reads served at once (glacierfs.read.warm, Filesystem.read_now), without the kernel.

What is proven here: a read of leaves cached for the job is served on the spot with the
output's bytes, through the job's file and through an archive of one job; a read it
cannot serve at once is left whole to the checked path (nothing fetched, nothing noted);
and it never serves what the checked path refuses: a job whose verdict is a mismatch, a
leaf handed to the job's readers before with other bytes, a job with damage on record
(read there, so that the damage is kept up to date). The fixtures are test_fs_api's: the
real catalog, disk cache, reader and filesystem over a fake service in memory.
"""

from __future__ import annotations

import errno
import os

import pytest
import trio

from glacierfs.cache import views
from glacierfs.cache.aio import AsyncDisk
from glacierfs.cache.disk import DiskCache
from glacierfs.cache.disk.granules import GRANULE
from glacierfs.cache.memory import MemoryCache
from glacierfs.catalog import Catalog
from glacierfs.errors import IntegrityError
from glacierfs.fuse_adapter import Operations
from glacierfs.jobs import Job
from glacierfs.read.ledger import MISMATCH
from glacierfs.read.prefetch import Pace, Prefetcher
from glacierfs.read.reader import Reader
from glacierfs.stats import Stats
from glacierfs.treehash import MIB
from glacierfs.view.filesystem import Access, Filesystem
from tests import test_fs_api as api
from tests.test_fs_api import (
    ARN,
    CTX,
    FAST_RETRY,
    GID,
    PHOTO,
    SETTINGS,
    UID,
    UMASK,
    Glacier,
    fuse_errno,
    inode_of,
    namer,
)

glacier, disk, fs, ops = api.glacier, api.disk, api.fs, api.ops  # its fixtures, by name

KIB = 1 << 10
OFFSETS = [0, 5 * KIB, MIB - 4 * KIB, MIB + 70 * KIB, 3 * MIB + 4 * KIB]


async def opened(ops: Operations, *path: str) -> int:
    return (await ops.open(await inode_of(ops, *path), os.O_RDONLY, CTX)).fh


def job_of(fs: Filesystem, job_id: str) -> Job:
    return next(job for job in fs.catalog.jobs.values() if job.job_id == job_id)


@pytest.fixture
async def warm(
    ops: Operations, fs: Filesystem, glacier: Glacier, disk: DiskCache, nursery: trio.Nursery
) -> Operations:
    """A mount over a disk cache that a first mount filled with J1's output (each of its
    leaves in the index), and whose first read of J1 has been made (views loaded)."""
    fh = await opened(ops, "jobs", "J1")
    assert bytes(await ops.read(fh, 0, len(PHOTO))) == PHOTO
    key, leaves = job_of(fs, "J1").cache_key, job_of(fs, "J1").leaves
    with trio.fail_after(30):  # leaves held in memory are put in the background
        while len(disk.reads.snapshot(key, 0, leaves, False).rows) < leaves:
            await trio.sleep(0.01)
    aio = AsyncDisk(disk)
    reader = await Reader.create(
        glacier.fetch_part, aio, MemoryCache(MIB), SETTINGS, Stats(), nursery=nursery
    )
    catalog = Catalog(glacier.list_jobs, aio, ARN, FAST_RETRY)
    assert await catalog.refresh()
    again = Operations(Filesystem(catalog, reader, Access(UID, GID, UMASK), namer=namer))
    first = await opened(again, "jobs", "J1")
    assert bytes(await again.read(first, 0, 4 * KIB)) == PHOTO[: 4 * KIB]
    await again.release(first)
    glacier.requests.clear()
    return again


async def test_a_read_not_cached_is_left_whole_to_the_checked_path(
    ops: Operations, fs: Filesystem, glacier: Glacier
) -> None:
    fh = await opened(ops, "jobs", "J1")
    assert fs.read_now(fh, 0, 4 * KIB) is None
    assert glacier.requests == []  # nothing fetched
    assert fs.reader.stats.bytes_served == 0
    assert bytes(await ops.read(fh, 0, 4 * KIB)) == PHOTO[: 4 * KIB]


async def test_a_cached_read_is_served_at_once_with_the_output_bytes(
    warm: Operations, glacier: Glacier
) -> None:
    fh = await opened(warm, "jobs", "J1")
    inline = warm.fs.reader.local_reads()["disk_reads_inline"]
    for offset in OFFSETS:
        found = warm.fs.read_now(fh, offset, 4 * KIB)
        assert found is not None and bytes(found) == PHOTO[offset : offset + 4 * KIB]
    assert warm.fs.reader.local_reads()["disk_reads_inline"] == inline + len(OFFSETS)
    across = warm.fs.read_now(fh, MIB - 100, 200)  # two leaves, one read of the file
    assert across is not None and bytes(across) == PHOTO[MIB - 100 : MIB + 100]
    for offset in OFFSETS:  # through the handler, as the kernel asks
        assert bytes(await warm.read(fh, offset, 4 * KIB)) == PHOTO[offset : offset + 4 * KIB]
    assert glacier.requests == []
    assert warm.fs.read_now(fh, len(PHOTO), 4 * KIB) is None  # past the end: read() says b""
    assert bytes(await warm.read(fh, len(PHOTO), 4 * KIB)) == b""
    assert warm.fs.read_now(fh + 1000, 0, 10) is None  # no such handle: read() says EBADF
    assert await fuse_errno(warm.read(fh + 1000, 0, 10)) == errno.EBADF


async def test_an_archive_of_one_job_reads_at_once_as_its_job(warm: Operations) -> None:
    fh = await opened(warm, "archives", "holiday", "beach.jpg")
    for offset in OFFSETS:
        found = warm.fs.read_now(fh, offset, 4 * KIB)
        assert found is not None and bytes(found) == PHOTO[offset : offset + 4 * KIB]
    end = warm.fs.read_now(fh, len(PHOTO) - 10, 4 * KIB)  # cut at the archive's end
    assert end is not None and bytes(end) == PHOTO[-10:]


@pytest.mark.expected_logs(r"job J1: a test says so", r"J1 is damaged")
async def test_a_job_whose_verdict_is_a_mismatch_is_refused_not_served_at_once(
    warm: Operations,
) -> None:
    fh = await opened(warm, "jobs", "J1")
    assert warm.fs.read_now(fh, 4 * KIB, 4 * KIB) is not None
    await warm.fs.reader.trust.ledger.record(job_of(warm.fs, "J1"), MISMATCH, "a test says so")
    assert warm.fs.read_now(fh, 4 * KIB, 4 * KIB) is None
    assert await fuse_errno(warm.read(fh, 4 * KIB, 4 * KIB)) == IntegrityError.errno


@pytest.mark.expected_logs(r"job J1: .*other bytes than before", r"J1 is damaged")
async def test_a_leaf_handed_out_before_with_other_bytes_is_never_served_at_once(
    warm: Operations,
) -> None:
    job = job_of(warm.fs, "J1")
    fh = await opened(warm, "jobs", "J1")
    warm.fs.reader.trust.see(job, job.first_leaf + 1, bytes(32 * [7]))  # other bytes, before
    assert warm.fs.read_now(fh, MIB, 4 * KIB) is None
    assert await fuse_errno(warm.read(fh, MIB, 4 * KIB)) == IntegrityError.errno


@pytest.mark.expected_logs(r"J1 is damaged")
async def test_a_job_with_damage_on_record_is_read_on_the_checked_path(
    warm: Operations,
) -> None:
    fh = await opened(warm, "jobs", "J1")
    job = job_of(warm.fs, "J1")
    await warm.fs.damage.mark(job, IntegrityError("a test says so"), 0, MIB - 1)
    assert warm.fs.read_now(fh, 0, 4 * KIB) is None
    assert bytes(await warm.read(fh, 0, MIB)) == PHOTO[:MIB]  # passes: the damage is forgotten
    assert job.job_id not in warm.fs.damage.known
    assert warm.fs.read_now(fh, 0, 4 * KIB) is not None


# --- the view's plan of a read (pure) ------------------------------------------------


def a_view(lengths: list[int], checked: int = 0) -> views.View:
    view = views.View(generation=0, handle=None)
    for index, length in enumerate(lengths):
        view.leaves[index] = views.Leaf(length, bytes([index]) * 32, b"", checked)
    return view


def test_a_read_of_checked_granules_is_the_bytes_asked_for() -> None:
    view = a_view([MIB, MIB], checked=(1 << 16) - 1)
    assert views.plan(view, 5000, 9096, [bytes(32)]) == (5000, 9096, None)
    assert views.plan(view, MIB - 10, MIB + 10, [bytes(32), bytes([1]) * 32]) == (
        MIB - 10,
        MIB + 10,
        None,
    )


def test_a_read_of_an_unchecked_granule_reads_the_granule_whole() -> None:
    view = a_view([MIB], checked=1)  # only the first granule checked
    assert views.plan(view, 100, 200, [bytes(32)]) == (100, 200, None)
    assert views.plan(view, GRANULE + 100, GRANULE + 200, [bytes(32)]) == (
        GRANULE,
        2 * GRANULE,
        [GRANULE],
    )
    across = views.plan(view, GRANULE - 10, GRANULE + 10, [bytes(32)])
    assert across == (0, 2 * GRANULE, [GRANULE])  # the checked one is read, not checked


def test_a_read_the_view_cannot_serve_has_no_plan() -> None:
    view = a_view([MIB, 1000], checked=-1)
    assert views.plan(view, 0, 10, [bytes([9]) * 32]) is None  # another digest
    assert views.plan(view, MIB + 900, MIB + 1100, [bytes([1]) * 32]) is None  # past its end
    assert views.plan(view, 2 * MIB, 2 * MIB + 10, [bytes([2]) * 32]) is None  # not there
    assert views.plan(view, MIB - 10, MIB + 10, [bytes(32), bytes([9]) * 32]) is None


# --- random reads ask nothing of the link ---------------------------------------------


def test_a_random_read_never_computes_the_pace_a_streak_does() -> None:
    asked: list[int] = []

    def pace() -> Pace:
        asked.append(1)
        return Pace(request=4 * MIB, request_seconds=0.1, ceiling=64 * MIB)

    prefetcher = Prefetcher()
    for offset in (40 * MIB, 3 * MIB, 77 * MIB):
        assert prefetcher.advise(offset, 4 * KIB, 100, pace).ahead == 0
    assert asked == []
    assert prefetcher.advise(77 * MIB + 4 * KIB, 4 * KIB, 100, pace).ahead > 0
    assert asked == [1]
