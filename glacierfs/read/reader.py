"""The read path: from ``(job, offset, size)`` to bytes that are verified or refused.

Design. :class:`Reader` is the one door of the read path; its parts live beside it:

* :mod:`.flights`: single flight, one request in progress per leaf, and how the mount's
  end wakes every waiter;
* :mod:`.loader`: what a flight does, a run of leaves fetched, handed out, stored and
  judged;
* :mod:`.fetch`: the GET in a worker thread, the leaf hashes and the header check;
* :mod:`.budget`: the mount-wide bound on bytes requested and not yet stored;
* :mod:`.trust`: which job a cached leaf may serve, and whole-output verdicts.

A read whose leaves are all cached for the job, none in flight, is served from the disk
cache's data file on the trio thread by :attr:`Reader.read_now` (:mod:`.warm`), no ``await``
(:mod:`glacierfs.cache.local`: the bytes asked for, one ``preadv`` from the page cache,
granules of 64 KiB checked on their first read in the mount); the FUSE adapter tries it
before any coroutine. Only a miss of the page cache takes a worker thread; a streak's
cached leaves ahead are hinted to the page cache. Any other read looks for each leaf in
memory (leaves the disk cache could not take), then in a flight, then on disk, and only
then fetches it, a bounded number of times (:data:`LEAF_ROUNDS`): no loop spins.

Each leaf's digest and how it was verified (``block``: matched a response checksum;
``size``: only its length could be checked, where no checksum is due) are kept with it,
and the jobs it is good for: a leaf serves the job that fetched it, and every job of its
archive once the archive's tree hash proves the archive whole. Leaves in memory and in
flight are the job's own (keyed by :func:`glacierfs.read.trust.slot`); only the disk
cache's index shares them; a leaf read from it is served only if its row's digest is
the one the job was given for it. With ``verify=strict`` a leaf no checksum
covers is refused.
"""

from __future__ import annotations

from collections.abc import Sequence

import trio

from glacierfs.cache.aio import AsyncDisk
from glacierfs.cache.disk import CacheUsage
from glacierfs.cache.memory import MemoryCache
from glacierfs.client import GlacierClient
from glacierfs.config import Options
from glacierfs.errors import LeafUnavailable
from glacierfs.jobs import Job
from glacierfs.ranges import leaf_span
from glacierfs.read.fetch import Fetcher, FetchPart
from glacierfs.read.flights import Flights
from glacierfs.read.ledger import TREE_HASH
from glacierfs.read.link import LinkModel
from glacierfs.read.loader import Loader
from glacierfs.read.prefetch import Pace, Prefetcher
from glacierfs.read.requests import Requests
from glacierfs.read.settings import ReaderSettings
from glacierfs.read.trust import ObjectState, Trust, present, slot, usable
from glacierfs.read.verdicts import Verdicts
from glacierfs.read.warm import WarmReads, cached_digests, refuse_unverifiable
from glacierfs.retry import RetryPolicy
from glacierfs.stats import Stats
from glacierfs.treehash import MIB

__all__ = ["LEAF_ROUNDS", "FetchPart", "Reader", "ReaderSettings"]

LEAF_ROUNDS = 4
"""Times a read looks for one leaf (memory, a flight, the disk, a fetch) before it fails.
A leaf the index has and the disk has lost takes two; more means the cache keeps losing
it, and looping on would spin the trio loop."""


