"""The read path without the kernel or HTTP: a fake Get Job Output behind the real caches.

The fake serves bytes the way the spec says (a checksum exactly for tree-hash aligned
ranges), counts requests, and can corrupt or fail them, so the reader's promises are
checked one by one: exact bytes, single flight, no byte fetched twice, no corrupt byte
served or cached.
"""

from __future__ import annotations

import errno
import io
import logging
import random
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trio
from trio.testing import wait_all_tasks_blocked

from glacierfs.cache.aio import AsyncDisk
from glacierfs.cache.disk import DiskCache
from glacierfs.cache.memory import MemoryCache
from glacierfs.errors import (
    GlacierfsError,
    IntegrityError,
    ShuttingDown,
    TransientServiceError,
    UnverifiableRead,
)
from glacierfs.jobs import Job
from glacierfs.names.sources import ReaderStream
from glacierfs.read.reader import Reader, ReaderSettings
from glacierfs.retry import RetryPolicy
from glacierfs.stats import Stats
from glacierfs.treehash import MIB, is_tree_hash_aligned, tree_hash
from glacierfs.wire import OutputPart

FAST_RETRY = RetryPolicy(attempts=4, timeout=30, base_delay=0.001, max_delay=0.01)
SETTINGS = ReaderSettings(retry=FAST_RETRY)
"""What the daemon reads with (config's defaults), but retries that give up at once."""
T = TypeVar("T")


