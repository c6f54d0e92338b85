"""The link model: averages of what responses took, and the request size they call for."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from glacierfs.read.link import LATENCY_SHARE, LinkModel
from glacierfs.read.settings import ReaderSettings
from glacierfs.treehash import MIB


def measured(latency: float, rate: float) -> LinkModel:
    link = LinkModel()
    for _ in range(60):
        link.record(latency, 16 * MIB, 16 * MIB / rate)
    return link


def test_the_priors_ask_for_16_mib_as_on_the_wan() -> None:
    assert LinkModel().request_size(1 << 30) == 16 * MIB


def test_the_measured_shapes_give_the_sizes_of_the_notes() -> None:
    wan, loopback = measured(0.040, 25e6), measured(0.002, 1e9)
    assert abs(wan.latency - 0.040) < 1e-3 and abs(wan.rate - 25e6) < 1e4
    assert wan.request_size(1 << 30) == 16 * MIB  # 8 MiB would spend 11% waiting
    assert loopback.request_size(1 << 30) == 32 * MIB


def test_small_responses_and_impossible_figures_are_not_measured() -> None:
    link = LinkModel()
    link.record(5.0, MIB - 1, 1.0)
    link.record(5.0, 4 * MIB, 0.0)
    link.record(-1.0, 4 * MIB, 1.0)
    assert (link.latency, link.rate, link.samples) == (LinkModel().latency, LinkModel().rate, 0)


def test_the_size_is_clamped_to_max_request_and_to_a_power_of_two_of_leaves() -> None:
    slow = measured(0.5, 25e6)  # a link with half a second of latency wants huge requests
    assert slow.request_size(1 << 30) == 128 * MIB
    assert slow.request_size(4 * MIB) == 4 * MIB
    assert slow.request_size(3 * MIB) == 2 * MIB  # aligned: the service sends its checksum
    fast = measured(0.0001, 1e9)
    assert fast.request_size(1 << 30) == MIB
    assert fast.request_size(1 << 30, smallest=2 * MIB) == 2 * MIB


@given(
    st.floats(0.0001, 2.0),
    st.floats(1e5, 1e10),
    st.integers(MIB, 1 << 30),
)
def test_the_size_is_the_smallest_that_keeps_latency_under_its_share(
    latency: float, rate: float, max_request: int
) -> None:
    link = LinkModel(latency, rate)
    size = link.request_size(max_request)
    assert size >= MIB and size & (size - 1) == 0 and size <= max_request
    if size < max_request // 2:  # not clamped: latency is within its share
        assert latency <= LATENCY_SHARE * link.request_seconds(size) * (1 + 1e-9)
    if size > MIB:  # and half of it would not do
        assert latency > LATENCY_SHARE * link.request_seconds(size // 2) * (1 - 1e-9)


def test_while_responses_are_held_in_memory_each_connection_gets_its_share() -> None:
    held = ReaderSettings(max_request=32 * MIB, memory_budget=64 * MIB, connections=16)
    assert held.largest_request() == 4 * MIB
    tight = ReaderSettings(max_request=32 * MIB, memory_budget=MIB, connections=16)
    assert tight.largest_request() == MIB  # never below a block: the budget takes max()
    streamed = ReaderSettings(max_request=32 * MIB, holds_responses=False)
    assert streamed.largest_request() == 32 * MIB


def test_the_size_a_connection_carries_within_a_time() -> None:
    wan, loopback = measured(0.040, 25e6), measured(0.002, 1e9)
    assert wan.size_within(0.25, MIB, 16 * MIB) == 4 * MIB  # 8 MiB takes 0.38 s
    assert wan.size_within(0.01, MIB, 16 * MIB) == MIB  # never below the smallest
    assert loopback.size_within(0.25, MIB, 32 * MIB) == 32 * MIB  # never above the largest
