"""The connection scheduler: demand first, then the stream with the fewest in flight.

Fake fetches hold a connection until the test lets them go, so every grant is seen in
order; nothing sleeps (trio's wait_all_tasks_blocked settles each step).
"""

from __future__ import annotations

import trio
import trio.testing

from glacierfs.read.scheduler import Scheduler, Stream, Ticket


class Fakes:
    """Fake fetches: each takes a connection, notes it, and holds it until released."""

    def __init__(self, scheduler: Scheduler, nursery: trio.Nursery) -> None:
        self.scheduler, self.nursery = scheduler, nursery
        self.granted: list[str] = []
        self.finished: set[str] = set()
        self._gates: dict[str, trio.Event] = {}

    def start(self, name: str, ticket: Ticket, units: int = 1) -> None:
        gate = self._gates[name] = trio.Event()

        async def fetch() -> None:
            async with self.scheduler.connection(ticket, units):
                self.granted.append(name)
                await gate.wait()

        self.nursery.start_soon(fetch)

    async def finish(self, name: str) -> None:
        self.finished.add(name)
        self._gates[name].set()
        await trio.testing.wait_all_tasks_blocked()

    async def settle(self) -> None:
        await trio.testing.wait_all_tasks_blocked()


async def test_one_stream_alone_uses_every_connection() -> None:
    scheduler, stream = Scheduler(4), Stream()
    async with trio.open_nursery() as nursery:
        fakes = Fakes(scheduler, nursery)
        tickets = [Ticket(stream, demand=False) for _ in range(10)]
        for n, ticket in reversed(list(enumerate(tickets))):  # tasks start in any order
            fakes.start(f"a{n}", ticket)
        await fakes.settle()
        assert scheduler.in_use == 4 and scheduler.in_flight(stream) == 4
        for n in range(10):
            await fakes.finish(fakes.granted[n])
            assert scheduler.in_flight(stream) == min(4, 10 - n - 1)
        assert scheduler.granted[stream] == 10
        # the free connections go to whichever task asks first; the queue keeps the order
        # the tickets were made in, nearest the reader first
        waited = [int(name[1:]) for name in fakes.granted[4:]]
        assert waited == sorted(waited)


async def test_two_streams_share_the_connections_and_neither_starves() -> None:
    scheduler, first, second = Scheduler(4), Stream("a"), Stream("b")
    async with trio.open_nursery() as nursery:
        fakes = Fakes(scheduler, nursery)
        for n in range(12):
            fakes.start(f"a{n}", Ticket(first, demand=False))
        await fakes.settle()
        for n in range(12):
            fakes.start(f"b{n}", Ticket(second, demand=False))
        await fakes.settle()
        # nothing is preempted
        assert (scheduler.in_flight(first), scheduler.in_flight(second)) == (4, 0)
        done_a = done_b = 0
        while done_a < 12 or done_b < 12:
            # finish the oldest request in flight: A's first, as a link would
            running = [name for name in fakes.granted if name not in fakes.finished]
            name = running[0]
            await fakes.finish(name)
            done_a += name.startswith("a")
            done_b += name.startswith("b")
            if done_a < 10 and done_b < 10 and done_a + done_b >= 2:
                # while both still wait, each holds half the connections
                assert (scheduler.in_flight(first), scheduler.in_flight(second)) == (2, 2)
        grants = "".join(name[0] for name in fakes.granted)
        assert grants.startswith("aaaabb")  # B gets the first two connections that free
        assert "ab" in grants[6:] and "ba" in grants[6:]  # then they alternate
        assert scheduler.granted[first] == scheduler.granted[second] == 12


async def test_demand_goes_before_read_ahead_and_in_order() -> None:
    scheduler, stream = Scheduler(1), Stream()
    async with trio.open_nursery() as nursery:
        fakes = Fakes(scheduler, nursery)
        fakes.start("ahead0", Ticket(stream, demand=False))
        await fakes.settle()
        stream.starve = 5.0  # seconds before its reader runs out of bytes
        hungry = Stream()
        hungry.starve = 1.0
        fakes.start("ahead1", Ticket(stream, demand=False))
        fakes.start("ahead2", Ticket(hungry, demand=False))
        await fakes.settle()
        fakes.start("demand0", Ticket(Stream(), demand=True))
        await fakes.settle()
        fakes.start("demand1", Ticket(None, demand=True))
        await fakes.settle()
        for name in ("ahead0", "demand0", "demand1"):
            await fakes.finish(name)
        # both streams have nothing in flight: the one closer to starving goes first
        assert fakes.granted == ["ahead0", "demand0", "demand1", "ahead2"]
        await fakes.finish("ahead2")
        await fakes.finish("ahead1")
        assert fakes.granted[-1] == "ahead1"


