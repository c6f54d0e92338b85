"""The memory cache: an LRU of leaves bounded in bytes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from glacierfs.cache.memory import MemoryCache


def test_get_returns_what_was_put() -> None:
    cache = MemoryCache(100)
    cache.put("a", 0, b"zero")
    cache.put("a", 1, b"one")
    assert cache.get("a", 0) == b"zero"
    assert cache.get("a", 1) == b"one"
    assert cache.size == 7


def test_get_of_absent_leaf_is_none() -> None:
    cache = MemoryCache(100)
    cache.put("a", 0, b"zero")
    assert cache.get("a", 1) is None
    assert cache.get("b", 0) is None


def test_least_recently_used_leaf_is_evicted_first() -> None:
    cache = MemoryCache(30)
    cache.put("a", 0, b"x" * 10)
    cache.put("a", 1, b"y" * 10)
    cache.put("a", 2, b"z" * 10)
    assert cache.get("a", 0) is not None  # now a/1 is the least recently used
    cache.put("b", 0, b"w" * 10)
    assert cache.get("a", 1) is None
    assert cache.get("a", 0) == b"x" * 10
    assert cache.get("a", 2) == b"z" * 10
    assert cache.size == 30


def test_replacing_a_leaf_counts_its_size_once() -> None:
    cache = MemoryCache(100)
    cache.put("a", 0, b"x" * 40)
    cache.put("a", 0, b"y" * 30)
    assert cache.size == 30
    assert cache.get("a", 0) == b"y" * 30


def test_leaf_larger_than_capacity_is_not_kept_and_evicts_nothing() -> None:
    cache = MemoryCache(10)
    cache.put("a", 0, b"x" * 5)
    cache.put("a", 1, b"y" * 11)
    assert cache.get("a", 1) is None
    assert cache.get("a", 0) == b"x" * 5
    assert cache.size == 5


def test_discard_forgets_a_leaf() -> None:
    cache = MemoryCache(100)
    cache.put("a", 0, b"zero")
    cache.discard("a", 0)
    cache.discard("a", 5)  # absent: nothing to do
    assert cache.get("a", 0) is None
    assert cache.size == 0


def test_negative_capacity_is_refused() -> None:
    with pytest.raises(ValueError):
        MemoryCache(-1)


operations = st.lists(
    st.tuples(
        st.sampled_from(["put", "get", "discard"]),
        st.sampled_from(["a", "b"]),
        st.integers(0, 5),
        st.integers(0, 40),
    ),
    max_size=60,
)


@given(operations)
def test_size_stays_within_capacity_and_gets_return_the_last_put(
    ops: list[tuple[str, str, int, int]],
) -> None:
    cache = MemoryCache(64)
    last: dict[tuple[str, int], bytes] = {}
    for op, key, index, length in ops:
        if op == "put":
            data = bytes([index]) * length
            cache.put(key, index, data)
            last[(key, index)] = data
        elif op == "get":
            got = cache.get(key, index)
            assert got is None or got == last.get((key, index))
        else:
            cache.discard(key, index)
            last.pop((key, index), None)
        assert 0 <= cache.size <= 64
