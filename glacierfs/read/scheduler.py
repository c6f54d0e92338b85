"""The mount's connections (and memory budget), shared fairly between the readers.

Design. Every GET of the read path takes one of the mount's ``connections`` from one
:class:`Scheduler` for as long as it runs (and, while responses are held in memory, its
leaves of the memory budget from another, :mod:`glacierfs.read.budget`, which grants in
the same order, whole requests only: a large one waits at the head of the queue, so it
is never starved by small ones and never holds a part while waiting for the rest).
Each request carries a :class:`Ticket`: the :class:`Stream` it belongs to (a sequential
reader's open file, one ``hydrate``, one output saved by ``retrieve``) and whether it is
*demand*, a leaf a reader is blocked on. When a connection frees:

* demand goes first, first come first served: a reader waiting now matters more than
  bytes it will want later, and random readers, which only ever make demand requests of
  one leaf, cut ahead of every read-ahead and keep their amplification at 1.0;
* otherwise the next read-ahead request of the stream with the fewest requests in
  flight, ties broken by the shortest time to starve (the bytes it has ahead over its
  rate, :attr:`Stream.starve`). So a stream holds more than ceil(C / active streams)
  connections only while no other stream waits: one with fewer in flight always wins the
  next free one, and one reader alone still gets all C.

A read-ahead request that a reader comes to wait on is *urged* (:meth:`Scheduler.urge`):
it becomes demand, wherever it is queued. A stream's read-ahead requests go out in the
order their tickets were made (nearest the reader first), whatever order their tasks
happen to start in (trio runs tasks started together in either order): the loader
*reserves* each request's place when it plans it (:meth:`Scheduler.reserve`), so even
with connections free the nearest bytes are granted first, and the task takes up its
reservation when it asks for a connection. Nothing is ever preempted: a request holds
its connection until its response is read.

The request a task makes is in the context variable :data:`REQUEST`, set where the
read path starts a flight (:meth:`glacierfs.read.loader.Loader.schedule`) and inherited by
the flight's task, so that the fetch under it finds its ticket without every layer
between passing it along. A GET with no ticket is demand of no stream.
"""

from __future__ import annotations

import bisect
import itertools
import math
import weakref
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar

import trio

from glacierfs.stats import Stats


class Stream:
    """One reader's sequence of requests, which shares the connections with the others."""

    def __init__(self, name: str = "") -> None:
        self.name = name
        self.starve = math.inf  # seconds of bytes ahead of the reader, at its rate


_ORDER = itertools.count()


class Ticket:
    """One request: its stream, whether a reader waits on it, and where it is queued."""

    def __init__(self, stream: Stream | None, demand: bool) -> None:
        self.stream = stream
        self.demand = demand
        self.order = next(_ORDER)
        self.queued_in: Scheduler | None = None

    def urge(self) -> None:
        """A reader now waits on this request: it is demand from now on."""
        if not self.demand:
            self.demand = True
            if self.queued_in is not None:
                self.queued_in.promote(self)


REQUEST: ContextVar[Ticket | None] = ContextVar("glacierfs_request", default=None)
"""The ticket of the request the current task makes (see the module's docstring)."""


class _Claim:
    """One wait of one ticket for ``units`` of a scheduler's capacity."""

    def __init__(self, ticket: Ticket, units: int) -> None:
        self.ticket, self.units = ticket, units
        self.granted = trio.Event()


