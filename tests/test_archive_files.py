"""Reading an archive's file through the jobs that cover it, with the real reader and cache.

A fake Get Job Output serves each job's part of one archive and records which job
each request named, so that the choice of job per leaf, and the promise that no
byte is fetched twice, are checked without the kernel or HTTP.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import trio

from glacierfs.cache.aio import AsyncDisk
from glacierfs.cache.disk import DiskCache
from glacierfs.cache.memory import MemoryCache
from glacierfs.errors import IntegrityError
from glacierfs.jobs import Job
from glacierfs.read.prefetch import Prefetcher
from glacierfs.read.reader import Reader, ReaderSettings
from glacierfs.retry import RetryPolicy
from glacierfs.stats import Stats
from glacierfs.treehash import MIB, is_tree_hash_aligned, tree_hash
from glacierfs.view.archive_files import ArchiveFiles
from glacierfs.view.archives import Archive, assemble
from glacierfs.view.damage import DamagedJobs
from glacierfs.wire import OutputPart

T = TypeVar("T")
DATA = random.Random(5).randbytes(5 * MIB + 1000)
FAST_RETRY = RetryPolicy(attempts=2, timeout=30, base_delay=0.001, max_delay=0.01)


def job(job_id: str, start: int = 0, end: int = len(DATA) - 1, completed: float = 1.0) -> Job:
    output = DATA[start : end + 1]
    return Job(
        job_id,
        "archive",
        len(output),
        completed,
        0.0,
        "arn",
        "A",
        len(DATA),
        tree_hash(DATA),
        start,
        tree_hash(output),
    )


class Service:
    """Each job's output, and the requests made, by job."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, int, int]] = []
        self.flip: set[str] = set()

    def __call__(self, job: Job, start: int, end: int) -> OutputPart:
        self.requests.append((job.job_id, start, end))
        body = bytearray(DATA[job.range_start + start : job.range_start + end + 1])
        aligned = is_tree_hash_aligned(start, end, job.size)
        checksum = tree_hash(body) if aligned else None
        if job.job_id in self.flip:
            body[0] ^= 0xFF
        return OutputPart(bytes(body), checksum, None)

    def fetched(self, job_id: str) -> int:
        return sum(end - start + 1 for who, start, end in self.requests if who == job_id)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[DiskCache]:
    cache = DiskCache(tmp_path / "cache", 1 << 30)
    yield cache
    cache.close()


def running(service: Service, disk: DiskCache, body: Callable[[ArchiveFiles], Awaitable[T]]) -> T:
    """Run ``body`` with archive files over a reader of ``service``, as a mount does."""
    settings = ReaderSettings(max_request=2 * MIB, read_ahead=4 * MIB, retry=FAST_RETRY)

    async def main() -> T:
        aio = AsyncDisk(disk)
        async with trio.open_nursery() as nursery:
            reader = await Reader.create(
                service, aio, MemoryCache(16 * MIB), settings, Stats(), nursery=nursery
            )
            damage = DamagedJobs(aio)
            await damage.load()
            result = await body(ArchiveFiles(reader, damage))
            nursery.cancel_scope.cancel()
        return result

    return trio.run(main)


def read_whole(archive: Archive) -> Callable[[ArchiveFiles], Awaitable[bytes]]:
    async def go(files: ArchiveFiles) -> bytes:
        prefetchers: dict[str, Prefetcher] = {}
        parts = []
        for offset in range(0, archive.size, 128 * 1024):
            parts.append(bytes(await files.read(archive, offset, 128 * 1024, prefetchers)))
        return b"".join(parts)

    return go


def test_a_full_job_serves_every_leaf_and_a_range_beside_it_is_never_asked(
    disk: DiskCache,
) -> None:
    service = Service()
    archive = assemble([job("R", 0, 2 * MIB - 1, completed=0.5), job("F")]).archives[0]
    assert running(service, disk, read_whole(archive)) == DATA
    assert service.fetched("F") == len(DATA) and service.fetched("R") == 0


def test_overlapping_ranges_each_serve_their_own_leaves_and_none_twice(disk: DiskCache) -> None:
    service = Service()
    early, late = job("R1", 0, 3 * MIB - 1), job("R2", 2 * MIB, completed=2.0)
    archive = assemble([late, early]).archives[0]
    assert running(service, disk, read_whole(archive)) == DATA
    assert service.fetched("R1") == 3 * MIB  # the leaf both hold goes to the first
    assert service.fetched("R2") == len(DATA) - 3 * MIB
    asked = len(service.requests)
    assert running(service, disk, read_whole(archive)) == DATA  # the next mount: the cache
    assert len(service.requests) == asked


@pytest.mark.expected_logs(r"is damaged", r"checksum mismatch")
def test_a_leaf_that_fails_through_one_job_is_remembered_and_read_through_another(
    disk: DiskCache,
) -> None:
    service = Service()
    service.flip.add("F")
    full, spare = job("F"), job("R", 0, MIB - 1, completed=2.0)
    archive = assemble([full, spare]).archives[0]

    async def first(files: ArchiveFiles) -> None:
        with pytest.raises(IntegrityError):
            await files.read(archive, 0, 10, {})
        assert files.damage.bad(full, 0)

    running(service, disk, first)

    async def second(files: ArchiveFiles) -> bytes:
        return bytes(await files.read(archive, 0, 10, {}))

    assert running(service, disk, second) == DATA[:10]
    assert service.fetched("R") == MIB


def test_the_archives_xattrs_say_what_is_cached_and_verified(disk: DiskCache) -> None:
    service = Service()
    archive = assemble([job("R1", 0, 2 * MIB - 1), job("R2", 2 * MIB)]).archives[0]

    async def go(files: ArchiveFiles) -> list[dict[str, bytes]]:
        seen = [await files.xattrs(archive)]
        await files.read(archive, 0, 1, {})
        seen.append(await files.xattrs(archive))
        await read_whole(archive)(files)
        seen.append(await files.xattrs(archive))
        return seen

    remote, partly, cached = running(service, disk, go)
    assert remote["user.glacierfs.state"] == b"remote"
    assert partly["user.glacierfs.state"] == b"partly-cached"
    assert partly["user.glacierfs.cached"] == str(MIB).encode()
    assert cached["user.glacierfs.state"] == b"cached"
    assert cached["user.glacierfs.verified"] == b"tree-hash"
    assert cached["user.glacier.jobs"] == b"R1 R2"
    assert cached["user.glacier.tree_hash"] == tree_hash(DATA).encode()
