"""The prefetcher: random access fetches only what it touches; streaks grow, aligned."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from glacierfs.read.prefetch import Prefetcher
from glacierfs.treehash import MIB


def prefetcher() -> Prefetcher:
    return Prefetcher(block_size=MIB, max_request=4 * MIB, read_ahead=64 * MIB)


def test_a_first_read_fetches_one_block_and_nothing_ahead() -> None:
    advice = prefetcher().advise(123 * MIB, 4096)
    assert (advice.unit, advice.ahead) == (1, 0)


def test_a_sequential_reader_grows_requests_to_the_maximum_and_the_window_to_read_ahead() -> None:
    reader = prefetcher()
    advice = [reader.advise(offset, MIB) for offset in range(0, 200 * MIB, MIB)]
    units = [a.unit for a in advice]
    assert units[0] == 1 and units == sorted(units) and units[-1] == 4
    assert advice[-1].ahead == 64 * MIB
    assert all(a.ahead <= 64 * MIB for a in advice)


def test_random_reads_never_prefetch() -> None:
    reader = prefetcher()
    chosen = random.Random(3)
    for _ in range(500):
        advice = reader.advise(chosen.randrange(0, 1 << 40, 4096) + 16 * MIB, 4096)
        assert advice.ahead == 0 and advice.unit == 1


def test_small_reorderings_inside_the_window_keep_the_streak() -> None:
    reader = prefetcher()
    for offset in range(0, 32 * MIB, MIB):
        reader.advise(offset, MIB)
    before = reader.advise(33 * MIB, MIB)  # one block skipped, as readahead reorders
    after = reader.advise(32 * MIB, MIB)  # and the skipped one arrives late
    assert before.ahead > 0 and after.ahead > 0


@given(st.lists(st.tuples(st.integers(0, 1 << 34), st.integers(1, 4 * MIB)), max_size=60))
def test_every_advice_is_a_power_of_two_unit_within_the_bounds(
    reads: list[tuple[int, int]],
) -> None:
    reader = prefetcher()
    for offset, size in reads:
        advice = reader.advise(offset, size)
        assert 1 <= advice.unit <= 4 and advice.unit & (advice.unit - 1) == 0
        assert 0 <= advice.ahead <= 64 * MIB
