"""Read-ahead for one open file: which requests to make ahead of its reader, and how far.

Design (docs/pipeline-notes.md, 4.2). Each open file handle has a :class:`Prefetcher`
that watches the offsets the kernel asks for, and a :class:`~.scheduler.Stream` under
which its read-ahead shares the mount's connections.

* **Random access fetches only what it touches.** A first read, or one not near where
  the last one ended, makes no read-ahead: its own leaves are fetched as demand, one
  leaf each, so random readers keep an amplification of 1.0. A streak starts with a
  read that begins exactly where the last one ended; once it has, a read a little behind
  or ahead of the expected offset (the kernel's readahead reorders requests, ``tar``
  skips small gaps) keeps it.
* **Ramp: near bytes first, in small requests.** A response's leaves are served only
  once its checksum is checked, at its end: a request of ``n`` MiB delivers its first
  byte to the reader after ``L + n/B``. So the leaves right after the read come first
  and in the smallest requests, and sizes double every second request, 1, 1, 2, 2, 4,
  4, ... MiB, up to the request size ``S``
  (:meth:`glacierfs.read.link.LinkModel.request_size`): the reader's next leaves land
  after one leaf's time, the next after two, and so on, while the larger requests
  behind them carry the bulk. The ramp's requests are all made at once and go out in
  that order, one per free connection (:meth:`.scheduler.Scheduler.reserve`), not one
  doubling per round trip. Every request is ``2^k`` leaves at a multiple of ``2^k``
  (tree-hash aligned: the service sends its checksum).
* **Every connection gets a part of the end.** Near the end of an output, a request is
  at most the leaves left over the mount's connections (to the nearest power of two),
  down to what one connection carries in :data:`TAIL_SECONDS`: a 128 MiB output over
  16 connections goes as 1, 1, 4, 8, 8, ... 8 MiB requests on all 16 at once, not as
  eight 16 MiB ones on half of them (measured on the WAN shape: 7 connections busy on
  average during the read before, 13 after), and the last requests of a long output end
  together, not one 16 MiB response alone for its last 0.7 s.
* **Window.** The bytes requested ahead of the reader:
  ``W = R x (L + S/B) x 1.5 + S``, with ``R`` the reader's consumption rate (an average
  over intervals of :data:`RATE_INTERVAL`), enough to keep the requests that carry ``R``
  in flight across a request's time with headroom; before ``R`` is known it is the
  ramp's, about ``2S*``. ``W`` doubles (at most once per round trip, as TCP's slow
  start does) whenever the reader had to wait on a fetch, and never shrinks while the
  streak lasts; it is capped by time (:data:`MAX_AHEAD_SECONDS` of ``R``: a reader that
  stops has cost seconds of bytes, cached but billed), except that a reader that waited
  on the link lately (:data:`LINK_BOUND_REQUESTS`) may keep every connection busy,
  ``connections x S x 1.5``: its ``R`` is what the link brought it, not what it reads
  (measured: the time cap held a 1 GiB reader at 150-160 MiB ahead, 10 requests of 16
  connections, as its rate was still low from the ramp); and by the :class:`Pace`'s
  ceiling (the ``read_ahead`` option and an eighth of the disk cache). Fetched bytes go
  to the disk cache, so memory does not bound it: the mount's memory budget guards only
  bytes held in memory.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from glacierfs.ranges import Run, floor_power_of_two
from glacierfs.read.scheduler import Stream
from glacierfs.treehash import MIB

HEADROOM = 1.5
"""The window is this many times bandwidth x delay: room for a slow response or two."""

MAX_AHEAD_SECONDS = 10.0
"""The most read-ahead in seconds of the reader's rate: what a reader that stops has
cost in bytes fetched and billed, never needed to keep a link busy (a 16 MiB request
at 25 MB/s takes under a second)."""

TAIL_SECONDS = 0.4
"""The time of the smallest request near the end of an output (:attr:`Pace.tail`): so a
connection that took a full-size request last ends at most about this long after the
others; on a fast link (loopback), full-size requests already take less. 8 MiB on the
WAN shape: measured there against 0.25 s (4 MiB), it did as well or better on 128 MiB
and 1 GiB, with a third fewer requests (each costs the daemon CPU, and the cold WAN
read is CPU-bound on 2 shared cores)."""

LINK_BOUND_REQUESTS = 2
"""A reader that waited on a fetch within this many request times is bound by the link:
its window may then keep every connection busy, whatever its measured rate."""

RAMP_REPEAT = 2
"""Requests of each size in the ramp before it doubles: near the reader, twice as many
small requests land twice as many leaves early, at a latency per extra request that the
idle connections of a ramp's first round absorb."""

RATE_INTERVAL = 0.25
"""Seconds over which a reader's consumption is measured: a few requests' worth, so
that the kernel's bursts of reads average out."""

RATE_WEIGHT = 0.5
"""Weight of each interval in the reader's rate: it follows a reader that speeds up
(as its window grows) within a second."""


@dataclass(frozen=True)
class Pace:
    """What the mount's link and cache allow one stream at the moment."""

    request: int
    """``S``: bytes of one full-size read-ahead request (a power of two of leaves)."""
    request_seconds: float
    """``L + S/B``: how long one such request takes on one connection."""
    ceiling: int
    """The largest window, in bytes: the ``read_ahead`` option, an eighth of the cache."""
    latency: float = 0.0
    """``L``: a round trip to the first byte; the window doubles at most once per ``L``."""
    ramp: int = 0
    """The window before the reader's rate is known: the ramp to the link's own request
    size, ``1 + 2 + ... + S*`` (about ``2 S*``), even while requests are kept smaller
    than ``S*`` (responses held in memory); at least ``2 S``. Where a full-size request
    takes longer than :data:`TAIL_SECONDS`, at least ``connections x tail``: the ramp's
    first round then gives every connection a request (measured on the WAN shape: a
    128 MiB output went out in three rounds, each after the reader's next wait, 0.12 s
    apart, and connections idled). That is 128 MiB there: a third of a second of the
    link, what a reader that stops after its second read has had fetched."""
    connections: int = 0
    """The mount's connections: near the end of an output, requests shrink so that each
    connection gets a share of what is left, down to :attr:`tail` (0: they do not)."""
    tail: int = 0
    """The smallest request near the end of an output: the largest that one connection
    carries in :data:`TAIL_SECONDS` (smaller ones would only add per-request work)."""


