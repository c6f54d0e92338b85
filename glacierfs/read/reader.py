"""The read path: from ``(job, offset, size)`` to bytes that are verified or refused.

Design.

* The unit of caching and verification is the 1 MiB *leaf* of Glacier's tree hash.
  Archive bytes live in the cache in archive coordinates (``job.first_leaf + i`` for
  output leaf ``i``), so that every job of the same archive can share them; requests
  are planned in output coordinates (:mod:`glacierfs.ranges`), since that is what the
  service checks alignment against.
* A leaf is looked for in memory, then in a *flight* (a request in progress that
  covers it: concurrent readers of one leaf make one request), then on disk, and only
  then fetched. A flight runs in the mount's background nursery, not in the reader's
  task, so an interrupted ``read()`` never wastes a download.
* A fetch runs in a worker thread under the connection limiter: the GET, the byte
  count checks (:mod:`glacierfs.client`), the leaf hashes, and the comparison of their
  root with ``x-amz-sha256-tree-hash``. A mismatch is retried (:mod:`glacierfs.retry`)
  and, if it persists, fails the read with EIO: a byte that failed its checksum is
  never returned and never cached.
* Each leaf's digest and how it was verified (``block``: matched a response
  checksum; ``size``: only its length could be checked, where no checksum is due) are
  kept with it, and the jobs it is good for (:mod:`glacierfs.read.trust`): a leaf serves
  the job that fetched it, and every job of its archive once the archive's tree hash
  proves the archive whole. Leaves in memory and in flight are the job's own (keyed
  by :func:`glacierfs.read.trust.slot`); only the disk cache's index shares them.
* When every leaf of an output is good for its job, their root is compared with the
  job's record without reading any data again, before the leaves that complete it are
  handed out: a mismatch fails that read and every later one with EIO.
* A flight always ends with its leaves or an error, whatever stops it, and a read
  looks for a leaf a bounded number of times: no waiter sleeps forever and no loop
  spins. :meth:`Reader.close` (the mount is ending) refuses new work and wakes every
  waiter with :class:`~glacierfs.errors.ShuttingDown`; the flights still running end
  with the nursery's cancellation, a download's worker thread abandoned (its bytes
  dropped), a disk write already started finished, shielded, so none is left half done.
* Memory is bounded twice: the memory cache by ``memory_cache`` bytes, and bytes
  requested but not yet stored by the mount-wide budget, whatever the number of
  readers. The trio loop never blocks: network, hashing and disk run in threads.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio

from glacierfs.cache.disk import SHARED, CacheUsage, DiskCache
from glacierfs.cache.memory import MemoryCache
from glacierfs.client import OutputPart
from glacierfs.errors import (
    BadResponse,
    GlacierfsError,
    IntegrityError,
    JobExpired,
    LeafUnavailable,
    ShuttingDown,
    SizeDisagreement,
    UnverifiableRead,
)
from glacierfs.jobs import Job
from glacierfs.ranges import Run, byte_range, leaf_span, plan
from glacierfs.read.prefetch import Advice, Prefetcher
from glacierfs.read.trust import (
    BLOCK,
    MISMATCH,
    SIZE,
    TREE_HASH,
    ObjectState,
    Trust,
    after_put,
    slot,
    usable,
)
from glacierfs.retry import RetryPolicy, retrying
from glacierfs.stats import Stats
from glacierfs.treehash import MIB, combine, is_tree_hash_aligned, leaf_digests

log = logging.getLogger(__name__)

FetchPart = Callable[[Job, int, int], OutputPart]
"""``(job, start, end)`` -> the bytes; blocking, run in a worker thread."""

LEAF_ROUNDS = 4
"""Times a read looks for one leaf (memory, a flight, the disk, a fetch) before it fails.
A leaf the index has and the disk has lost takes two; more means the cache keeps losing
it, and looping on would spin the trio loop."""


@dataclass(frozen=True)
class ReaderSettings:
    block_size: int = MIB
    max_request: int = 8 * MIB
    read_ahead: int = 64 * MIB
    connections: int = 8
    memory_budget: int = 64 * MIB
    strict: bool = False
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def prefetcher(self) -> Prefetcher:
        return Prefetcher(self.block_size, self.max_request, self.read_ahead)


class Flight:
    """One request in progress; its leaves are handed to waiters as they land."""

    def __init__(self) -> None:
        self.done = trio.Event()
        self.leaves: dict[int, memoryview] = {}
        self.error: GlacierfsError | None = None

    def fail(self, error: GlacierfsError) -> None:
        """End the flight without its leaves, unless they landed: its waiters get ``error``."""
        if not self.done.is_set():
            self.error = error
            self.done.set()


class Reader:
    def __init__(
        self,
        fetch_part: FetchPart,
        disk: DiskCache,
        memory: MemoryCache,
        settings: ReaderSettings,
        stats: Stats,
    ) -> None:
        self._fetch_part = fetch_part
        self._disk = disk
        self._memory = memory
        self.settings = settings
        self.stats = stats
        self._nursery: trio.Nursery | None = None
        self._closing = False
        self._flights: dict[tuple[str, int], Flight] = {}
        self._objects: dict[str, ObjectState] = {}
        self._sighted: dict[str, trio.Event] = {}  # job ident -> set once the job is looked at
        self.trust = Trust(disk, memory)
        self.descriptions: dict[str, str] = {}  # archive id -> description, from headers
        self._network = trio.CapacityLimiter(settings.connections)
        self._disk_io = trio.CapacityLimiter(4)
        budget = max(settings.memory_budget, settings.max_request) // MIB
        self._budget = trio.Semaphore(budget)
        self._budget_lock = trio.Lock()
        self._block_leaves = settings.block_size // MIB

    def start(self, nursery: trio.Nursery) -> None:
        """Give the reader the nursery its background fetches run in."""
        self._nursery = nursery

    def close(self) -> None:
        """The mount is ending: refuse new work, wake every waiter with ShuttingDown.

        Call it before cancelling the nursery, so that reads waiting outside it (FUSE
        requests, worker threads) end now rather than when their flights would.
        """
        self._closing = True
        for flight in set(self._flights.values()):
            flight.fail(ShuttingDown("the mount is shutting down"))

    def _refuse_when_closing(self) -> None:
        if self._closing:
            raise ShuttingDown("the mount is shutting down")

    # --- reading ---------------------------------------------------------------------

    async def read(
        self, job: Job, offset: int, size: int, prefetcher: Prefetcher | None = None
    ) -> bytes | memoryview:
        if offset >= job.size or size <= 0:
            return b""
        self._refuse_when_closing()
        first, stop = leaf_span(offset, size, job.size)
        state = await self._object(job)
        self.trust.ledger.refuse(job)
        advice = prefetcher.advise(offset, size) if prefetcher else Advice(self._block_leaves, 0)
        ahead_stop = min(job.leaves, -(-(offset + size + advice.ahead) // MIB))
        self._schedule(job, state, first, max(stop, ahead_stop), advice.unit)
        pieces = [await self._leaf(job, state, i) for i in range(first, stop)]
        await self.trust.check_handed(job)
        start = offset - first * MIB
        end = start + min(size, job.size - offset)
        self.stats.bytes_served += end - start
        if len(pieces) == 1:
            return pieces[0][start:end]
        return b"".join(pieces)[start:end]

    async def _object(self, job: Job) -> ObjectState:
        """The job's cache object, once what is known of the job has been looked at."""
        key = job.cache_key
        state = self._objects.get(key)
        if state is None:
            known = await trio.to_thread.run_sync(self._disk.leaves, key)
            state = self._objects.setdefault(key, ObjectState(dict(known)))
        sighted = self._sighted.get(job.ident)
        if sighted is None:
            sighted = self._sighted[job.ident] = trio.Event()
            try:
                state.jobs[job.ident] = job
                await self.trust.first_look(job, state)
            finally:
                sighted.set()
        if not sighted.is_set():  # another read of the job is looking at it
            await sighted.wait()
        return state

    async def _leaf(self, job: Job, state: ObjectState, index: int) -> memoryview:
        data = await self._find_leaf(job, state, index)
        self._check_strict(job, state, job.first_leaf + index)
        return data

    async def _find_leaf(self, job: Job, state: ObjectState, index: int) -> memoryview:
        key, leaf = slot(job), job.first_leaf + index
        for _ in range(LEAF_ROUNDS):
            data = self._memory.get(key, leaf)
            if data is not None:
                self.stats.served_from_cache += len(data)
                return memoryview(data)
            if (key, leaf) not in self._flights:
                self._schedule(job, state, index, index + 1, self._block_leaves)
            flight = self._flights.get((key, leaf))
            if flight is None:
                continue
            await flight.done.wait()
            if flight.error is not None:
                raise flight.error
            if leaf in flight.leaves:
                return flight.leaves[leaf]
            if self._memory.get(key, leaf) is None:
                self._forget(state, leaf)  # not on disk after all: evicted or damaged
        raise LeafUnavailable(
            f"job {job.job_id}: leaf {leaf} was lost {LEAF_ROUNDS} times between "
            "being loaded and being read"
        )

    def _forget(self, state: ObjectState, leaf: int) -> None:
        if state.digests.pop(leaf, None) is not None:
            self.stats.disk_cache_misses += 1

    def _check_strict(self, job: Job, state: ObjectState, leaf: int) -> None:
        if not self.settings.strict or self.trust.ledger.verdict(job) == TREE_HASH:
            return
        row = state.digests.get(leaf)
        if row is None or (row.verified != BLOCK and row.owners != SHARED):
            raise UnverifiableRead(
                f"job {job.job_id}: verify=strict and no checksum covers leaf {leaf}"
            )

    # --- fetching --------------------------------------------------------------------

    def _schedule(self, job: Job, state: ObjectState, first: int, stop: int, unit: int) -> None:
        """Start loading the leaves of ``first..stop-1`` that are not in memory or on the way.

        Leaves on disk are read (and checked) by background tasks, so that a sequential
        reader's next leaves load in parallel; the others are fetched in aligned runs.
        """
        self._refuse_when_closing()
        key, base = slot(job), job.first_leaf

        def idle(i: int) -> bool:
            leaf = base + i
            return (key, leaf) not in self._flights and self._memory.get(key, leaf) is None

        for i in range(first, min(stop, job.leaves)):
            if usable(job, state, base + i) and idle(i):
                flight = Flight()
                self._launch(flight, [(key, base + i)], self._load, job, base + i, flight)
        for run in plan(
            first,
            stop,
            unit,
            job.leaves,
            lambda i: not usable(job, state, base + i) and idle(i),
        ):
            flight = Flight()
            leaves = [(key, base + i) for i in range(run[0], run[0] + run[1])]
            self._launch(flight, leaves, self._fly, job, state, run, flight)

    def _launch(
        self,
        flight: Flight,
        keys: list[tuple[str, int]],
        task: Callable[..., Awaitable[None]],
        *args: object,
    ) -> None:
        """Register a flight under its leaves and start it in the background nursery."""
        assert self._nursery is not None, "Reader.start() was not called"
        for key in keys:
            self._flights[key] = flight
        try:
            self._nursery.start_soon(task, *args)
        except RuntimeError:  # the nursery is closed: nothing will ever run it
            self.close()
            raise ShuttingDown("the mount is shutting down") from None

    async def _load(self, job: Job, leaf: int, flight: Flight) -> None:
        """Read one leaf from disk into memory; a miss leaves the flight empty."""
        key = slot(job)
        try:
            async with self._disk_io:
                found = await trio.to_thread.run_sync(
                    self._disk.get_leaf, job.cache_key, leaf, job.owner
                )
            if found is not None:
                data = found[0]
                self.trust.see(job, leaf, found[1])
                self._memory.put(key, leaf, data)
                flight.leaves[leaf] = memoryview(data)
        except trio.Cancelled:
            flight.fail(ShuttingDown("the mount is shutting down"))
            raise
        finally:
            flight.done.set()
            if self._flights.get((key, leaf)) is flight:
                del self._flights[(key, leaf)]

    async def _fly(self, job: Job, state: ObjectState, run: Run, flight: Flight) -> None:
        key, first_leaf = slot(job), job.first_leaf + run[0]
        start, end = byte_range(run, job.size)
        label = f"{start}-{end}"
        try:
            async with self._budget_lock:
                for _ in range(run[1]):
                    await self._budget.acquire()
            try:
                self.stats.in_flight.setdefault(job.job_id, []).append(label)
                try:
                    data, digests, how = await self._fetch_verified(job, start, end)
                finally:
                    self._drop_in_flight(job.job_id, label)
                self._publish(job, state, flight, first_leaf, data, digests, how)
                with trio.CancelScope(shield=True):  # downloaded bytes are kept, even at unmount
                    async with self._disk_io:
                        await trio.to_thread.run_sync(
                            functools.partial(self._disk.put, owner=job.owner),
                            job.cache_key,
                            first_leaf,
                            data,
                            digests,
                            how,
                        )
            finally:  # the budget covers the bytes until they are on disk: a slow disk
                for _ in range(run[1]):  # slows the fetches instead of piling up in memory
                    self._budget.release()
            with trio.CancelScope(shield=True):
                await self.trust.check_whole(job, state)
        except GlacierfsError as error:
            flight.error = error
        except trio.Cancelled:
            flight.fail(ShuttingDown("the mount is shutting down"))
            raise
        except Exception:  # a bug: logged, its readers get EIO, the mount lives on
            log.exception("job %s bytes %s: unexpected error in a fetch", job.job_id, label)
            flight.fail(GlacierfsError(f"job {job.job_id} bytes {label}: unexpected error"))
        finally:
            flight.done.set()
            for leaf in range(first_leaf, first_leaf + run[1]):
                if self._flights.get((key, leaf)) is flight:
                    del self._flights[(key, leaf)]

    def _publish(
        self,
        job: Job,
        state: ObjectState,
        flight: Flight,
        first_leaf: int,
        data: bytes,
        digests: list[bytes],
        how: str,
    ) -> None:
        """Hand verified leaves to the readers waiting on the flight, and to memory."""
        view, key = memoryview(data), slot(job)
        for n, digest in enumerate(digests):
            leaf = first_leaf + n
            piece = view[n * MIB : (n + 1) * MIB]
            flight.leaves[leaf] = piece
            self._memory.put(key, leaf, bytes(piece))  # a copy: the cache counts it
            state.digests[leaf] = after_put(job, state, leaf, digest, how)
            self.trust.see(job, leaf, digest)
        flight.done.set()

    def _drop_in_flight(self, job_id: str, label: str) -> None:
        ranges = self.stats.in_flight.get(job_id, [])
        if label in ranges:
            ranges.remove(label)
        if not ranges:
            self.stats.in_flight.pop(job_id, None)

    async def _fetch_verified(
        self, job: Job, start: int, end: int
    ) -> tuple[bytes, list[bytes], str]:
        """Bytes ``start..end`` of the output, checked; and if they complete it, the
        output checked against the job's record (IntegrityError on a mismatch)."""
        what = f"job {job.job_id} bytes {start}-{end}"

        async def attempt() -> tuple[bytes, list[bytes], str]:
            async with self._network:
                # abandoned when cancelled (the mount ends): its bytes are dropped
                return await trio.to_thread.run_sync(
                    self._fetch_and_hash, job, start, end, abandon_on_cancel=True
                )

        def counted(error: Exception) -> None:
            self.stats.retries += 1
            if isinstance(error, IntegrityError):
                self.stats.checksum_failures += 1

        try:
            data, digests, how = await retrying(attempt, self.settings.retry, what, counted)
        except IntegrityError:
            self.stats.checksum_failures += 1
            raise
        except JobExpired as error:
            what = f"archive {job.archive_id}" if job.kind == "archive" else "the inventory"
            raise JobExpired(
                f"job {job.job_id}: the output expired at the service; cached bytes are "
                f"still served, the rest needs a new retrieval job of {what}"
            ) from error
        except SizeDisagreement as error:
            raise await self._size_disagreement(job, error) from None
        state = await self._object(job)
        first = job.first_leaf + start // MIB
        landing = {
            first + n: after_put(job, state, first + n, digest, how)
            for n, digest in enumerate(digests)
        }
        if await self.trust.judge(job, state, landing) == MISMATCH:
            self.trust.ledger.refuse(job)
        return data, digests, how

    async def _size_disagreement(self, job: Job, error: SizeDisagreement) -> BadResponse:
        if job.kind == "inventory":
            field_name = "InventorySizeInBytes"
        else:
            field_name = "ArchiveSizeInBytes" if job.whole_archive else "RetrievalByteRange"
        problem = f"{field_name} says {job.size} bytes, the service sends {error.sent}"
        await self.trust.ledger.record(job, MISMATCH, problem)  # no more requests for it
        failure = BadResponse(f"job {job.job_id}: {problem}")
        return failure

    def _fetch_and_hash(self, job: Job, start: int, end: int) -> tuple[bytes, list[bytes], str]:
        """In a worker thread: one GET, its leaf hashes, and their check."""
        part = self._fetch_part(job, start, end)
        if job.archive_id and part.description is not None:
            self.descriptions[job.archive_id] = part.description
        self.stats.requests += 1
        self.stats.bytes_fetched += len(part.data)
        digests = leaf_digests(part.data)
        if (
            part.tree_hash is None
            and job.checksums_due
            and is_tree_hash_aligned(start, end, job.size)
        ):
            # The spec says this response carries a checksum: without one, its bytes are
            # as unproven as corrupt ones (retried, then EIO), never served on their size.
            raise IntegrityError(
                f"job {job.job_id} bytes {start}-{end}: no x-amz-sha256-tree-hash, "
                "though the range is tree-hash aligned"
            )
        if part.tree_hash is None:
            return part.data, digests, SIZE
        received = combine(digests).hex()
        if received != part.tree_hash:
            raise IntegrityError(
                f"job {job.job_id} bytes {start}-{end}: checksum mismatch: "
                f"expected {part.tree_hash}, received {received}"
            )
        return part.data, digests, BLOCK

    # --- trust ----------------------------------------------------------------------

    async def verification(self, job: Job) -> str:
        """``tree-hash``, ``mismatch``, ``blocks``, ``size``, or ``none`` (nothing read)."""
        return await self.trust.verification(job, await self._object(job))

    def problems(self, job: Job) -> list[str]:
        """What the service said of the job that disagrees with what else it said."""
        return self.trust.ledger.problems(job)

    async def note_problem(self, job: Job, problem: str) -> None:
        """A disagreement about the job found elsewhere (its archive's inventory entry)."""
        await self._object(job)  # what an earlier mount noted is loaded first
        await self.trust.ledger.note(job, problem)

    async def cached_bytes(self, job: Job) -> int:
        """How much of the output is in the cache, good for the job."""
        state = await self._object(job)
        count = sum(
            1
            for leaf in range(job.first_leaf, job.first_leaf + job.leaves)
            if usable(job, state, leaf)
        )
        if count and usable(job, state, job.first_leaf + job.leaves - 1):
            return (count - 1) * MIB + (job.size - (job.leaves - 1) * MIB)
        return count * MIB

    async def leaf_cached(self, job: Job, leaf: int) -> bool:
        """Whether cache leaf ``leaf`` (archive coordinates) is there and good for the job."""
        return usable(job, await self._object(job), leaf)

    def cache_usage(self) -> CacheUsage:
        return self._disk.usage()

    async def hydrate(self, job: Job) -> None:
        """Fetch every leaf of the output not yet cached; raise the first failure."""
        state = await self._object(job)
        unit = self.settings.max_request // MIB
        self._schedule(job, state, 0, job.leaves, unit)
        for i in range(job.leaves):
            flight = self._flights.get((slot(job), job.first_leaf + i))
            if flight is not None:
                await flight.done.wait()
                if flight.error is not None:
                    raise flight.error
