"""What a read asks of the network and of the page cache: demand, read-ahead, hints.

Design. A read whose leaves are not all cached for its job *demands* them: aligned
requests of one block each, ahead of any read-ahead in the mount's scheduler
(:mod:`.scheduler`), and a read-ahead request already covering one is urged to the
front. A reader with a streak (:mod:`.prefetch`) then gets its read-ahead requests,
sized by :meth:`Requests.pace` from the link model (:mod:`.link`) and capped by the
disk cache (:meth:`~.settings.ReaderSettings.read_ahead_ceiling`); the leaves of its
window already in the disk cache are hinted to the page cache instead
(:data:`~glacierfs.config.DISK_READ_AHEAD`), so that its reads are served inline.
"""

from __future__ import annotations

import logging

from glacierfs.cache.local import LocalReads
from glacierfs.cache.memory import MemoryCache
from glacierfs.config import DISK_READ_AHEAD
from glacierfs.jobs import Job
from glacierfs.read.fetch import Fetcher
from glacierfs.read.flights import Flights
from glacierfs.read.link import LinkModel
from glacierfs.read.loader import Loader
from glacierfs.read.prefetch import TAIL_SECONDS, Advice, Pace, Prefetcher
from glacierfs.read.scheduler import Stream
from glacierfs.read.settings import ReaderSettings
from glacierfs.read.trust import ObjectState, slot, usable
from glacierfs.treehash import MIB

log = logging.getLogger(__name__)


class Requests:
    """The requests and hints of a mount's reads (its :class:`~.reader.Reader`'s part)."""

    def __init__(
        self,
        loader: Loader,
        flights: Flights,
        fetcher: Fetcher,
        memory: MemoryCache,
        local: LocalReads,
        settings: ReaderSettings,
    ) -> None:
        self._loader, self._flights, self._fetcher = loader, flights, fetcher
        self._memory, self._local, self._settings = memory, local, settings
        self._block_leaves = settings.block_size // MIB
        self._ceiling = settings.read_ahead_ceiling()

    def pace(self) -> Pace:
        """What the link and the cache allow each stream now (:mod:`.prefetch`)."""
        return pace_of(self._fetcher.link, self._settings, self._ceiling)

    def demand(
        self, job: Job, state: ObjectState, first: int, stop: int, prefetcher: Prefetcher | None
    ) -> None:
        """A read waits on leaves not cached: fetch them as demand, a block each, and urge
        a request ahead that already covers them (:mod:`.scheduler`)."""
        key, base = slot(job), job.first_leaf
        stream = prefetcher.stream if prefetcher else None
        self._loader.schedule(job, state, first, stop, self._block_leaves, stream=stream)
        for i in range(first, stop):
            flight = self._flights.get((key, base + i))
            if flight is not None and self._memory.get(key, base + i) is None:
                self._fetcher.scheduler.urge(flight)
                if prefetcher is not None and not usable(job, state, base + i):
                    prefetcher.waited()  # on the network, not the disk

    def ahead(
        self, job: Job, state: ObjectState, stop: int, stream: Stream, advice: Advice
    ) -> None:
        """A streak: its read-ahead requests (those not cached), then its cached leaves
        within :data:`~glacierfs.config.DISK_READ_AHEAD` hinted to the page cache."""
        if advice.runs and log.isEnabledFor(logging.DEBUG):  # what the window does, live
            log.debug(
                "job %s: %d MiB ahead, requests (leaf, leaves) %s; in flight %d of %d",
                job.job_id,
                advice.ahead // MIB,
                list(advice.runs),
                self._fetcher.scheduler.in_use,
                self._fetcher.scheduler.capacity,
            )
        for start, count in advice.runs:
            unit = 1 << (count - 1).bit_length()
            self._loader.schedule(
                job, state, start, start + count, unit, stream=stream, demand=False
            )
        reach = min(job.leaves, stop + min(advice.ahead, DISK_READ_AHEAD) // MIB)
        base = job.first_leaf
        self._local.hint(job.cache_key, base + stop, base + reach, final=reach == job.leaves)

    def hydrate(self, job: Job, state: ObjectState) -> None:
        """Fetch every leaf of the output not cached, as one stream of read-ahead."""
        unit = self.pace().request // MIB
        stream = Stream(f"hydrate {job.job_id}")  # one stream, sharing the connections fairly
        self._loader.schedule(job, state, 0, job.leaves, unit, stream=stream, demand=False)


def pace_of(link: LinkModel, settings: ReaderSettings, ceiling: int) -> Pace:
    """What ``link`` and ``settings`` allow each stream, with a window of at most
    ``ceiling`` bytes (:class:`~.prefetch.Pace`)."""
    block = settings.block_size
    request = link.request_size(settings.largest_request(), block)
    ramp = 2 * link.request_size(settings.max_request, block) - block
    tail = link.size_within(TAIL_SECONDS, block, request)
    if tail < request:  # a slow connection: the ramp's first round fills every one
        ramp = max(ramp, settings.connections * tail)
    seconds = link.request_seconds(request)
    return Pace(request, seconds, ceiling, link.latency, ramp, settings.connections, tail)
