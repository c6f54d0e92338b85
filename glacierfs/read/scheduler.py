"""The mount's connections, shared fairly between the readers that want them.

Design. Every GET of the read path takes one of the mount's ``connections`` from one
:class:`Scheduler` for as long as it runs. Each request carries a :class:`Ticket`: the
:class:`Stream` it belongs to (a sequential reader's open file, one ``hydrate``, one
output saved by ``retrieve``) and whether it is *demand*, a leaf a reader is blocked on.
When a connection frees:

* demand goes first, first come first served: a reader waiting now matters more than
  bytes it will want later, and random readers, which only ever make demand requests of
  one leaf, cut ahead of every read-ahead and keep their amplification at 1.0;
* otherwise the next read-ahead request of the stream with the fewest requests in
  flight, ties broken by the shortest time to starve (the bytes it has ahead over its
  rate, :attr:`Stream.starve`). So a stream holds more than ceil(C / active streams)
  connections only while no other stream waits: one with fewer in flight always wins the
  next free one, and one reader alone still gets all C.

A read-ahead request that a reader comes to wait on is *urged* (:meth:`Scheduler.urge`):
it becomes demand, wherever it is in the queue. Nothing is ever preempted: a request
holds its connection until its response is read.

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


class Stream:
    """One reader's sequence of requests, which shares the connections with the others."""

    def __init__(self, name: str = "") -> None:
        self.name = name
        self.in_flight = 0
        self.requests = 0  # granted so far, for tests and stats
        self.starve = math.inf  # seconds of bytes ahead of the reader, at its rate
        self.waiting: list[Ticket] = []  # by Ticket.order: nearest the reader first


_ORDER = itertools.count()


class Ticket:
    """One request's place in the queue: its stream, and whether a reader waits on it.

    A stream's read-ahead requests go out in the order their tickets were made (nearest
    the reader first), whatever order their tasks happen to start in.
    """

    def __init__(self, stream: Stream | None, demand: bool) -> None:
        self.stream = stream
        self.demand = demand
        self.order = next(_ORDER)
        self.granted = trio.Event()
        self.queued = False


REQUEST: ContextVar[Ticket | None] = ContextVar("glacierfs_request", default=None)
"""The ticket of the request the current task makes (see the module's docstring)."""


class Scheduler:
    """``connections`` connections, granted demand first, then to the neediest stream."""

    def __init__(self, connections: int) -> None:
        if connections < 1:
            raise ValueError(f"{connections} connections")
        self.connections = connections
        self._free = connections
        self._demand: deque[Ticket] = deque()
        self._streams: dict[Stream, None] = {}  # streams with read-ahead waiting, in order
        self._tickets: weakref.WeakKeyDictionary[object, Ticket] = weakref.WeakKeyDictionary()

    @property
    def in_use(self) -> int:
        return self.connections - self._free

    def tag(self, key: object, ticket: Ticket) -> None:
        """Remember ``key``'s ticket (a flight's), so that a reader can :meth:`urge` it."""
        self._tickets[key] = ticket

    def urge(self, key: object) -> None:
        """A reader now waits on ``key``'s request: make it demand, if it is not already."""
        ticket = self._tickets.get(key)
        if ticket is None or ticket.demand:
            return
        ticket.demand = True
        if ticket.queued and ticket.stream is not None:
            ticket.stream.waiting.remove(ticket)
            if not ticket.stream.waiting:
                self._streams.pop(ticket.stream, None)
            self._demand.append(ticket)

    @asynccontextmanager
    async def connection(self, ticket: Ticket | None = None) -> AsyncIterator[None]:
        """Hold one connection for the block, once the queue's order grants it."""
        ticket = ticket or Ticket(None, demand=True)
        ticket.granted = trio.Event()
        self._enqueue(ticket)
        self._dispatch()
        try:
            await ticket.granted.wait()
        except BaseException:
            if ticket.granted.is_set():  # granted as the wait was cancelled
                self._release(ticket)
            else:
                self._dequeue(ticket)
            raise
        try:
            yield
        finally:
            self._release(ticket)

    def _enqueue(self, ticket: Ticket) -> None:
        ticket.queued = True
        if ticket.demand or ticket.stream is None:
            self._demand.append(ticket)
        else:
            bisect.insort(ticket.stream.waiting, ticket, key=lambda t: t.order)
            self._streams[ticket.stream] = None

    def _dequeue(self, ticket: Ticket) -> None:
        if not ticket.queued:
            return
        ticket.queued = False
        if ticket in self._demand:
            self._demand.remove(ticket)
        elif ticket.stream is not None and ticket in ticket.stream.waiting:
            ticket.stream.waiting.remove(ticket)
            if not ticket.stream.waiting:
                self._streams.pop(ticket.stream, None)

    def _next(self) -> Ticket | None:
        if self._demand:
            return self._demand.popleft()
        if not self._streams:
            return None
        stream = min(self._streams, key=lambda s: (s.in_flight, s.starve))
        ticket = stream.waiting.pop(0)
        if not stream.waiting:
            del self._streams[stream]
        return ticket

    def _dispatch(self) -> None:
        while self._free > 0:
            ticket = self._next()
            if ticket is None:
                return
            ticket.queued = False
            self._free -= 1
            if ticket.stream is not None:
                ticket.stream.in_flight += 1
                ticket.stream.requests += 1
            ticket.granted.set()

    def _release(self, ticket: Ticket) -> None:
        self._free += 1
        if ticket.stream is not None:
            ticket.stream.in_flight -= 1
        self._dispatch()
