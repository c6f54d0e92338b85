"""The work of flights: leaves brought into memory from the disk cache or the service.

Design.

* The unit of caching and verification is the 1 MiB *leaf* of Glacier's tree hash.
  Archive bytes live in the cache in archive coordinates (``job.first_leaf + i`` for
  output leaf ``i``), so that every job of the same archive can share them; requests
  are planned in output coordinates (:mod:`glacierfs.ranges`), since that is what the
  service checks alignment against.
* Leaves on disk are read (and checked) by background flights of one leaf each, so that
  a sequential reader's next leaves load in parallel; the others are fetched in aligned
  runs (:mod:`glacierfs.read.fetch`), under the byte budget (:mod:`glacierfs.read.budget`).
* When every leaf of an output is good for its job, their root is compared with the
  job's record without reading any data again, before the leaves that complete it are
  handed out: a mismatch fails that read and every later one with EIO
  (:mod:`glacierfs.read.trust`).
* Downloaded bytes are kept, even at unmount: a disk write already started is
  finished, shielded, so none is left half done. The trio loop never blocks: network,
  hashing and disk run in threads.
"""

from __future__ import annotations

import logging

import trio

from glacierfs.cache.aio import AsyncDisk
from glacierfs.cache.memory import MemoryCache
from glacierfs.errors import GlacierfsError, ShuttingDown
from glacierfs.jobs import Job
from glacierfs.ranges import Run, byte_range, plan
from glacierfs.read.budget import ByteBudget
from glacierfs.read.fetch import Fetched, Fetcher
from glacierfs.read.flights import Flight, Flights
from glacierfs.read.ledger import MISMATCH
from glacierfs.read.scheduler import REQUEST, Stream, Ticket
from glacierfs.read.settings import ReaderSettings
from glacierfs.read.trust import ObjectState, Trust, after_put, slot, usable
from glacierfs.stats import Stats
from glacierfs.treehash import MIB

log = logging.getLogger(__name__)


class Loader:
    """Starts the flights that bring a job's leaves into memory, and runs them."""

    def __init__(
        self,
        flights: Flights,
        fetcher: Fetcher,
        disk: AsyncDisk,
        memory: MemoryCache,
        trust: Trust,
        settings: ReaderSettings,
        stats: Stats,
    ) -> None:
        self._flights, self._fetcher, self._disk = flights, fetcher, disk
        self._memory, self._trust, self.stats = memory, trust, stats
        self._budget = ByteBudget(max(settings.memory_budget, settings.max_request) // MIB)

    def schedule(
        self,
        job: Job,
        state: ObjectState,
        first: int,
        stop: int,
        unit: int,
        *,
        from_disk: bool = True,
        stream: Stream | None = None,
        demand: bool = True,
    ) -> None:
        """Start loading the leaves of ``first..stop-1`` that are not in memory or on the way.

        Leaves on disk are read (and checked) by background tasks, so that a sequential
        reader's next leaves load in parallel (unless not ``from_disk``: a random read
        takes only its bytes of them); the others are fetched in aligned runs, each with
        its ticket for the mount's connections: of ``stream``, and ``demand`` when a reader
        waits on them (:mod:`glacierfs.read.scheduler`).
        """
        self._flights.refuse_when_closing()
        key, base = slot(job), job.first_leaf

        def idle(i: int) -> bool:
            leaf = base + i
            return (key, leaf) not in self._flights and self._memory.get(key, leaf) is None

        for i in range(first, min(stop, job.leaves) if from_disk else first):
            if usable(job, state, base + i) and idle(i):
                flight = Flight()
                self._flights.launch(flight, [(key, base + i)], self._load, job, base + i, flight)
        for run in plan(
            first,
            stop,
            unit,
            job.leaves,
            lambda i: not usable(job, state, base + i) and idle(i),
        ):
            flight = Flight()
            leaves = [(key, base + i) for i in range(run[0], run[0] + run[1])]
            ticket = Ticket(stream, demand)
            self._fetcher.scheduler.tag(flight, ticket)
            token = REQUEST.set(ticket)  # the flight's task inherits it, and its fetch uses it
            try:
                self._flights.launch(flight, leaves, self._fly, job, state, run, flight)
            finally:
                REQUEST.reset(token)

    async def _load(self, job: Job, leaf: int, flight: Flight) -> None:
        """Read one leaf from disk into memory; a miss leaves the flight empty."""
        key = slot(job)
        try:
            found = await self._disk.get_leaf(job.cache_key, leaf, job.owner)
            if found is not None:
                data = found[0]
                self._trust.see(job, leaf, found[1])
                self._memory.put(key, leaf, data)
                flight.leaves[leaf] = memoryview(data)
        except trio.Cancelled:
            flight.fail(ShuttingDown("the mount is shutting down"))
            raise
        finally:
            self._flights.land(flight, [(key, leaf)])

    async def _fly(self, job: Job, state: ObjectState, run: Run, flight: Flight) -> None:
        """Fetch one aligned run of leaves, hand them out, store them, judge the output."""
        key, first_leaf = slot(job), job.first_leaf + run[0]
        label = "{}-{}".format(*byte_range(run, job.size))
        try:
            # the budget covers the bytes until they are on disk: a slow disk
            # slows the fetches instead of piling up in memory
            async with self._budget.hold(run[1]):
                data, digests, how = await self._fetch(job, state, run, label)
                self._publish(job, state, flight, first_leaf, data, digests, how)
                with trio.CancelScope(shield=True):  # downloaded bytes are kept, even at unmount
                    await self._disk.put(
                        job.cache_key, first_leaf, data, digests, how, owner=job.owner
                    )
            with trio.CancelScope(shield=True):
                await self._trust.check_whole(job, state)
        except GlacierfsError as error:
            flight.error = error
        except trio.Cancelled:
            flight.fail(ShuttingDown("the mount is shutting down"))
            raise
        except Exception:  # a bug: logged, its readers get EIO, the mount lives on
            log.exception("job %s bytes %s: unexpected error in a fetch", job.job_id, label)
            flight.fail(GlacierfsError(f"job {job.job_id} bytes {label}: unexpected error"))
        finally:
            self._flights.land(flight, [(key, first_leaf + n) for n in range(run[1])])

    async def _fetch(self, job: Job, state: ObjectState, run: Run, label: str) -> Fetched:
        """The run's bytes, checked; and if they complete the output, the output checked
        against the job's record (a mismatch refuses the job: IntegrityError)."""
        start, end = byte_range(run, job.size)
        self.stats.in_flight.setdefault(job.job_id, []).append(label)
        try:
            data, digests, how = await self._fetcher.fetch(job, start, end, self._trust.ledger)
        finally:
            self._drop_in_flight(job.job_id, label)
        first = job.first_leaf + start // MIB
        landing = {
            first + n: after_put(job, state, first + n, digest, how)
            for n, digest in enumerate(digests)
        }
        if await self._trust.judge(job, state, landing) == MISMATCH:
            self._trust.ledger.refuse(job)
        return data, digests, how

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
            self._trust.see(job, leaf, digest)
        flight.done.set()

    def _drop_in_flight(self, job_id: str, label: str) -> None:
        ranges = self.stats.in_flight.get(job_id, [])
        if label in ranges:
            ranges.remove(label)
        if not ranges:
            self.stats.in_flight.pop(job_id, None)