class FakeOutput:
    def __init__(self, data: bytes, checksums: bool = True) -> None:
        self.data = data
        self.checksums = checksums
        self.requests: list[tuple[int, int]] = []
        self.corrupt_next = 0
        self.fail_next = 0
        self.lock = threading.Lock()
        self.gate: threading.Event | None = None

    def __call__(self, job: Job, start: int, end: int) -> OutputPart:
        if self.gate is not None:
            self.gate.wait(10)
        with self.lock:
            self.requests.append((start, end))
            if self.fail_next:
                self.fail_next -= 1
                raise TransientServiceError("throttled")
            corrupt = self.corrupt_next > 0
            self.corrupt_next -= corrupt
        body = bytearray(self.data[start : end + 1])
        aligned = self.checksums and is_tree_hash_aligned(start, end, len(self.data))
        checksum = tree_hash(body) if aligned else None
        if corrupt:
            body[len(body) // 2] ^= 0xFF
        return OutputPart(bytes(body), checksum, None)

    @property
    def fetched(self) -> int:
        return sum(end - start + 1 for start, end in self.requests)


def make_job(data: bytes, with_tree_hash: bool = True, job_id: str = "job1") -> Job:
    return Job(
        job_id=job_id,
        kind="archive",
        size=len(data),
        completed=0.0,
        created=0.0,
        vault_arn="arn:vault",
        archive_id="a1",
        archive_size=len(data),
        archive_tree_hash=tree_hash(data),
        range_start=0,
        tree_hash=tree_hash(data) if with_tree_hash else None,
    )


def unaligned_job(data: bytes) -> Job:
    """A range job whose range is not tree-hash aligned: no checksum is due for it."""
    archive = MIB + len(data) + MIB
    job = replace(make_job(data, False), range_start=MIB, archive_size=archive)
    assert not job.checksums_due
    return replace(job, archive_tree_hash=tree_hash(bytes(archive)))


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[DiskCache]:
    cache = DiskCache(tmp_path / "cache", 1 << 30)
    yield cache
    cache.close()


class Loop:
    """One trio run in a thread for a whole test, as a mount has one: a reader built on it
    keeps its flights, caches and verdicts across the test's calls."""

    def __init__(self) -> None:
        self._ready = threading.Event()
        self._thread = threading.Thread(target=trio.run, args=(self._main,))
        self._thread.start()
        assert self._ready.wait(30), "the test's trio loop did not start"

    async def _main(self) -> None:
        self.token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            self._ready.set()
            await self._stop.wait()
            nursery.cancel_scope.cancel()

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """``fn(*args)`` on the loop, then the work it started in the background (read-ahead,
        disk writes, verdicts) finished, so that what the test checks next is settled."""
        return trio.from_thread.run(self._settled, fn, *args, trio_token=self.token)

    async def _settled(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        try:
            return await fn(*args)
        finally:
            with trio.move_on_after(30):  # a hang guard, not a timing check
                while self.nursery.child_tasks:
                    await wait_all_tasks_blocked(cushion=0.001)

    def close(self) -> None:
        trio.from_thread.run_sync(self._stop.set, trio_token=self.token)
        self._thread.join()

    def __enter__(self) -> Loop:
        LOOPS.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        LOOPS.remove(self)
        self.close()


LOOPS: list[Loop] = []  # the running loops, innermost last: make_reader and run use it


@pytest.fixture(autouse=True)
def loop(disk: DiskCache) -> Iterator[Loop]:
    """Ended before the disk cache is closed (it depends on it)."""
    with Loop() as running:
        yield running


async def build(
    fake: Callable[[Job, int, int], OutputPart],
    disk: DiskCache,
    settings: ReaderSettings,
    nursery: trio.Nursery,
) -> Reader:
    return await Reader.create(
        fake, AsyncDisk(disk), MemoryCache(16 * MIB), settings, Stats(), nursery=nursery
    )


def make_reader(
    fake: Callable[[Job, int, int], OutputPart],
    disk: DiskCache,
    strict: bool = False,
    settings: ReaderSettings | None = None,
) -> Reader:
    """A reader on the test's loop, with the settings the daemon uses but quick retries."""
    settings = settings or replace(SETTINGS, strict=strict)
    return LOOPS[-1].call(build, fake, disk, settings, LOOPS[-1].nursery)


def run(reader: Reader, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """``fn(*args)`` on the loop ``reader`` was built on."""
    return LOOPS[-1].call(fn, *args)


def read_all(reader: Reader, job: Job, chunk: int = 128 * 1024) -> bytes:
    async def go() -> bytes:
        prefetcher = reader.settings.prefetcher()
        out = bytearray()
        while len(out) < job.size:
            out += await reader.read(job, len(out), chunk, prefetcher)
        return bytes(out)

    return run(reader, go)


SIZES = [0, 1, MIB - 1, MIB, MIB + 1, int(7.3 * MIB)]


@pytest.mark.parametrize("size", SIZES)
def test_sequential_read_returns_exact_bytes_and_fetches_each_byte_once(
    size: int, disk: DiskCache
) -> None:
    data = random.Random(size).randbytes(size)
    fake = FakeOutput(data)
    reader = make_reader(fake, disk)
    job = make_job(data)
    assert read_all(reader, job) == data
    assert fake.fetched == size
    assert all(is_tree_hash_aligned(s, e, size) for s, e in fake.requests)
    assert run(reader, reader.verification, job) == "tree-hash"


def test_read_ahead_is_capped_by_an_eighth_of_the_cache_and_sized_from_the_link(
    disk: DiskCache,
) -> None:
    pace = make_reader(FakeOutput(b""), disk).pace()  # the cache holds 1 GiB: it streams
    assert pace.ceiling == (1 << 30) // 8  # read_ahead is 1 GiB
    assert pace.request == 8 * MIB  # 16 connections share 3/16 of the cache (the priors: 16)
    assert pace.tail == 8 * MIB  # what one connection carries in 0.4 s, by the priors
    assert pace.ramp == 31 * MIB  # the ramp to the link's own size, 16 MiB by the priors


def test_a_cache_too_small_to_stream_into_keeps_requests_and_window_to_memory() -> None:
    held = ReaderSettings(max_request=32 * MIB, memory_budget=64 * MIB).for_cache(64 * MIB)
    assert held.holds_responses  # 16 requests of a block would take a quarter of it
    assert held.read_ahead_ceiling() == 8 * MIB  # an eighth of the cache
    assert held.largest_request() == 4 * MIB  # 16 connections share the 64 MiB budget
    big = ReaderSettings(max_request=32 * MIB).for_cache(100 << 30)
    assert not big.holds_responses
    assert big.largest_request() == 32 * MIB
    assert big.read_ahead_ceiling() == big.read_ahead


def test_every_response_of_a_mib_or_more_is_measured_for_the_link_model(
    disk: DiskCache,
) -> None:
    data = random.Random(4).randbytes(9 * MIB)
    fake = FakeOutput(data)

    def timed(job: Job, start: int, end: int) -> OutputPart:
        part = fake(job, start, end)
        return replace(part, first_byte=time.monotonic())

    reader = make_reader(timed, disk)
    assert read_all(reader, make_job(data)) == data
    big = sum(1 for start, end in fake.requests if end - start + 1 >= MIB)
    assert big >= 2 and reader.link.samples == big
    assert reader.link.latency < 0.050  # the fake answers at once: below the prior


def test_random_reads_return_exact_bytes(disk: DiskCache) -> None:
    data = random.Random(1).randbytes(9 * MIB + 17)
    fake = FakeOutput(data)
    reader = make_reader(fake, disk)
    job = make_job(data)
    rng = random.Random(2)

    async def go() -> None:
        for _ in range(200):
            offset = rng.randrange(0, len(data) + 10)
            size = rng.choice([1, 4096, 65536, MIB, 3 * MIB])
            assert bytes(await reader.read(job, offset, size)) == data[offset : offset + size]

    run(reader, go)
    assert fake.fetched <= len(data)


def test_a_cache_hit_makes_no_request_even_in_a_new_reader(tmp_path: Path) -> None:
    data = random.Random(3).randbytes(3 * MIB + 5)
    job = make_job(data)
    with DiskCache(tmp_path / "c", 1 << 30) as disk, Loop():
        assert read_all(make_reader(FakeOutput(data), disk), job) == data
    fake = FakeOutput(data)
    with DiskCache(tmp_path / "c", 1 << 30) as disk, Loop():
        reader = make_reader(fake, disk)
        assert read_all(reader, job) == data
        assert run(reader, reader.verification, job) == "tree-hash"
    assert fake.requests == []


def test_concurrent_readers_of_a_block_make_one_request(disk: DiskCache) -> None:
    data = random.Random(4).randbytes(4 * MIB)
    fake = FakeOutput(data)
    fake.gate = threading.Event()
    reader = make_reader(fake, disk)
    job = make_job(data)
    results: list[bytes] = []

    async def go() -> None:
        async def one() -> None:
            results.append(bytes(await reader.read(job, MIB + 10, 1000)))

        async with trio.open_nursery() as nursery:
            for _ in range(8):
                nursery.start_soon(one)
            await wait_all_tasks_blocked()  # all eight waiting: none served yet
            assert results == []
            fake.gate.set()  # type: ignore[union-attr]

    run(reader, go)
    assert results == [data[MIB + 10 : MIB + 1010]] * 8
    assert fake.requests == [(MIB, 2 * MIB - 1)]


@pytest.mark.expected_logs(r"checksum mismatch: .*; retrying")
def test_a_flipped_byte_is_refetched_and_never_served(disk: DiskCache) -> None:
    data = random.Random(5).randbytes(2 * MIB)
    fake = FakeOutput(data)
    fake.corrupt_next = 2
    reader = make_reader(fake, disk)
    job = make_job(data)
    assert read_all(reader, job) == data
    assert reader.stats.checksum_failures == 2


def test_persistent_corruption_fails_with_integrity_error_and_caches_nothing(
    disk: DiskCache, expect_logs: Any
) -> None:
    expect_logs(r"checksum mismatch: .*; retrying", level=logging.WARNING, count=1)
    expect_logs(r"giving up after 4 attempts: .*checksum mismatch", level=logging.ERROR, count=1)
    data = random.Random(6).randbytes(MIB)
    fake = FakeOutput(data)
    fake.corrupt_next = 1000
    reader = make_reader(fake, disk)
    job = make_job(data)
    with pytest.raises(IntegrityError, match="checksum mismatch"):
        run(reader, reader.read, job, 0, 100)
    assert disk.leaves(job.cache_key) == {}
    fake.corrupt_next = 0
    assert bytes(run(reader, reader.read, job, 0, 100)) == data[:100]


@pytest.mark.expected_logs(r"throttled; retrying")
def test_transient_errors_are_retried(disk: DiskCache) -> None:
    data = random.Random(7).randbytes(MIB)
    fake = FakeOutput(data)
    fake.fail_next = 3
    reader = make_reader(fake, disk)
    assert bytes(run(reader, reader.read, make_job(data), 5, 10)) == data[5:15]
    assert reader.stats.retries == 3


def test_strict_mode_refuses_bytes_no_checksum_covers(disk: DiskCache) -> None:
    data = random.Random(8).randbytes(MIB + 3)
    fake = FakeOutput(data, checksums=False)
    reader = make_reader(fake, disk, strict=True)
    with pytest.raises(UnverifiableRead):
        run(reader, reader.read, unaligned_job(data), 0, 10)


def test_strict_mode_refuses_a_cached_leaf_no_checksum_covers_on_a_range_read(
    disk: DiskCache,
) -> None:
    data = random.Random(8).randbytes(MIB + 3)
    job = unaligned_job(data)
    with Loop():  # a first mount, not strict, caches the leaves with only their size checked
        reader = make_reader(FakeOutput(data, checksums=False), disk)
        assert read_all(reader, job) == data
    fake = FakeOutput(data, checksums=False)
    strict = make_reader(fake, disk, strict=True)
    before = disk.usage().bytes_read
    with pytest.raises(UnverifiableRead):
        run(strict, strict.read, job, 5, 10)  # random: a range read from the disk cache
    assert disk.usage().bytes_read - before <= 64 * 1024  # a granule, not the leaf
    assert fake.requests == []


def test_unverifiable_bytes_are_served_and_marked_size_by_default(disk: DiskCache) -> None:
    data = random.Random(9).randbytes(MIB + 3)
    reader = make_reader(FakeOutput(data, checksums=False), disk)
    job = unaligned_job(data)
    assert read_all(reader, job) == data
    assert run(reader, reader.verification, job) == "size"


@pytest.mark.expected_logs(r"SHA256TreeHash is \w+, the output's tree hash")
def test_whole_output_mismatch_fails_the_read_that_completes_it_and_every_later_one(
    disk: DiskCache,
) -> None:
    data = random.Random(10).randbytes(3 * MIB)
    claimed = tree_hash(b"another archive")
    record = replace(make_job(data), tree_hash=claimed, archive_tree_hash=claimed)
    with Loop():  # the first mount, ended before the next
        reader = make_reader(FakeOutput(data), disk)
        assert bytes(run(reader, reader.read, record, 0, 100)) == data[:100]
        with pytest.raises(IntegrityError, match="SHA256TreeHash"):
            read_all(reader, record, chunk=MIB)
        with pytest.raises(IntegrityError):
            run(reader, reader.read, record, 0, 100)
        assert run(reader, reader.verification, record) == "mismatch"
    fresh = make_reader(FakeOutput(data), disk)  # a remount remembers it
    with pytest.raises(IntegrityError):
        run(fresh, fresh.read, record, 0, 100)


@pytest.mark.expected_logs(r"is not ArchiveSHA256TreeHash")
def test_a_record_that_contradicts_itself_is_refused_without_a_request(disk: DiskCache) -> None:
    data = random.Random(11).randbytes(2 * MIB)
    record = replace(make_job(data), archive_tree_hash=tree_hash(b"another archive"))
    fake = FakeOutput(data)
    reader = make_reader(fake, disk)
    with pytest.raises(IntegrityError, match="ArchiveSHA256TreeHash"):
        run(reader, reader.read, record, 0, 100)
    assert fake.requests == []
    assert run(reader, reader.verification, record) == "mismatch"


class Outputs:
    """Get Job Output for several jobs, each with its own bytes."""

    def __init__(self, **outputs: FakeOutput) -> None:
        self.outputs = outputs

    def __call__(self, job: Job, start: int, end: int) -> OutputPart:
        return self.outputs[job.job_id](job, start, end)


def read_range(reader: Reader, job: Job, start: int, stop: int) -> bytes:
    async def go() -> bytes:
        out = bytearray()
        while start + len(out) < stop:
            out += await reader.read(job, start + len(out), min(MIB, stop - start - len(out)))
        return bytes(out)

    return run(reader, go)


@pytest.mark.expected_logs(r"SHA256TreeHash is \w+, the output's tree hash")
def test_a_job_claiming_another_archive_gets_none_of_its_leaves_and_gives_it_none(
    disk: DiskCache,
) -> None:
    genuine_data = random.Random(20).randbytes(4 * MIB)
    claimer_data = random.Random(21).randbytes(4 * MIB)
    genuine = make_job(genuine_data, job_id="genuine")
    claimer = replace(genuine, job_id="claimer", archive_id="another")  # claims it all
    fakes = Outputs(genuine=FakeOutput(genuine_data), claimer=FakeOutput(claimer_data))
    with Loop():  # the first mount, ended before the next
        reader = make_reader(fakes, disk)
        assert read_range(reader, claimer, 0, 2 * MIB) == claimer_data[: 2 * MIB]
        assert read_all(reader, genuine) == genuine_data
        assert fakes.outputs["genuine"].fetched == len(genuine_data)  # none of the claimer's
        with pytest.raises(IntegrityError):  # its own first half and the archive's second
            read_range(reader, claimer, 2 * MIB, 4 * MIB)
        assert run(reader, reader.verification, claimer) == "mismatch"
        assert run(reader, reader.verification, genuine) == "tree-hash"
    fresh = make_reader(fakes, disk)
    assert read_all(fresh, genuine) == genuine_data  # shared now: from the disk
    assert fakes.outputs["genuine"].fetched == len(genuine_data)


def test_a_renewed_retrieval_reads_what_another_cached_once_the_archive_is_proven_whole(
    disk: DiskCache,
) -> None:
    """Its record is its word only: the leaves the first job fetched serve the renewed one
    once the archive's tree hash proves them the archive's, not before."""
    data = random.Random(22).randbytes(6 * MIB + 5)
    fakes = Outputs(first=FakeOutput(data), renewed=FakeOutput(data), third=FakeOutput(data))
    first = make_job(data, job_id="first")
    renewed = make_job(data, job_id="renewed")
    reader = make_reader(fakes, disk)
    assert read_range(reader, first, 0, 2 * MIB) == data[: 2 * MIB]
    assert read_all(reader, renewed) == data
    assert fakes.outputs["renewed"].fetched == len(data)
    assert read_all(reader, make_job(data, job_id="third")) == data
    assert fakes.outputs["third"].fetched == 0


@pytest.mark.expected_logs(r"no x-amz-sha256-tree-hash")
def test_a_missing_checksum_where_one_is_due_fails_and_nothing_is_served(
    disk: DiskCache,
) -> None:
    data = random.Random(23).randbytes(2 * MIB)
    fake = FakeOutput(data, checksums=False)
    reader = make_reader(fake, disk)
    with pytest.raises(IntegrityError, match="no x-amz-sha256-tree-hash"):
        run(reader, reader.read, make_job(data), 0, 10)
    assert len(fake.requests) == FAST_RETRY.attempts
    assert disk.leaves(make_job(data).cache_key) == {}


def test_leaves_from_before_owners_are_adopted_by_a_job_they_prove_whole(
    tmp_path: Path,
) -> None:
    """The disk cache's schema 1 kept no owners: its leaves serve a job again, without a
    request, once their tree hash is the job's (or the archive's)."""
    data = random.Random(24).randbytes(5 * MIB + 9)
    job = make_job(data)
    with DiskCache(tmp_path / "c", 1 << 30) as disk, Loop():
        assert read_all(make_reader(FakeOutput(data), disk), job) == data
    with sqlite3.connect(tmp_path / "c" / "v1" / "index.sqlite3") as db:
        db.execute("UPDATE leaves SET owners = ''")  # as the migration from schema 1 leaves them
    fake = FakeOutput(data)
    with DiskCache(tmp_path / "c", 1 << 30) as disk, Loop():
        reader = make_reader(fake, disk)
        assert read_all(reader, replace(job, job_id="renewed")) == data
        assert {row.owners for row in disk.leaves(job.cache_key).values()} == {"*"}
    assert fake.requests == []


def test_a_range_job_adopts_leaves_of_before_owners_that_make_up_its_output(
    tmp_path: Path,
) -> None:
    archive = random.Random(25).randbytes(8 * MIB)
    part = archive[2 * MIB : 4 * MIB]
    whole = make_job(archive)
    ranged = replace(whole, job_id="range", size=len(part), range_start=2 * MIB)
    ranged = replace(ranged, tree_hash=tree_hash(part))
    with DiskCache(tmp_path / "c", 1 << 30) as disk, Loop():
        assert read_all(make_reader(FakeOutput(part), disk), ranged) == part
    with sqlite3.connect(tmp_path / "c" / "v1" / "index.sqlite3") as db:
        db.execute("UPDATE leaves SET owners = ''")
    fake = FakeOutput(part)
    with DiskCache(tmp_path / "c", 1 << 30) as disk, Loop():
        reader = make_reader(fake, disk)
        assert read_all(reader, ranged) == part
        assert run(reader, reader.verification, ranged) == "tree-hash"
        assert {row.owners for row in disk.leaves(ranged.cache_key).values()} == {ranged.owner}
    assert fake.requests == []


# --- the end of a mount: every waiter wakes, nothing loops, no thread is waited for ---


class Background:
    """The reader's nursery inside a scope the test cancels, as the daemon does at exit."""

    def __init__(self, fake: Callable[[Job, int, int], OutputPart], disk: DiskCache) -> None:
        self.fake, self.disk, self.scope = fake, disk, trio.CancelScope()

    async def run(self, settings: ReaderSettings, *, task_status: trio.TaskStatus[Reader]) -> None:
        with self.scope:
            async with trio.open_nursery() as nursery:
                task_status.started(await build(self.fake, self.disk, settings, nursery))
                await trio.sleep_forever()


def test_close_wakes_a_waiting_read_with_shutting_down_and_abandons_the_fetch(
    disk: DiskCache,
) -> None:
    data = random.Random(11).randbytes(2 * MIB)
    fake = FakeOutput(data)
    fake.gate = threading.Event()  # the GET hangs until the test is over
    outcome: list[str] = []

    async def read(reader: Reader) -> None:
        try:
            await reader.read(make_job(data), 0, 100)
        except ShuttingDown as error:
            outcome.append(f"{error.errno}")

    async def main() -> Reader:
        with trio.fail_after(30):  # a hang guard, not a timing check
            async with trio.open_nursery() as outer:
                background = Background(fake, disk)
                reader = await outer.start(background.run, SETTINGS)
                await wait_all_tasks_blocked()
                outer.start_soon(read, reader)
                await wait_all_tasks_blocked()  # the read waits on the flight
                reader.close()
                background.scope.cancel()
        return reader

    try:
        reader = trio.run(main)
        assert outcome == [str(errno.ECONNABORTED)]
        assert fake.requests == []  # the GET's thread was still blocked: not waited for
        with pytest.raises(ShuttingDown):  # and new work is refused, without a request
            trio.run(reader.read, make_job(data), 0, 100)
    finally:
        fake.gate.set()


def test_a_cancelled_fetch_wakes_a_reader_outside_its_nursery_with_an_error(
    disk: DiskCache,
) -> None:
    """The issue 16 bug: a flight cancelled with its nursery ended without an error, and a
    read waiting outside the nursery scheduled it again, and again, forever."""
    data = random.Random(12).randbytes(MIB)
    fake = FakeOutput(data)
    fake.gate = threading.Event()
    errors: list[type[BaseException]] = []

    async def read(reader: Reader) -> None:
        try:
            await reader.read(make_job(data), 0, 100)
        except GlacierfsError as error:
            errors.append(type(error))

    async def main() -> None:
        with trio.fail_after(30):
            async with trio.open_nursery() as outer:
                background = Background(fake, disk)
                reader = await outer.start(background.run, SETTINGS)
                await wait_all_tasks_blocked()
                outer.start_soon(read, reader)
                await wait_all_tasks_blocked()
                background.scope.cancel()  # no close(): the flight itself must say so

    try:
        trio.run(main)
    finally:
        fake.gate.set()
    assert errors == [ShuttingDown]


@pytest.mark.expected_logs(r"throttled; retrying")
def test_a_worker_thread_reading_a_retrying_output_ends_when_its_task_is_cancelled(
    disk: DiskCache,
) -> None:
    """The reported case in one process: an inventory read from a worker thread
    (ReaderStream) while every attempt fails and retries would last minutes."""
    data = random.Random(13).randbytes(MIB)
    fake = FakeOutput(data)
    fake.fail_next = 10**9
    retrying = threading.Event()
    original = fake.__call__

    def failing(job: Job, start: int, end: int) -> OutputPart:
        if len(fake.requests) >= 2:
            retrying.set()
        return original(job, start, end)

    retry = RetryPolicy(attempts=10**6, timeout=600, base_delay=0.01)
    settings = replace(SETTINGS, retry=retry)
    ended: list[str] = []

    async def learn(reader: Reader) -> None:
        stream = io.BufferedReader(ReaderStream(reader, make_job(data)))
        try:
            await trio.to_thread.run_sync(stream.read)
        except trio.Cancelled:
            ended.append("cancelled")
            raise
        except ShuttingDown:
            ended.append("shutting down")

    async def main() -> None:
        with trio.fail_after(30):
            async with trio.open_nursery() as outer:
                background = Background(failing, disk)
                reader = await outer.start(background.run, settings)
                outer.start_soon(learn, reader)
                await trio.to_thread.run_sync(retrying.wait)
                reader.close()
                background.scope.cancel()
                outer.cancel_scope.cancel()

    trio.run(main)
    assert ended in (["cancelled"], ["shutting down"])
