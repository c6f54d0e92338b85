"""The work of flights: leaves fetched from the service, handed out, stored and judged.

Design.

* The unit of caching and verification is the 1 MiB *leaf* of Glacier's tree hash.
  Archive bytes live in the cache in archive coordinates (``job.first_leaf + i`` for
  output leaf ``i``), so that every job of the same archive can share them; requests
  are planned in output coordinates (:mod:`glacierfs.ranges`), since that is what the
  service checks alignment against.
* Leaves on disk are read by the reader itself, inline (:mod:`glacierfs.cache.local`);
  the others are fetched in aligned runs, streamed into the disk cache
  (:mod:`glacierfs.read.fetch`), where the flight's waiters then read them. When the
  disk cannot take a run, it is held in memory for its waiters, under the byte budget
  (:mod:`glacierfs.read.budget`), and logged once.
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
from contextlib import suppress

import trio

from glacierfs.cache.aio import AsyncDisk
from glacierfs.cache.memory import MemoryCache
from glacierfs.errors import GlacierfsError, ShuttingDown
from glacierfs.jobs import Job
from glacierfs.logs import LogOnce
from glacierfs.ranges import Run, byte_range, plan
from glacierfs.read.budget import ByteBudget
from glacierfs.read.fetch import DiskRefused, Fetcher, Landed, Sink
from glacierfs.read.flights import Flight, Flights
from glacierfs.read.ledger import MISMATCH
from glacierfs.read.scheduler import REQUEST, Stream, Ticket
from glacierfs.read.settings import ReaderSettings
from glacierfs.read.trust import ObjectState, Trust, after_put, slot, usable
from glacierfs.stats import Stats
from glacierfs.treehash import MIB

log = logging.getLogger(__name__)


class Loader:
    """Starts the flights that fetch a job's leaves, and runs them."""

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
        # only for runs held in memory, when the disk cannot take them
        self._budget = ByteBudget(max(settings.memory_budget, settings.max_request) // MIB)
        self._held_log = LogOnce(log)
        self._streams = not settings.holds_responses  # see ReaderSettings.for_cache

    def schedule(
        self,
        job: Job,
        state: ObjectState,
        first: int,
        stop: int,
        unit: int,
        *,
        stream: Stream | None = None,
        demand: bool = True,
    ) -> None:
        """Start fetching, in aligned runs, the leaves of ``first..stop-1`` that are not
        cached for the job, in memory or on the way (cached ones are read by the reader),
        each run with its ticket for the mount's connections: of ``stream``, and
        ``demand`` when a reader waits on them (:mod:`glacierfs.read.scheduler`)."""
        self._flights.refuse_when_closing()
        key, base = slot(job), job.first_leaf

        def missing(i: int) -> bool:
            leaf = base + i
            return (
                not usable(job, state, leaf)
                and (key, leaf) not in self._flights
                and self._memory.get(key, leaf) is None
            )

        # a streamed fetch takes its connection first thing; a held one waits on the
        # memory budget first, and must not hold a connection meanwhile
        streams = self._streams and self._disk.disk.writable
        for run in plan(first, stop, unit, job.leaves, missing):
            flight = Flight()
            leaves = [(key, base + i) for i in range(run[0], run[0] + run[1])]
            ticket = Ticket(stream, demand)
            self._fetcher.scheduler.tag(flight, ticket)
            if streams:  # its place among the connections, in the order planned
                self._fetcher.scheduler.reserve(ticket)
            token = REQUEST.set(ticket)  # the flight's task inherits it, and its fetch uses it
            try:
                self._flights.launch(flight, leaves, self._fly, job, state, run, flight)
            finally:
                REQUEST.reset(token)

    async def _fly(self, job: Job, state: ObjectState, run: Run, flight: Flight) -> None:
        """Fetch one aligned run of leaves into the disk cache, hand them out, judge the
        output. When the disk cannot take them, the run is held in memory (under the
        byte budget) for its waiters only."""
        key, first_leaf = slot(job), job.first_leaf + run[0]
        label = "{}-{}".format(*byte_range(run, job.size))
        try:
            landed = None
            if self._streams and self._disk.disk.writable:
                with suppress(DiskRefused):
                    landed = await self._fetch(job, state, run, label, streamed=True)
            if landed is not None:
                await self._land(job, state, flight, first_leaf, landed)
            else:
                if self._streams and self._held_log.first("held"):
                    log.info("the disk takes no fetched leaves: held in memory for their readers")
                async with self._budget.hold(run[1]):
                    landed = await self._fetch(job, state, run, label, streamed=False)
                    await self._land(job, state, flight, first_leaf, landed)
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
            ticket = REQUEST.get()
            if ticket is not None:
                self._fetcher.scheduler.unreserve(ticket)  # when no request took it up
            self._flights.land(flight, [(key, first_leaf + n) for n in range(run[1])])

    async def _fetch(
        self, job: Job, state: ObjectState, run: Run, label: str, *, streamed: bool
    ) -> Landed:
        """The run's bytes, checked (and, ``streamed``, written to the disk cache); and if
        they complete the output, the output checked against the job's record (a
        mismatch refuses the job: IntegrityError)."""
        start, end = byte_range(run, job.size)
        first = job.first_leaf + start // MIB
        sink = Sink(self._disk.disk, job.cache_key, first, job.owner) if streamed else None
        self.stats.in_flight.setdefault(job.job_id, []).append(label)
        try:
            landed = await self._fetcher.fetch(job, start, end, self._trust.ledger, sink)
        finally:
            self._drop_in_flight(job.job_id, label)
        landing = {
            first + n: after_put(job, state, first + n, landed.digests[n], landed.how)
            for n in sorted(landed.stored | set(landed.held))
        }
        if await self._trust.judge(job, state, landing) == MISMATCH:
            self._trust.ledger.refuse(job)
        return landed

    async def _land(
        self, job: Job, state: ObjectState, flight: Flight, first_leaf: int, landed: Landed
    ) -> None:
        """Hand verified leaves to the flight's waiters: those stored, from the disk cache;
        those held, from memory. Then try the disk with the held ones (shielded: bytes
        downloaded are kept, even at unmount)."""
        for n in sorted(landed.stored | set(landed.held)):
            leaf, digest = first_leaf + n, landed.digests[n]
            if n in landed.held:  # the memory cache keeps it for the next reads (no copy)
                flight.leaves[leaf] = memoryview(landed.held[n])
                self._memory.put(slot(job), leaf, landed.held[n])
            else:
                flight.stored.add(leaf)
            state.digests[leaf] = after_put(job, state, leaf, digest, landed.how)
            self._trust.see(job, leaf, digest)
        # wake the waiters, and let reads of the stored leaves find them on disk from now
        self._flights.land(
            flight, [(slot(job), first_leaf + n) for n in range(len(landed.digests))]
        )
        with trio.CancelScope(shield=True):
            for n, data in sorted(landed.held.items()):
                await self._disk.put(
                    job.cache_key,
                    first_leaf + n,
                    data,
                    [landed.digests[n]],
                    landed.how,
                    owner=job.owner,
                )

    def _drop_in_flight(self, job_id: str, label: str) -> None:
        ranges = self.stats.in_flight.get(job_id, [])
        if label in ranges:
            ranges.remove(label)
        if not ranges:
            self.stats.in_flight.pop(job_id, None)