async def test_a_read_ahead_request_a_reader_waits_on_becomes_demand() -> None:
    scheduler, stream, other = Scheduler(1), Stream(), Stream()
    async with trio.open_nursery() as nursery:
        fakes = Fakes(scheduler, nursery)
        fakes.start("busy", Ticket(None, demand=True))
        await fakes.settle()
        fakes.start("other", Ticket(other, demand=False))
        late = Ticket(stream, demand=False)
        flight = Stream()  # any object that takes a weak reference, as a flight does
        scheduler.tag(flight, late)
        fakes.start("late", late)
        await fakes.settle()
        scheduler.urge(flight)
        await fakes.finish("busy")
        assert fakes.granted == ["busy", "late"]
        await fakes.finish("late")
        await fakes.finish("other")


async def test_a_request_cancelled_while_waiting_leaves_the_queue() -> None:
    scheduler, stream = Scheduler(1), Stream()
    async with trio.open_nursery() as nursery:
        fakes = Fakes(scheduler, nursery)
        fakes.start("busy", Ticket(stream, demand=False))
        await fakes.settle()
        with trio.CancelScope() as scope:
            scope.cancel()
            async with scheduler.connection(Ticket(stream, demand=False)):
                raise AssertionError("never granted")
        assert scope.cancelled_caught
        fakes.start("next", Ticket(stream, demand=False))
        await fakes.finish("busy")
        assert fakes.granted == ["busy", "next"] and scheduler.in_use == 1
        await fakes.finish("next")
        assert scheduler.in_use == 0 and scheduler.in_flight(stream) == 0


async def test_a_budget_grants_whole_shares_and_a_large_request_is_not_starved() -> None:
    budget, small, large = Scheduler(8), Stream(), Stream()
    async with trio.open_nursery() as nursery:
        fakes = Fakes(budget, nursery)
        fakes.start("small0", Ticket(small, demand=False), 4)
        await fakes.settle()
        fakes.start("large", Ticket(large, demand=False), 8)
        await fakes.settle()
        fakes.start("small1", Ticket(small, demand=False), 4)
        await fakes.settle()
        # the large request waits at the head, holding nothing; the small one waits behind
        assert fakes.granted == ["small0"] and budget.in_use == 4
        await fakes.finish("small0")
        assert fakes.granted == ["small0", "large"] and budget.in_use == 8
        await fakes.finish("large")
        assert fakes.granted[-1] == "small1"
        await fakes.finish("small1")


async def test_a_request_larger_than_the_budget_takes_all_of_it() -> None:
    budget = Scheduler(4)
    async with trio.open_nursery() as nursery:
        fakes = Fakes(budget, nursery)
        fakes.start("huge", Ticket(Stream(), demand=False), 32)
        await fakes.settle()
        assert fakes.granted == ["huge"] and budget.in_use == 4
        await fakes.finish("huge")
        assert budget.in_use == 0


async def test_reserved_requests_are_granted_in_the_order_planned_even_with_connections_free() -> (
    None
):
    scheduler, stream = Scheduler(4), Stream()
    async with trio.open_nursery() as nursery:
        fakes = Fakes(scheduler, nursery)
        tickets = [Ticket(stream, demand=False) for _ in range(8)]
        for ticket in tickets:  # as the loader plans them: nearest first
            scheduler.reserve(ticket)
        for n, ticket in reversed(list(enumerate(tickets))):  # tasks start in any order
            fakes.start(f"a{n}", ticket)
        await fakes.settle()
        assert sorted(fakes.granted) == ["a0", "a1", "a2", "a3"]  # not the four started first
        assert scheduler.in_use == 4
        await fakes.finish("a2")
        assert fakes.granted[4] == "a4"
        nursery.cancel_scope.cancel()


async def test_a_reservation_no_request_takes_up_is_given_back() -> None:
    scheduler, stream = Scheduler(2), Stream()
    async with trio.open_nursery() as nursery:
        fakes = Fakes(scheduler, nursery)
        unused, queued = Ticket(stream, demand=False), Ticket(stream, demand=False)
        scheduler.reserve(unused)  # granted at once, held for a task that never asks
        scheduler.reserve(queued)
        assert scheduler.in_use == 2
        fakes.start("other", Ticket(None, demand=True))
        await fakes.settle()
        assert fakes.granted == []
        scheduler.unreserve(unused)
        await fakes.settle()
        assert fakes.granted == ["other"]
        scheduler.unreserve(queued)
        assert scheduler.in_use == 1
        await fakes.finish("other")
        assert scheduler.in_use == 0
