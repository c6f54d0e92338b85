"""Request planning: every request is tree-hash aligned, and nothing is asked twice."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from glacierfs.ranges import byte_range, leaf_span, plan
from glacierfs.read.prefetch import Pace, Prefetcher
from glacierfs.treehash import MIB, is_tree_hash_aligned


@settings(max_examples=300, deadline=None)
@given(
    total=st.integers(1, 64),
    tail=st.integers(1, MIB),
    unit_power=st.integers(0, 4),
    span=st.tuples(st.integers(0, 63), st.integers(1, 64)),
    cached=st.sets(st.integers(0, 63)),
)
def test_plans_are_aligned_disjoint_and_cover_exactly_what_is_wanted(
    total: int, tail: int, unit_power: int, span: tuple[int, int], cached: set[int]
) -> None:
    size = (total - 1) * MIB + tail
    first = min(span[0], total - 1)
    stop = min(first + span[1], total)
    runs = plan(first, stop, 1 << unit_power, total, lambda i: i not in cached)
    fetched: list[int] = []
    for run in runs:
        start, end = byte_range(run, size)
        assert is_tree_hash_aligned(start, end, size), (run, size)
        fetched.extend(range(run[0], run[0] + run[1]))
    assert len(fetched) == len(set(fetched)), "a leaf is requested twice"
    assert not set(fetched) & cached, "a cached leaf is requested"
    assert {i for i in range(first, stop) if i not in cached} <= set(fetched)


def test_a_single_leaf_read_fetches_one_leaf() -> None:
    assert plan(5, 6, 1, 100, lambda i: True) == [(5, 1)]


def test_a_whole_wanted_block_is_one_request() -> None:
    assert plan(8, 16, 8, 100, lambda i: True) == [(8, 8)]


def test_a_block_with_a_cached_leaf_is_split_in_aligned_halves() -> None:
    assert plan(0, 4, 4, 100, lambda i: i != 1) == [(0, 1), (2, 2)]


def test_the_last_block_is_cut_at_the_end_of_the_output() -> None:
    assert plan(8, 12, 8, 11, lambda i: True) == [(8, 3)]


def test_leaf_span_of_reads() -> None:
    assert leaf_span(0, 1, 10 * MIB) == (0, 1)
    assert leaf_span(MIB - 1, 2, 10 * MIB) == (0, 2)
    assert leaf_span(9 * MIB, MIB * 5, 10 * MIB - 3) == (9, 10)


PACE = Pace(request=8 * MIB, request_seconds=0.3, ceiling=64 * MIB, latency=0.05)


def test_random_reads_fetch_only_their_block() -> None:
    prefetcher = Prefetcher()
    for offset in (500 * MIB, 3 * MIB, 77 * MIB):
        advice = prefetcher.advise(offset, 4096, 1000, PACE)
        assert (advice.runs, advice.ahead) == ((), 0)


def test_sequential_reads_grow_requests_and_window_up_to_their_limits() -> None:
    now = [0.0]
    prefetcher = Prefetcher(lambda: now[0])
    offset, units, aheads = 0, [], []
    for _ in range(1000):
        prefetcher.waited()  # the reader keeps waiting: the window grows to its ceiling
        advice = prefetcher.advise(offset, 128 * 1024, 1 << 20, PACE)
        units.extend(count for _, count in advice.runs)
        aheads.append(advice.ahead)
        offset += 128 * 1024
        now[0] += 0.001
    assert units == sorted(units) and aheads == sorted(aheads)
    assert units[-1] == 8 and aheads[-1] == 64 * MIB
    assert all(start % count == 0 for start, count in advice.runs)


def test_a_small_reorder_keeps_the_streak() -> None:
    prefetcher = Prefetcher()
    for i in range(64):
        prefetcher.advise(i * 128 * 1024, 128 * 1024, 1000, PACE)
    advice = prefetcher.advise(64 * 128 * 1024 + 256 * 1024, 128 * 1024, 1000, PACE)
    assert advice.ahead > 0