@dataclass(frozen=True)
class Advice:
    """Read-ahead for one read: the window past it (0: random access, no read-ahead),
    and the requests to make now, ``(first leaf, leaves)``, nearest first."""

    ahead: int
    runs: tuple[Run, ...] = ()


class Prefetcher:
    """The access pattern of one open file handle, and its stream of read-ahead."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = Stream()
        self._clock = clock
        self.next_offset: int | None = None
        self.streak = 0
        self.issued = 0  # leaves below this have been requested ahead (or read)
        self.ramp = 1  # leaves in the next ramp request
        self._at_ramp = 0  # requests made at that size (it doubles every second one)
        self.window = 0  # bytes, before the caps
        self.rate = 0.0  # bytes/s the reader consumes; 0 until measured
        self._mark = (clock(), 0)  # start of the rate interval, bytes read in it
        self._waited = False
        self._grown_at = -math.inf
        self._waited_at = -math.inf

    def waited(self) -> None:
        """The reader had to wait on a fetch: the window was too small."""
        self._waited = True

    def advise(
        self, offset: int, size: int, leaves: int, pace: Pace | Callable[[], Pace]
    ) -> Advice:
        """Record a read of an output of ``leaves`` leaves; say what to request ahead
        (``pace`` may be a function, called only for sequential reads: random reads
        need none, and computing it cost them more than all the rest of advise)."""
        now = self._clock()
        expected = self.next_offset
        # a streak starts only where the last read ended (random reads never ramp up by
        # landing near each other); once started, reordered reads nearby keep it
        tolerance = max(self.streak, 2 * MIB) if self.streak else 0
        sequential = expected is not None and expected - tolerance <= offset <= expected + tolerance
        self.next_offset = offset + size
        if not sequential:
            self.streak, self.issued, self.ramp, self._at_ramp = 0, 0, 1, 0
            self._mark = (now, 0)
            self._waited, self._waited_at = False, -math.inf
            return Advice(0)
        self.streak += size
        self._measure(now, size)
        if callable(pace):
            pace = pace()
        window = self._window(now, pace)
        if window <= 0:
            return Advice(0)
        read_stop = min(leaves, -(-(offset + size) // MIB))
        stop = min(leaves, -(-(offset + size + window) // MIB))
        largest = max(pace.request // MIB, 1)
        spread = (pace.connections, max(pace.tail // MIB, 1))
        runs = self._ramp(max(self.issued, read_stop), stop, leaves, largest, spread)
        ahead = self.issued * MIB - (offset + size)
        self.stream.starve = ahead / self.rate if self.rate else 0.0
        return Advice(window, tuple(runs))

    def _measure(self, now: float, size: int) -> None:
        started, consumed = self._mark
        consumed += size
        elapsed = now - started
        if elapsed < RATE_INTERVAL:
            self._mark = (started, consumed)
            return
        sample = consumed / elapsed
        self.rate = sample if not self.rate else self.rate + RATE_WEIGHT * (sample - self.rate)
        self._mark = (now, 0)

    def _window(self, now: float, pace: Pace) -> int:
        if self._waited:
            self._waited_at = now
            if now - self._grown_at >= pace.latency:
                self.window *= 2
                self._grown_at = now
        self._waited = False
        fill = self.rate * pace.request_seconds * HEADROOM + pace.request if self.rate else 0
        self.window = max(self.window, int(fill), 2 * pace.request, pace.ramp)
        self.window = min(self.window, pace.ceiling)
        if not self.rate:
            return self.window
        cap = int(self.rate * MAX_AHEAD_SECONDS)
        if now - self._waited_at <= LINK_BOUND_REQUESTS * pace.request_seconds:
            # it waits on the link: its rate is what the link brought it, not what it
            # could read, so the time cap does not hold it below what keeps every
            # connection busy (a reader that stops waiting gets the time cap back)
            cap = max(cap, int(pace.connections * pace.request * HEADROOM))
        return min(self.window, cap)

    def _ramp(
        self, first: int, stop: int, leaves: int, largest: int, spread: tuple[int, int]
    ) -> list[Run]:
        """Aligned requests from ``first`` until ``stop`` is covered, each doubling up to
        ``largest`` leaves; the last may reach past ``stop``, never past the output.

        Near the end, each is at most the leaves left shared by ``spread``'s connections
        (to the nearest power of two), down to its ``tail`` leaves: every connection
        carries part of a short output or of the end of a long one, rather than a few
        full-size requests while the others idle."""
        connections, tail = spread
        runs: list[Run] = []
        index = first
        while index < stop:
            aligned = index & -index if index else largest
            unit = min(self.ramp, largest, aligned)
            if connections:
                share = floor_power_of_two(max((leaves - index) * 4 // (3 * connections), 1))
                unit = min(unit, max(share, tail))
            runs.append((index, min(unit, leaves - index)))
            index += unit
            self._at_ramp += 1
            if self._at_ramp == RAMP_REPEAT or self.ramp >= largest:
                self.ramp, self._at_ramp = min(self.ramp * 2, largest), 0
        self.issued = max(self.issued, index)
        return runs
