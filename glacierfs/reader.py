"""The read path: from ``(job, offset, size)`` to bytes that are verified or refused.

Design.

* The unit of caching and verification is the 1 MiB *leaf* of Glacier's tree hash.
  Archive bytes live in the cache in archive coordinates (``job.first_leaf + i`` for
  output leaf ``i``), so every job of the same archive shares them; requests are
  planned in output coordinates (:mod:`glacierfs.ranges`), since that is what the
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
  checksum; ``size``: only its length could be checked) are kept with it. When every
  leaf of an output is known, their root is compared with the job's
  ``SHA256TreeHash`` without reading any data again, and the result is recorded.
* Memory is bounded twice: the memory cache by ``memory_cache`` bytes, and bytes
  requested but not yet stored by the mount-wide budget, whatever the number of
  readers. The trio loop never blocks: network, hashing and disk run in threads.
* A flight always ends with its leaves or an error, whatever stops it, and a read
  looks for a leaf a bounded number of times: no waiter sleeps forever and no loop
  spins. :meth:`Reader.close` (the mount is ending) refuses new work and wakes every
  waiter with :class:`~glacierfs.errors.ShuttingDown`; the flights still running end
  with the nursery's cancellation, a download's worker thread abandoned (its bytes
  dropped), a disk write already started finished, shielded, so none is left half done.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio

from glacierfs.client import OutputPart
from glacierfs.diskcache import CacheUsage, DiskCache
from glacierfs.errors import (
    GlacierfsError,
    IntegrityError,
    JobExpired,
    LeafUnavailable,
    ShuttingDown,
    UnverifiableRead,
)
from glacierfs.jobs import Job
from glacierfs.memcache import MemoryCache
from glacierfs.prefetch import Advice, Prefetcher
from glacierfs.ranges import Run, byte_range, leaf_span, plan
from glacierfs.retry import RetryPolicy, retrying
from glacierfs.stats import Stats
from glacierfs.treehash import MIB, combine, leaf_digests

log = logging.getLogger(__name__)

BLOCK, SIZE = "block", "size"
VERIFIED_META = "verified"

LEAF_ROUNDS = 4
"""Times a read looks for one leaf (memory, a flight, the disk, a fetch) before it fails.
A leaf the index has and the disk has lost takes two; more means the cache keeps losing
it, and looping on would spin the trio loop."""

FetchPart = Callable[[Job, int, int], OutputPart]
"""``(job, start, end)`` -> the bytes; blocking, run in a worker thread."""


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


@dataclass
class ObjectState:
    """What is known of one cache object: its leaves' digests and how they were checked."""

    digests: dict[int, tuple[bytes, str]]


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
        self._verified: dict[str, str] = {}
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
        self._refuse_when_closing()
        if offset >= job.size or size <= 0:
            return b""
        first, stop = leaf_span(offset, size, job.size)
        state = await self._object(job)
        advice = prefetcher.advise(offset, size) if prefetcher else Advice(self._block_leaves, 0)
        ahead_stop = min(job.leaves, -(-(offset + size + advice.ahead) // MIB))
        self._schedule(job, state, first, max(stop, ahead_stop), advice.unit)
        pieces = [await self._leaf(job, state, i) for i in range(first, stop)]
        start = offset - first * MIB
        end = start + min(size, job.size - offset)
        self.stats.bytes_served += end - start
        if len(pieces) == 1:
            return pieces[0][start:end]
        return b"".join(pieces)[start:end]

    async def _object(self, job: Job) -> ObjectState:
        key = job.cache_key
        state = self._objects.get(key)
        if state is None:
            known = await trio.to_thread.run_sync(self._disk.leaves, key)
            state = self._objects.setdefault(key, ObjectState(dict(known)))
        return state

    async def _leaf(self, job: Job, state: ObjectState, index: int) -> memoryview:
        data = await self._find_leaf(job, state, index)
        self._check_strict(job, state, job.first_leaf + index)
        return data

    async def _find_leaf(self, job: Job, state: ObjectState, index: int) -> memoryview:
        key, leaf = job.cache_key, job.first_leaf + index
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
        if not self.settings.strict or self._verified.get(job.job_id) == "tree-hash":
            return
        if state.digests.get(leaf, (b"", SIZE))[1] != BLOCK:
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
        key, base = job.cache_key, job.first_leaf

        def idle(i: int) -> bool:
            leaf = base + i
            return (key, leaf) not in self._flights and self._memory.get(key, leaf) is None

        for i in range(first, min(stop, job.leaves)):
            if base + i in state.digests and idle(i):
                flight = Flight()
                self._launch(flight, [(key, base + i)], self._load, job, base + i, flight)
        for run in plan(
            first, stop, unit, job.leaves, lambda i: base + i not in state.digests and idle(i)
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
        key = job.cache_key
        try:
            async with self._disk_io:
                data = await trio.to_thread.run_sync(self._disk.get, key, leaf)
            if data is not None:
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
        key, first_leaf = job.cache_key, job.first_leaf + run[0]
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
                self._publish(key, state, flight, first_leaf, data, digests, how)
                with trio.CancelScope(shield=True):  # downloaded bytes are kept, even at unmount
                    async with self._disk_io:
                        await trio.to_thread.run_sync(
                            self._disk.put, key, first_leaf, data, digests, how
                        )
            finally:  # the budget covers the bytes until they are on disk: a slow disk
                for _ in range(run[1]):  # slows the fetches instead of piling up in memory
                    self._budget.release()
            with trio.CancelScope(shield=True):
                await self._check_whole(job, state)
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
        key: str,
        state: ObjectState,
        flight: Flight,
        first_leaf: int,
        data: bytes,
        digests: list[bytes],
        how: str,
    ) -> None:
        """Hand verified leaves to the readers waiting on the flight, and to memory."""
        view = memoryview(data)
        for n, digest in enumerate(digests):
            leaf = first_leaf + n
            piece = view[n * MIB : (n + 1) * MIB]
            flight.leaves[leaf] = piece
            self._memory.put(key, leaf, bytes(piece))  # a copy: the cache counts it
            state.digests[leaf] = (digest, how)
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
            return await retrying(attempt, self.settings.retry, what, counted)
        except IntegrityError:
            self.stats.checksum_failures += 1
            raise
        except JobExpired as error:
            what = f"archive {job.archive_id}" if job.kind == "archive" else "the inventory"
            raise JobExpired(
                f"job {job.job_id}: the output expired at the service; cached bytes are "
                f"still served, the rest needs a new retrieval job of {what}"
            ) from error

    def _fetch_and_hash(self, job: Job, start: int, end: int) -> tuple[bytes, list[bytes], str]:
        """In a worker thread: one GET, its leaf hashes, and their check."""
        part = self._fetch_part(job, start, end)
        if job.archive_id and part.description is not None:
            self.descriptions[job.archive_id] = part.description
        self.stats.requests += 1
        self.stats.bytes_fetched += len(part.data)
        digests = leaf_digests(part.data)
        if part.tree_hash is None:
            return part.data, digests, SIZE
        received = combine(digests).hex()
        if received != part.tree_hash:
            raise IntegrityError(
                f"job {job.job_id} bytes {start}-{end}: checksum mismatch: "
                f"expected {part.tree_hash}, received {received}"
            )
        return part.data, digests, BLOCK

    # --- verification of whole outputs ------------------------------------------------

    async def _check_whole(self, job: Job, state: ObjectState) -> None:
        """Once every leaf of an output is known, check their root against the job's."""
        if job.job_id in self._verified and self._verified[job.job_id] != "blocks":
            return
        leaves = range(job.first_leaf, job.first_leaf + job.leaves)
        if any(leaf not in state.digests for leaf in leaves):
            return
        known = [state.digests[leaf] for leaf in leaves]
        verdict = self._verdict(job, known)
        self._verified[job.job_id] = verdict
        await trio.to_thread.run_sync(self._disk.put_meta, VERIFIED_META, job.job_id, verdict)
        if verdict == "mismatch":
            log.error(
                "job %s: the whole output does not match the job's tree hash %s; "
                "leaves only checked by size are dropped and will be fetched again",
                job.job_id,
                job.tree_hash,
            )
            for leaf, (_, how) in zip(leaves, known, strict=True):
                if how == SIZE:
                    state.digests.pop(leaf, None)
                    self._memory.discard(job.cache_key, leaf)
                    await trio.to_thread.run_sync(self._disk.drop, job.cache_key, leaf)
        elif verdict == "tree-hash":
            log.info("job %s: whole output verified against its tree hash", job.job_id)

    @staticmethod
    def _verdict(job: Job, known: list[tuple[bytes, str]]) -> str:
        if job.tree_hash is not None:
            root = combine([digest for digest, _ in known]).hex()
            return "tree-hash" if root == job.tree_hash else "mismatch"
        return "blocks" if known and all(how == BLOCK for _, how in known) else SIZE

    async def verification(self, job: Job) -> str:
        """``tree-hash``, ``mismatch``, ``blocks``, ``size``, or ``none`` (nothing read)."""
        if job.job_id not in self._verified:
            saved = await trio.to_thread.run_sync(self._disk.get_meta, VERIFIED_META, job.job_id)
            if isinstance(saved, str):
                self._verified[job.job_id] = saved
            else:
                await self._check_whole(job, await self._object(job))
        if job.job_id in self._verified:
            return self._verified[job.job_id]
        state = await self._object(job)
        hows = {
            state.digests[leaf][1]
            for leaf in range(job.first_leaf, job.first_leaf + job.leaves)
            if leaf in state.digests
        }
        if not hows:
            return "none"
        return "blocks" if hows == {BLOCK} else SIZE

    async def cached_bytes(self, job: Job) -> int:
        """How much of the output is in the cache."""
        state = await self._object(job)
        count = sum(
            1
            for leaf in range(job.first_leaf, job.first_leaf + job.leaves)
            if leaf in state.digests
        )
        if count and job.first_leaf + job.leaves - 1 in state.digests:
            return (count - 1) * MIB + (job.size - (job.leaves - 1) * MIB)
        return count * MIB

    def cache_usage(self) -> CacheUsage:
        return self._disk.usage()

    async def hydrate(self, job: Job) -> None:
        """Fetch every leaf of the output not yet cached; raise the first failure."""
        state = await self._object(job)
        unit = self.settings.max_request // MIB
        self._schedule(job, state, 0, job.leaves, unit)
        for i in range(job.leaves):
            flight = self._flights.get((job.cache_key, job.first_leaf + i))
            if flight is not None:
                await flight.done.wait()
                if flight.error is not None:
                    raise flight.error
