"""The prefetcher: random access fetches only what it touches; a streak ramps its requests
up to the request size, all at once, and sizes its window from the link and its rate."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from glacierfs.read.link import LinkModel
from glacierfs.read.prefetch import MAX_AHEAD_SECONDS, Pace, Prefetcher
from glacierfs.read.requests import pace_of
from glacierfs.read.settings import ReaderSettings
from glacierfs.treehash import MIB

WAN = Pace(request=16 * MIB, request_seconds=0.04 + 16 * MIB / 25e6, ceiling=1 << 30)
LEAVES = 1 << 20  # a large output, so that its end never cuts a window


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_first_read_fetches_nothing_ahead() -> None:
    advice = Prefetcher().advise(123 * MIB, 4096, LEAVES, WAN)
    assert advice.ahead == 0 and advice.runs == ()


def test_random_reads_never_prefetch() -> None:
    reader = Prefetcher()
    chosen = random.Random(3)
    for _ in range(500):
        advice = reader.advise(chosen.randrange(0, 1 << 40, 4096) + 16 * MIB, 4096, LEAVES, WAN)
        assert advice.ahead == 0 and advice.runs == ()


def test_the_second_read_ramps_requests_up_to_the_request_size_all_at_once() -> None:
    reader = Prefetcher()
    reader.advise(0, 128 * 1024, LEAVES, WAN)
    advice = reader.advise(128 * 1024, 128 * 1024, LEAVES, WAN)
    # near bytes first, in the smallest requests: sizes double every second request
    assert advice.runs[:10] == (
        (1, 1), (2, 1), (3, 1), (4, 2), (6, 2), (8, 4), (12, 4), (16, 8), (24, 8), (32, 16)
    )  # fmt: skip
    assert advice.ahead == 2 * WAN.request  # the ramp's window, before the rate is known
    later = [reader.advise(offset, MIB, LEAVES, WAN).runs for offset in range(MIB, 200 * MIB, MIB)]
    assert all(count == 16 for runs in later for _, count in runs)  # then full-size requests


def test_a_ramp_that_starts_anywhere_stays_aligned() -> None:
    reader = Prefetcher()
    reader.advise(5 * MIB - 4096, 4096, LEAVES, WAN)
    runs = reader.advise(5 * MIB, MIB, LEAVES, WAN).runs
    assert runs[:9] == (
        (6, 1),
        (7, 1),
        (8, 2),
        (10, 2),
        (12, 4),
        (16, 4),
        (20, 4),
        (24, 8),
        (32, 16),
    )
    sizes = [count for _, count in runs]
    assert sizes == sorted(sizes)  # never a larger request before a nearer, smaller one


def test_the_window_is_bandwidth_times_delay_with_headroom_at_the_readers_rate() -> None:
    clock, rate = Clock(), 100e6
    reader = Prefetcher(clock)
    for offset in range(0, 400 * MIB, MIB):
        advice = reader.advise(offset, MIB, LEAVES, WAN)
        clock.now += MIB / rate
    assert abs(reader.rate - rate) / rate < 0.01
    expected = rate * WAN.request_seconds * 1.5 + WAN.request
    assert abs(advice.ahead - expected) / expected < 0.01
    assert reader.stream.starve > 0  # seconds of bytes ahead of the reader


def test_a_reader_that_waits_grows_its_window_geometrically_up_to_the_time_cap() -> None:
    clock, quick = Clock(), Pace(MIB, 0.5, ceiling=1 << 30, latency=0.05)
    reader = Prefetcher(clock)
    windows = []
    for offset in range(0, 60 * MIB, MIB):
        reader.waited()
        windows.append(reader.advise(offset, MIB, LEAVES, quick).ahead)
        clock.now += 0.06  # 17 MB/s: the window formula alone would be 14 MB
    assert windows[6] == 2 * windows[5] == 4 * windows[4] > 8 * MIB
    assert windows[-1] == int(MAX_AHEAD_SECONDS * reader.rate)  # 10 s of the reader's rate


def test_the_ceiling_caps_the_window() -> None:
    clock, small = Clock(), Pace(MIB, 0.05, ceiling=8 * MIB)
    reader = Prefetcher(clock)
    for offset in range(0, 500 * MIB, MIB):
        reader.waited()
        advice = reader.advise(offset, MIB, LEAVES, small)
        clock.now += 0.001
        assert advice.ahead <= 8 * MIB
        assert all(start <= offset // MIB + 10 for start, _ in advice.runs)


def test_a_zero_ceiling_turns_read_ahead_off() -> None:
    reader, off = Prefetcher(), Pace(MIB, 0.05, ceiling=0)
    assert all(reader.advise(o, MIB, LEAVES, off).runs == () for o in range(0, 20 * MIB, MIB))


def test_small_reorderings_inside_the_window_keep_the_streak() -> None:
    reader = Prefetcher()
    for offset in range(0, 32 * MIB, MIB):
        reader.advise(offset, MIB, LEAVES, WAN)
    before = reader.advise(33 * MIB, MIB, LEAVES, WAN)  # one block skipped, as readahead reorders
    after = reader.advise(32 * MIB, MIB, LEAVES, WAN)  # and the skipped one arrives late
    assert before.ahead > 0 and after.ahead > 0


def test_the_end_of_the_output_cuts_the_last_request() -> None:
    reader = Prefetcher()
    reader.advise(0, MIB, 21, WAN)
    runs = reader.advise(MIB, MIB, 21, WAN).runs
    assert runs == ((2, 1), (3, 1), (4, 2), (6, 2), (8, 4), (12, 4), (16, 5))


@given(
    st.lists(st.tuples(st.integers(0, 1 << 34), st.integers(1, 4 * MIB)), max_size=60),
    st.integers(1, 5000),
)
def test_every_request_is_aligned_inside_the_output_and_asked_once_per_streak(
    reads: list[tuple[int, int]], leaves: int
) -> None:
    clock, reader = Clock(), Prefetcher()
    reader._clock = clock
    asked: set[int] = set()
    for offset, size in reads:
        advice = reader.advise(offset, size, leaves, WAN)
        clock.now += 0.01
        if advice.ahead == 0:
            asked.clear()  # a new streak may ask again (the loader skips what it has)
        for start, count in advice.runs:
            unit = 1 << (count - 1).bit_length()
            assert 1 <= count <= 16 and start % unit == 0 and start + count <= leaves
            assert count == unit or start + count == leaves  # only the tail is short
            span = set(range(start, start + count))
            assert not span & asked
            asked |= span


def test_before_the_rate_is_known_the_window_is_the_ramp_to_the_links_request_size() -> None:
    held = Pace(request=4 * MIB, request_seconds=0.2, ceiling=1 << 30, ramp=31 * MIB)
    reader = Prefetcher()
    reader.advise(0, MIB, LEAVES, held)
    advice = reader.advise(MIB, MIB, LEAVES, held)
    assert advice.ahead == 31 * MIB  # the ramp to 16 MiB, in requests of at most 4 MiB
    assert advice.runs[:6] == ((2, 1), (3, 1), (4, 2), (6, 2), (8, 4), (12, 4))
    assert all(count <= 4 for _, count in advice.runs)


FILLED = Pace(
    request=16 * MIB,
    request_seconds=0.04 + 16 * MIB / 25e6,
    ceiling=1 << 30,
    latency=0.04,
    connections=16,
    tail=4 * MIB,
)
"""The WAN shape with the mount's 16 connections, and 4 MiB requests at the end."""