class Scheduler:
    """``capacity`` units (connections, or leaves of memory), granted demand first, then
    to the stream with the fewest requests holding some."""

    def __init__(self, capacity: int, stats: Stats | None = None) -> None:
        if capacity < 1:
            raise ValueError(f"capacity {capacity}")
        self.capacity = capacity
        self._stats = stats  # counts the waits that near-bytes-first should never see
        self._free = capacity
        self._demand: deque[_Claim] = deque()
        self._waiting: dict[Stream, list[_Claim]] = {}  # by ticket order; in arrival order
        self._queued: dict[Ticket, _Claim] = {}
        self._held: dict[Stream, int] = {}
        self.granted: dict[Stream, int] = {}  # requests granted per stream, so far
        self._tickets: weakref.WeakKeyDictionary[object, Ticket] = weakref.WeakKeyDictionary()
        self._reserved: dict[Ticket, _Claim] = {}

    @property
    def in_use(self) -> int:
        return self.capacity - self._free

    def in_flight(self, stream: Stream) -> int:
        """Requests of ``stream`` holding capacity now."""
        return self._held.get(stream, 0)

    def tag(self, key: object, ticket: Ticket) -> None:
        """Remember ``key``'s ticket (a flight's), so that a reader can :meth:`urge` it."""
        self._tickets[key] = ticket

    def urge(self, key: object) -> None:
        """A reader now waits on ``key``'s request: make it demand, wherever it is queued."""
        ticket = self._tickets.get(key)
        if ticket is not None:
            if self._stats is not None and ticket.queued_in is self:
                self._stats.urged_waits += 1  # a reader waits on bytes not yet asked for
            ticket.urge()

    def promote(self, ticket: Ticket) -> None:
        """``ticket``, queued here, is demand now: it goes to the demand queue."""
        claim = self._queued.get(ticket)
        if claim is not None and ticket.stream is not None:
            self._unqueue_stream(claim)
            self._demand.append(claim)
            self._dispatch()

    def reserve(self, ticket: Ticket) -> None:
        """Queue ``ticket``'s claim of one unit now, in the order requests are planned;
        its task takes it up in :meth:`connection`, or gives it back (:meth:`unreserve`)."""
        if ticket not in self._reserved:
            claim = _Claim(ticket, 1)
            self._reserved[ticket] = claim
            self._enqueue(claim)
            self._dispatch()
            self._count_wait(claim)

    def _count_wait(self, claim: _Claim) -> None:
        if self._stats is not None and claim.ticket.demand and not claim.granted.is_set():
            self._stats.demand_waits += 1

    def unreserve(self, ticket: Ticket) -> None:
        """Give back a reservation its task never took up (the request was not made)."""
        claim = self._reserved.pop(ticket, None)
        if claim is not None:
            if claim.granted.is_set():
                self._release(claim)
            else:
                self._dequeue(claim)

    @asynccontextmanager
    async def connection(self, ticket: Ticket | None = None, units: int = 1) -> AsyncIterator[None]:
        """Hold ``units`` (at most the capacity) for the block, once the order grants them
        (a ticket's reservation, when it has one, holds its place in that order)."""
        units = min(max(units, 1), self.capacity)
        claim = self._reserved.pop(ticket, None) if ticket is not None else None
        if claim is None or claim.units != units:
            if claim is not None:  # not the claim this needs: give it back
                self._reserved[claim.ticket] = claim
                self.unreserve(claim.ticket)
            claim = _Claim(ticket or Ticket(None, demand=True), units)
            self._enqueue(claim)
            self._dispatch()
            self._count_wait(claim)
        try:
            await claim.granted.wait()
        except BaseException:
            if claim.granted.is_set():  # granted as the wait was cancelled
                self._release(claim)
            else:
                self._dequeue(claim)
            raise
        try:
            yield
        finally:
            self._release(claim)

    def _enqueue(self, claim: _Claim) -> None:
        ticket = claim.ticket
        ticket.queued_in = self
        self._queued[ticket] = claim
        if ticket.demand or ticket.stream is None:
            self._demand.append(claim)
        else:
            queue = self._waiting.setdefault(ticket.stream, [])
            bisect.insort(queue, claim, key=lambda c: c.ticket.order)

    def _unqueue_stream(self, claim: _Claim) -> None:
        stream = claim.ticket.stream
        queue = self._waiting.get(stream) if stream is not None else None
        if queue is not None and claim in queue:
            queue.remove(claim)
            if not queue:
                del self._waiting[stream]  # type: ignore[arg-type]

    def _dequeue(self, claim: _Claim) -> None:
        ticket = claim.ticket
        if self._queued.get(ticket) is not claim:
            return
        del self._queued[ticket]
        ticket.queued_in = None
        if claim in self._demand:
            self._demand.remove(claim)
        else:
            self._unqueue_stream(claim)
        self._dispatch()  # a large request at the head may have held others back

    def _next(self) -> _Claim | None:
        if self._demand:
            return self._demand[0]
        if not self._waiting:
            return None
        stream = min(self._waiting, key=lambda s: (self._held.get(s, 0), s.starve))
        return self._waiting[stream][0]

    def _dispatch(self) -> None:
        while (claim := self._next()) is not None and claim.units <= self._free:
            self._dequeue_granted(claim)
            self._free -= claim.units
            stream = claim.ticket.stream
            if stream is not None:
                self._held[stream] = self._held.get(stream, 0) + 1
                self.granted[stream] = self.granted.get(stream, 0) + 1
            claim.granted.set()

    def _dequeue_granted(self, claim: _Claim) -> None:
        ticket = claim.ticket
        del self._queued[ticket]
        ticket.queued_in = None
        if self._demand and self._demand[0] is claim:
            self._demand.popleft()
        else:
            self._unqueue_stream(claim)

    def _release(self, claim: _Claim) -> None:
        self._free += claim.units
        stream = claim.ticket.stream
        if stream is not None:
            self._held[stream] -= 1
            if not self._held[stream]:
                del self._held[stream]
        self._dispatch()