class Reader:
    """Verified bytes of jobs' outputs, from memory, the disk cache or the service.

    Built by :meth:`create`, which takes the nursery its background work runs in.
    """

    @classmethod
    async def create(
        cls,
        fetch_part: FetchPart,
        disk: AsyncDisk,
        memory: MemoryCache,
        settings: ReaderSettings,
        stats: Stats,
        *,
        nursery: trio.Nursery,
    ) -> Reader:
        """A reader whose flights run in ``nursery``: cancelling it ends them (call
        :meth:`close` first, so that waiters outside it wake at once)."""
        disk.local.hint_in(nursery)
        capacity = (await disk.usage()).capacity  # bounds read-ahead: an eighth of it
        return cls(fetch_part, disk, memory, settings, stats, Flights(nursery), capacity)

    @classmethod
    async def for_client(
        cls,
        client: GlacierClient,
        disk: AsyncDisk,
        options: Options,
        retry: RetryPolicy,
        *,
        nursery: trio.Nursery,
    ) -> Reader:
        """The reader a mount, or ``retrieve`` saving outputs, reads a vault's jobs with."""
        return await cls.create(
            lambda job, start, end: client.open_output(job.job_id, start, end, job.size),
            disk,
            MemoryCache(options.memory_cache),
            ReaderSettings.from_options(options, retry),
            Stats(),
            nursery=nursery,
        )

    def __init__(
        self,
        fetch_part: FetchPart,
        disk: AsyncDisk,
        memory: MemoryCache,
        settings: ReaderSettings,
        stats: Stats,
        flights: Flights,
        capacity: int,
    ) -> None:
        settings = settings.for_cache(capacity)
        self._disk = disk
        self._local = disk.local
        self._memory = memory
        self.settings = settings
        self.stats = stats
        self._flights = flights
        self._objects: dict[str, ObjectState] = {}
        self._sighted: dict[str, trio.Event] = {}  # job ident -> set once the job is looked at
        self.trust = Trust(disk, memory)
        self.verdicts = Verdicts(self._object, self.trust)  # opens, archive files (.verdicts)
        self._fetcher = Fetcher(fetch_part, settings.connections, settings.retry, stats)
        self._loader = Loader(
            self._flights, self._fetcher, disk, memory, self.trust, settings, stats
        )
        self._block_leaves = settings.block_size // MIB
        self._requests = Requests(
            self._loader, flights, self._fetcher, memory, disk.local, settings
        )
        self._warm = WarmReads(
            self._objects, self._sighted, flights, self.trust, disk.local,
            self._requests, stats, settings.strict,
        )  # fmt: skip
        self.read_now = self._warm.read
        self.recycle_after_reply = disk.local.pool.recycle_after_reply
        """``data``, returned by :meth:`read` or :attr:`read_now`, goes to pyfuse3 now,
        which replies before any other task runs: its buffer may then serve another
        read. Only the FUSE adapter may say so (other callers keep what they got)."""
        """The read when the disk cache serves it at once, else None (:mod:`.warm`)."""

    @property
    def link(self) -> LinkModel:
        """What the mount has measured of its link: first-byte latency, per-connection rate."""
        return self._fetcher.link

    @property
    def descriptions(self) -> dict[str, str]:
        """Archive id -> description, from the headers of the responses so far."""
        return self._fetcher.descriptions

    def close(self) -> None:
        """The mount is ending: refuse new work, wake every waiter with ShuttingDown.

        Call it before cancelling the nursery, so that reads waiting outside it (FUSE
        requests, worker threads) end now rather than when their flights would.
        """
        self._flights.close()
        self._local.close()

    # --- reading ---------------------------------------------------------------------

    async def read(
        self, job: Job, offset: int, size: int, prefetcher: Prefetcher | None = None
    ) -> bytes | memoryview:
        """Bytes ``[offset, offset + size)`` of the output, checked for the job."""
        data = self.read_now(job, offset, size, prefetcher)
        if data is not None:
            return data
        self._flights.refuse_when_closing()
        state, sighted = self._objects.get(job.cache_key), self._sighted.get(job.ident)
        if state is None or sighted is None or not sighted.is_set():
            state = await self._object(job)
        self.trust.ledger.refuse(job)  # past the end of a condemned output too
        if offset >= job.size or size <= 0:
            return b""
        first, stop = leaf_span(offset, size, job.size)
        advice = prefetcher.advise(offset, size, job.leaves, self.pace) if prefetcher else None
        digests = cached_digests(job, state, self._flights, first, stop)
        if digests is None:
            self._requests.demand(job, state, first, stop, prefetcher)
        if prefetcher is not None and advice is not None and advice.ahead:
            self._requests.ahead(job, state, stop, prefetcher.stream, advice)
        end = min(offset + size, job.size)
        if digests is not None:  # from the disk cache, in a worker thread when need be
            data = await self._from_local(job, state, first, offset, end, digests)
            if data is not None:
                self._warm.handed(job, state, first, digests, self.trust.ledger.verdict(job))
                self.stats.served_from_cache += end - offset
        if data is None:
            pieces: list[bytes | memoryview] = []
            for i in range(first, stop):
                start, stop_in = max(offset - i * MIB, 0), min(end - i * MIB, MIB)
                pieces.append(await self._piece(job, state, i, start, stop_in))
            data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        await self.trust.check_handed(job)
        self.stats.bytes_served += end - offset
        return data

    async def _from_local(
        self, job: Job, state: ObjectState, first: int, offset: int, end: int, digests: list[bytes]
    ) -> memoryview | None:
        """Bytes ``[offset, end)`` from the disk cache (:mod:`glacierfs.cache.local`), where
        they could not be read at once; None if the leaves changed meanwhile."""
        base = job.first_leaf * MIB
        data = await self._local.read(job.cache_key, base + offset, base + end, digests)
        for n, digest in enumerate(digests):
            now = state.digests.get(job.first_leaf + first + n)
            if now is None or now.digest != digest:  # replaced meanwhile
                return None
        return data

    async def _piece(
        self, job: Job, state: ObjectState, index: int, start: int, stop: int
    ) -> bytes | memoryview:
        """Bytes ``[start, stop)`` of output leaf ``index``: from memory (leaves the disk
        cache could not take), the disk cache, a flight, or a fetch, in that order, a
        bounded number of times (:data:`LEAF_ROUNDS`)."""
        key, leaf = slot(job), job.first_leaf + index
        for _ in range(LEAF_ROUNDS):
            data = self._memory.get(key, leaf)
            if data is not None:
                self.stats.served_from_cache += stop - start
                self._check_strict(job, state, leaf)
                return memoryview(data)[start:stop]
            piece = await self._ranged(job, state, index, start, stop)
            if piece is not None:
                return piece
            if (key, leaf) not in self._flights:
                self._loader.schedule(job, state, index, index + 1, self._block_leaves)
            flight = self._flights.get((key, leaf))
            if flight is None:
                continue
            await flight.done.wait()
            if flight.error is not None:
                raise flight.error
            if leaf in flight.leaves:
                self._check_strict(job, state, leaf)
                return flight.leaves[leaf][start:stop]
        raise LeafUnavailable(
            f"job {job.job_id}: leaf {leaf} was lost {LEAF_ROUNDS} times between "
            "being loaded and being read"
        )

    def pace(self) -> Pace:
        """What the link and the cache allow each stream now (:mod:`.prefetch`)."""
        return self._requests.pace()

    async def _ranged(
        self, job: Job, state: ObjectState, index: int, start: int, stop: int
    ) -> bytes | memoryview | None:
        """Bytes ``[start, stop)`` of output leaf ``index`` from the disk cache, when the
        leaf is there for the job and not on the way; else None. As the fast path reads
        (a flight's waiters too), else in a worker thread that checks the leaf whole."""
        key, leaf = slot(job), job.first_leaf + index
        row = state.digests.get(leaf)
        if row is None or not row.usable_by(job.owner) or (key, leaf) in self._flights:
            return None
        at = leaf * MIB
        data: bytes | memoryview | None = await self._local.read(
            job.cache_key, at + start, at + stop, [row.digest]
        )
        if data is None:
            data = await self._disk.read_range(job.cache_key, leaf, start, stop - start, job.owner)
        if data is None:
            self._forget(state, leaf)  # evicted or damaged: fetched again
            return None
        now = state.digests.get(leaf)
        if now is None or now.digest != row.digest:  # replaced meanwhile: which bytes?
            return None
        self.trust.see(job, leaf, row.digest)
        self._check_strict(job, state, leaf)
        self.stats.served_from_cache += len(data)
        return data

    async def _object(self, job: Job) -> ObjectState:
        """The job's cache object, once what is known of the job has been looked at."""
        key = job.cache_key
        state = self._objects.get(key)
        if state is None:
            known = await self._disk.leaves(key)
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

    def _forget(self, state: ObjectState, leaf: int) -> None:
        if state.digests.pop(leaf, None) is not None:
            self.stats.disk_cache_misses += 1

    def _check_strict(self, job: Job, state: ObjectState, leaf: int) -> None:
        if self.settings.strict and self.trust.ledger.verdict(job) != TREE_HASH:
            refuse_unverifiable(job, state, leaf)

    # --- what is known of a job -------------------------------------------------------

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

    async def cached_bytes(self, job: Job, through: Sequence[Job] = ()) -> int:
        """How much of the output is in the cache, good for the job (or, for an archive's
        ``whole``, for one of the jobs ``through`` which its file reads)."""
        leaves = await self.cached_leaves(job, through)
        count, last = len(leaves), job.first_leaf + job.leaves - 1
        if count and leaves[-1] == last:
            return (count - 1) * MIB + (job.size - (job.leaves - 1) * MIB)
        return count * MIB

    async def cached_leaves(self, job: Job, through: Sequence[Job] = ()) -> list[int]:
        """The cache leaves (archive coordinates) of the output there, good for the job
        (or one of ``through``); walked through the rows (:func:`present`)."""
        state = await self._object(job)
        owners = [job.owner, *(other.owner for other in through)]
        return [
            leaf for leaf in present(job, state) if any(map(state.digests[leaf].usable_by, owners))
        ]

    async def leaf_cached(self, job: Job, leaf: int) -> bool:
        """Whether cache leaf ``leaf`` (archive coordinates) is there and good for the job."""
        return usable(job, await self._object(job), leaf)

    def local_reads(self) -> dict[str, int]:
        """Reads served from the disk cache inline, and in a worker thread."""
        return self._local.counts()

    async def cache_usage(self) -> CacheUsage:
        return await self._disk.usage()

    async def hydrate(self, job: Job) -> None:
        """Fetch every leaf of the output not yet cached; raise the first failure."""
        state = await self._object(job)
        self._requests.hydrate(job, state)
        for i in range(job.leaves):
            flight = self._flights.get((slot(job), job.first_leaf + i))
            if flight is not None:
                await flight.done.wait()
                if flight.error is not None:
                    raise flight.error