def streak_runs(leaves: int, pace: Pace, clock: Clock | None = None) -> list[tuple[int, int]]:
    """Every request a reader waiting on each 1 MiB read of the output makes."""
    reader = Prefetcher(clock or Clock())
    runs: list[tuple[int, int]] = []
    for offset in range(0, leaves * MIB, MIB):
        reader.waited()
        runs += reader.advise(offset, MIB, leaves, pace).runs
    return runs


def test_a_short_output_is_spread_over_every_connection() -> None:
    runs = streak_runs(128, FILLED)  # 16 connections x 16 MiB would be twice the output
    assert sum(count for _, count in runs) == 126  # every leaf past the first two reads, once
    assert len(runs) >= 16  # every connection carries part of it
    assert max(count for _, count in runs) == 8
    assert all(count >= 4 for start, count in runs if start >= 8)  # none below the tail
    assert all(start % (1 << (count - 1).bit_length()) == 0 for start, count in runs)


def test_the_end_of_a_long_output_shrinks_to_the_tail_size() -> None:
    runs = streak_runs(1024, FILLED)
    sizes = [count for _, count in runs]
    assert sizes[8:-40].count(16) == len(sizes[8:-40])  # full-size until near the end
    assert sizes[-1] == 4 and 8 in sizes  # then halving, down to the tail, not below
    assert min(sizes[5:]) == 4 and sum(sizes) == 1022


def test_without_connections_or_on_a_fast_link_requests_stay_full_size_to_the_end() -> None:
    assert streak_runs(128, WAN)[-3:] == [(80, 16), (96, 16), (112, 16)]
    fast = Pace(32 * MIB, 0.035, 1 << 30, 0.002, connections=16, tail=32 * MIB)
    assert all(count == 32 for _, count in streak_runs(1024, fast)[10:])


def test_a_reader_that_waits_on_the_link_keeps_every_connection_busy() -> None:
    clock = Clock()
    reader = Prefetcher(clock)
    for offset in range(0, 40 * MIB, MIB):  # 10 MB/s, always waiting: 10 s of it is 100 MB
        reader.waited()
        advice = reader.advise(offset, MIB, LEAVES, FILLED)
        clock.now += MIB / 10e6
    assert advice.ahead == int(16 * 16 * MIB * 1.5)  # 16 connections x 16 MiB, headroom
    for offset in range(40 * MIB, 100 * MIB, MIB):  # then it stops waiting: the time cap
        advice = reader.advise(offset, MIB, LEAVES, FILLED)
        clock.now += MIB / 10e6
    assert advice.ahead == int(MAX_AHEAD_SECONDS * reader.rate) < 16 * 16 * MIB


def test_the_pace_of_the_wan_spreads_and_fills_and_of_loopback_does_not() -> None:
    settings = ReaderSettings().for_cache(100 << 30)  # the defaults, over the default cache
    wan, loopback = LinkModel(0.045, 25e6), LinkModel(0.002, 1e9)
    slow = pace_of(wan, settings, 1 << 30)
    assert (slow.request, slow.tail, slow.connections) == (16 * MIB, 8 * MIB, 16)
    assert slow.ramp == 16 * 8 * MIB  # the first round gives each connection a request
    fast = pace_of(loopback, settings, 1 << 30)
    assert (fast.request, fast.tail) == (32 * MIB, 32 * MIB)  # no request is worth cutting
    assert fast.ramp == 63 * MIB  # the ramp to 32 MiB, as before
