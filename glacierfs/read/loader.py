"""The work of flights: leaves fetched from the service, handed out, stored and judged.

Design.

* The unit of caching and verification is the 1 MiB *leaf* of Glacier's tree hash.
  Archive bytes live in the cache in archive coordinates (``job.first_leaf + i`` for
  output leaf ``i``), so that every job of the same archive can share them; requests
  are planned in output coordinates (:mod:`glacierfs.ranges`), since that is what the
  service checks alignment against.
* Leaves on disk are read by the reader itself, inline (:mod:`glacierfs.cache.local`);
  the others are fetched in aligned runs (:mod:`glacierfs.read.fetch`), under the byte
  budget (:mod:`glacierfs.read.budget`). Fetched leaves reach later readers through the
  disk cache (the page cache of its files); only leaves the disk cache could not take
  (a full or failing disk) are kept in memory, so that their readers do not fetch them
  again.
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
        self._budget = ByteBudget(max(settings.memory_budget, settings.max_request) // MIB)

    def schedule(self, job: Job, state: ObjectState, first: int, stop: int, unit: int) -> None:
        """Start fetching, in aligned runs, the leaves of ``first..stop-1`` that are not
        cached for the job, in memory or on the way (cached ones are read by the reader)."""
        self._flights.refuse_when_closing()
        key, base = slot(job), job.first_leaf

        def missing(i: int) -> bool:
            leaf = base + i
            return (
                not usable(job, state, leaf)
                and (key, leaf) not in self._flights
                and self._memory.get(key, leaf) is None
            )

        for run in plan(first, stop, unit, job.leaves, missing):
            flight = Flight()
            leaves = [(key, base + i) for i in range(run[0], run[0] + run[1])]
            self._flights.launch(flight, leaves, self._fly, job, state, run, flight)

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
                    stored = await self._disk.put(
                        job.cache_key, first_leaf, data, digests, how, owner=job.owner
                    )
                if not stored:  # readers of these leaves find them in memory, not on disk
                    for n in range(len(digests)):
                        self._memory.put(key, first_leaf + n, data[n * MIB : (n + 1) * MIB])
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
        """Hand verified leaves to the readers waiting on the flight."""
        view = memoryview(data)
        for n, digest in enumerate(digests):
            leaf = first_leaf + n
            piece = view[n * MIB : (n + 1) * MIB]
            flight.leaves[leaf] = piece
            state.digests[leaf] = after_put(job, state, leaf, digest, how)
            self._trust.see(job, leaf, digest)
        flight.done.set()

    def _drop_in_flight(self, job_id: str, label: str) -> None:
        ranges = self.stats.in_flight.get(job_id, [])
        if label in ranges:
            ranges.remove(label)
        if not ranges:
            self.stats.in_flight.pop(job_id, None)
