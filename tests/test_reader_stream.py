"""The read path with streamed fetches: leaves go to the disk cache and readers read them
there; when the disk cannot take them, they are served from memory and nothing is
fetched twice."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import trio

from glacierfs.cache.aio import AsyncDisk
from glacierfs.cache.disk import DiskCache
from glacierfs.read.fetch import DiskRefused, Fetcher, Sink
from glacierfs.read.ledger import Ledger
from glacierfs.retry import RetryPolicy
from glacierfs.stats import Stats
from tests.test_diskcache import FillableDisk
from tests.test_reader import FakeOutput, Loop, make_job, make_reader, read_all, run

MIB = 1 << 20


def test_fetched_leaves_are_committed_to_disk_and_read_from_there(tmp_path: Path) -> None:
    data = random.Random(3).randbytes(5 * MIB + 7)
    fake = FakeOutput(data)
    with DiskCache(tmp_path / "cache", 1 << 30) as disk, Loop():
        reader = make_reader(fake, disk)
        job = make_job(data)
        assert read_all(reader, job) == data
        assert fake.fetched == len(data)
        assert disk.cached_bytes(job.cache_key) == len(data)
        assert run(reader, reader.verification, job) == "tree-hash"


@pytest.mark.expected_logs(r"disk cache .* cannot be written")
def test_a_full_disk_serves_from_memory_then_caches_again_when_space_returns(
    tmp_path: Path,
) -> None:
    disk_space = FillableDisk()
    disk_space.full = True
    first = random.Random(4).randbytes(6 * MIB + 5)
    second = random.Random(5).randbytes(6 * MIB + 9)
    fakes = {"full": FakeOutput(first), "again": FakeOutput(second)}
    with DiskCache(tmp_path / "cache", 1 << 30, pwrite=disk_space.pwrite) as disk, Loop():
        reader = make_reader(lambda job, s, e: fakes[job.job_id](job, s, e), disk)
        job = make_job(first, job_id="full")
        assert read_all(reader, job) == first
        assert fakes["full"].fetched == len(first)  # served from memory, not fetched again
        assert disk.cached_bytes(job.cache_key) == 0
        assert not disk.writable
        disk_space.full = False
        later = make_job(second, job_id="again")
        assert read_all(reader, later) == second
        assert fakes["again"].fetched == len(second)
        assert disk.writable
        assert disk.cached_bytes(later.cache_key) == len(second)


def test_a_cache_smaller_than_the_read_ahead_keeps_fetched_leaves_in_memory(
    tmp_path: Path,
) -> None:
    data = random.Random(6).randbytes(12 * MIB + 3)
    fake = FakeOutput(data)
    with DiskCache(tmp_path / "cache", 2 * MIB) as disk, Loop():
        reader = make_reader(fake, disk)
        job = make_job(data)
        assert read_all(reader, job) == data
        assert fake.fetched == len(data)  # nothing evicted before it was read, and refetched
        assert disk.cached_bytes(job.cache_key) <= 2 * MIB


def test_a_range_the_cache_cannot_claim_is_not_fetched_by_the_stream(tmp_path: Path) -> None:
    data = random.Random(7).randbytes(4 * MIB)
    fake = FakeOutput(data)
    job = make_job(data)
    fetcher = Fetcher(fake, 1, RetryPolicy(attempts=1), Stats())
    with DiskCache(tmp_path / "cache", 2 * MIB) as disk:
        sink = Sink(disk, job.cache_key, 0, job.owner)
        ledger = Ledger(AsyncDisk(disk))
        with pytest.raises(DiskRefused):
            trio.run(fetcher.fetch, job, 0, len(data) - 1, ledger, sink)
        assert fake.requests == []  # refused before the GET: the loader fetches it to memory
        landed = trio.run(fetcher.fetch, job, 0, len(data) - 1, ledger, None)
        assert landed.held and len(landed.held) == 4 and not landed.stored


def test_a_read_that_waited_on_a_flight_reads_the_landed_leaf_from_the_page_cache(
    tmp_path: Path,
) -> None:
    """The waiters of a flight read its stored leaves as the fast path does (cache/local.py:
    a preadv of the bytes asked for, their granules checked), not through a worker thread
    that copies the leaf into a fresh buffer."""
    data = random.Random(8).randbytes(3 * MIB + 11)
    fake = FakeOutput(data)
    with DiskCache(tmp_path / "cache", 1 << 30) as disk, Loop():
        reader = make_reader(fake, disk)
        job = make_job(data)
        # no prefetcher: each read fetches its own leaf and waits on that flight
        piece = run(reader, reader.read, job, MIB + 5, 4096)
        assert bytes(piece) == data[MIB + 5 : MIB + 5 + 4096]
        reads = reader.local_reads()
        assert reads["disk_reads_inline"] + reads["disk_reads_threaded"] == 1
        spanning = run(reader, reader.read, job, 2 * MIB - 100, 200)  # waits on two leaves
        assert bytes(spanning) == data[2 * MIB - 100 : 2 * MIB + 100]
        reads = reader.local_reads()
        assert reads["disk_reads_inline"] + reads["disk_reads_threaded"] == 3
        assert fake.fetched == 2 * MIB  # leaves 1 and 2, once each
