"""Single flight: one request in progress per leaf, whoever waits on it.

Design.

* A leaf is looked for in memory, then in a *flight* (a request in progress that covers
  it: concurrent readers of one leaf make one request), then on disk, and only then
  fetched. A flight runs in the mount's background nursery, not in the reader's task,
  so an interrupted ``read()`` never wastes a download.
* A flight always ends with its leaves or an error, whatever stops it: no waiter sleeps
  forever. :meth:`Flights.close` (the mount is ending) refuses new work and wakes every
  waiter with :class:`~glacierfs.errors.ShuttingDown`; the flights still running end
  with the nursery's cancellation.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping

import trio

from glacierfs.errors import GlacierfsError, ShuttingDown

LeafKey = tuple[str, int]
"""A leaf in flight: the job's slot (:func:`glacierfs.read.trust.slot`) and the leaf."""


class Flight:
    """One request in progress; its leaves are handed to waiters as they land: in the
    disk cache (``stored``), or, when the disk could not take them, in ``leaves``."""

    def __init__(self) -> None:
        self.done = trio.Event()
        self.leaves: dict[int, memoryview] = {}  # leaves held in memory for the waiters
        self.stored: set[int] = set()  # leaves it committed to the disk cache: read them there
        self.error: GlacierfsError | None = None

    def fail(self, error: GlacierfsError) -> None:
        """End the flight without its leaves, unless they landed: its waiters get ``error``."""
        if not self.done.is_set():
            self.error = error
            self.done.set()


class Flights:
    """The flights of a mount, by the leaves they cover, and the nursery they run in."""

    def __init__(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        self._by_leaf: dict[LeafKey, Flight] = {}
        self._closing = False

    def get(self, key: LeafKey) -> Flight | None:
        return self._by_leaf.get(key)

    def __contains__(self, key: LeafKey) -> bool:
        return key in self._by_leaf

    def leaves(self) -> Mapping[LeafKey, Flight]:
        """The leaves in flight, live (a warm read skips its lookups when there are none)."""
        return self._by_leaf

    def launch(
        self,
        flight: Flight,
        keys: Iterable[LeafKey],
        task: Callable[..., Awaitable[None]],
        *args: object,
    ) -> None:
        """Register a flight under its leaves and start it in the background nursery."""
        for key in keys:
            self._by_leaf[key] = flight
        try:
            self._nursery.start_soon(task, *args)
        except RuntimeError:  # the nursery is closed: nothing will ever run it
            self.close()
            raise ShuttingDown("the mount is shutting down") from None

    def land(self, flight: Flight, keys: Iterable[LeafKey]) -> None:
        """The flight ended: wake its waiters, and let the next look for its leaves start anew."""
        flight.done.set()
        for key in keys:
            if self._by_leaf.get(key) is flight:
                del self._by_leaf[key]

    def close(self) -> None:
        """The mount is ending: refuse new work, wake every waiter with ShuttingDown.

        Call it before cancelling the nursery, so that reads waiting outside it (FUSE
        requests, worker threads) end now rather than when their flights would.
        """
        self._closing = True
        for flight in set(self._by_leaf.values()):
            flight.fail(ShuttingDown("the mount is shutting down"))

    def refuse_when_closing(self) -> None:
        if self._closing:
            raise ShuttingDown("the mount is shutting down")
