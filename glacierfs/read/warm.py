"""Warm reads: bytes of leaves cached for the job, served on the trio thread, no ``await``.

Design. Most reads of a hydrated output find every leaf they touch cached for the job
and none in flight; :meth:`WarmReads.read` serves those whole, synchronously, from the
disk cache's data file (:meth:`glacierfs.cache.local.LocalReads.read_now`: the bytes
asked for from the page cache, a granule's XXH3 sum checked on its first read in the
mount), and the FUSE adapter calls it before any coroutine: each ``await`` of a layer
that need not wait costs as much as a dict lookup does dozens of times. Anything else
(a leaf not cached or in flight, the page cache missing the bytes, a job whose verdict
is a mismatch, a leaf handed out before with other bytes) answers None, with nothing of
the read done, and :meth:`glacierfs.read.reader.Reader.read` takes it.

The checks are the reader's own, in the same order: a leaf is served only if its row is
good for the job (:meth:`LeafRow.usable_by`) and its digest is the one the view holds
(the bytes of that row, checked against their sums); every leaf handed out is noted
(:meth:`Trust.see`), and a job whose readers were handed changed bytes is refused by
the reader's path; under ``verify=strict`` a leaf no checksum covers is refused.

Random reads ask nothing of the read-ahead but to be recorded: the :class:`Pace` is
computed only when a read continues a streak (it cost a random read more than the
rest of the bookkeeping together).

Measured (warm random 4 KiB reads, granules already checked). The handler's own CPU in
one process (``tests/bench/read_micro.py``): 13.2 us a read through five coroutines
and a Pace each, 6.1 us this way; a bare ``preadv`` into a fresh buffer costs 1.7 us.
The daemon's CPU under fio, 2 shared cores: 53 to 62 us a read before, 40 to 46 us
now, where the pyfuse3-from-memory ceiling spends 28 to 30 us (its FUSE and trio
share, which glacierfs pays too).
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from glacierfs.cache.disk import SHARED
from glacierfs.cache.local import LocalReads
from glacierfs.errors import UnverifiableRead
from glacierfs.jobs import Job
from glacierfs.read.flights import Flights
from glacierfs.read.ledger import BLOCK, MISMATCH, TREE_HASH
from glacierfs.read.prefetch import Pace, Prefetcher
from glacierfs.read.requests import Requests
from glacierfs.read.trust import ObjectState, Trust, slot
from glacierfs.stats import Stats
from glacierfs.treehash import MIB


def cached_digests(
    job: Job, state: ObjectState, flights: Flights, first: int, stop: int
) -> list[bytes] | None:
    """The digests of output leaves ``first..stop-1`` if they are all cached for the job
    and none is being fetched; else None."""
    rows, owner, digests = state.digests, job.owner, []
    key = slot(job) if flights.leaves() else None  # no flight at all: no key to build
    for leaf in range(job.first_leaf + first, job.first_leaf + stop):
        row = rows.get(leaf)
        if row is None or not row.usable_by(owner) or (key is not None and (key, leaf) in flights):
            return None
        digests.append(row.digest)
    return digests


def refuse_unverifiable(job: Job, state: ObjectState, leaf: int) -> None:
    """Under ``verify=strict`` (the job not proven by its tree hash): refuse a leaf that
    no response checksum covered and no archive tree hash shares."""
    row = state.digests.get(leaf)
    if row is None or (row.verified != BLOCK and row.owners != SHARED):
        raise UnverifiableRead(
            f"job {job.job_id}: verify=strict and no checksum covers leaf {leaf}"
        )


class WarmReads:
    """The reader's synchronous path (see the module); it shares the reader's state."""

    def __init__(
        self,
        objects: dict[str, ObjectState],
        sighted: dict[str, trio.Event],
        flights: Flights,
        trust: Trust,
        local: LocalReads,
        requests: Requests,
        stats: Stats,
        strict: bool,
    ) -> None:
        self._objects, self._sighted, self._flights = objects, sighted, flights
        self._in_flight = flights.leaves()
        self._trust, self._local, self._requests = trust, local, requests
        self._pace: Callable[[], Pace] = requests.pace
        self._stats, self._strict = stats, strict

    def read(
        self, job: Job, offset: int, size: int, prefetcher: Prefetcher | None = None
    ) -> bytes | memoryview | None:
        """The read, when the disk cache serves it at once on this thread; else None,
        nothing of the read done. Never raises IntegrityError (those take the reader's
        path, where the damage is recorded)."""
        end = min(offset + size, job.size)
        state = self._objects.get(job.cache_key)
        sighted = self._sighted.get(job.ident)
        if offset >= end or state is None or sighted is None or not sighted.is_set():
            return None
        self._flights.refuse_when_closing()
        verdict = self._trust.ledger.verdict(job)
        if verdict == MISMATCH:
            return None
        first, stop = offset // MIB, (end - 1) // MIB + 1
        if stop == first + 1 and not self._in_flight:  # the common case, without a loop
            row = state.digests.get(job.first_leaf + first)
            if row is None or not row.usable_by(job.owner):
                return None
            digests: list[bytes] | None = [row.digest]
        else:
            digests = cached_digests(job, state, self._flights, first, stop)
        if digests is None:
            return None
        base = job.first_leaf * MIB
        data = self._local.read_now(job.cache_key, base + offset, base + end, digests)
        if data is None:
            return None
        self.handed(job, state, first, digests, verdict)
        if not self._trust.unchanged(job):
            return None  # the reader's path records the mismatch and refuses
        if prefetcher is not None:
            advice = prefetcher.advise(offset, size, job.leaves, self._pace)
            if advice.ahead:
                self._requests.ahead(job, state, stop, prefetcher.stream, advice)
        stats = self._stats
        stats.served_from_cache += end - offset
        stats.bytes_served += end - offset
        return data

    def handed(
        self, job: Job, state: ObjectState, first: int, digests: list[bytes], verdict: str | None
    ) -> None:
        """Leaves read from the disk cache go to the job's readers: noted, and refused
        under ``verify=strict`` when no checksum covers them (``verdict``: the job's)."""
        see, strict = self._trust.see, self._strict and verdict != TREE_HASH
        for n, digest in enumerate(digests):
            leaf = job.first_leaf + first + n
            see(job, leaf, digest)
            if strict:
                refuse_unverifiable(job, state, leaf)
