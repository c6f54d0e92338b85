"""Custody in the disk cache: delivered leaves go first, then replaceable ones, least
recently used first within each; a leaf in custody never goes."""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
from collections.abc import Callable
from pathlib import Path

import pytest

from glacierfs.cache.disk import DiskCache
from glacierfs.cache.disk.classes import CUSTODY, DELIVERED, REPLACEABLE, Classes
from glacierfs.treehash import MIB

FOREVER = math.inf
FULL = r"full of outputs in custody \(\d+ bytes"
OVER = r"holds \d+ bytes in custody, more than cache_size"


def leaf_bytes(key: str, index: int) -> bytes:
    return (f"<{key}:{index}>".encode() * MIB)[:MIB]


def put(cache: DiskCache, key: str, index: int) -> bool:
    data = leaf_bytes(key, index)
    return cache.put(key, index, data, [hashlib.sha256(data).digest()], "block", owner="j")


def held(cache: DiskCache) -> set[tuple[str, int]]:
    return {(key, i) for key in "cdrn" for i in cache.leaves(key)}


class Policy:
    """The classes a layer above would give: changed by the test as it goes."""

    def __init__(self) -> None:
        self.now = 0.0
        self.value = Classes(
            delivered=frozenset({"d"}),
            live={"r": ((0, 10, FOREVER),), "n": ((0, 10, FOREVER),)},
            clock=lambda: self.now,
        )

    def __call__(self) -> Classes:
        return self.value


def opened(root: Path, capacity: int, policy: Callable[[], Classes]) -> DiskCache:
    ticks = itertools.count()
    return DiskCache(root, capacity, clock=lambda: float(next(ticks)), classes=policy)


def test_a_leaf_is_delivered_replaceable_while_a_live_job_covers_it_else_in_custody() -> None:
    classes = Classes(frozenset({"d"}), {"r": ((2, 4, 10.0),)})
    assert classes.of("d", 0, 0.0) == DELIVERED
    assert [classes.of("r", i, 5.0) for i in range(5)] == [
        CUSTODY,
        CUSTODY,
        REPLACEABLE,
        REPLACEABLE,
        CUSTODY,
    ]
    assert classes.of("r", 2, 10.0) == CUSTODY  # the job expired (with its margin)
    assert classes.of("x", 0, 0.0) == CUSTODY


def test_eviction_takes_delivered_then_replaceable_least_recently_used_never_custody(
    tmp_path: Path,
) -> None:
    policy = Policy()
    with opened(tmp_path / "c", 4 * MIB, policy) as cache:
        for key, index in [("c", 0), ("r", 0), ("d", 0), ("r", 1)]:
            assert put(cache, key, index)
        gone = []
        for n in range(4):
            before = held(cache)
            assert put(cache, "n", n)
            gone += sorted(before - held(cache))
        assert gone == [("d", 0), ("r", 0), ("r", 1), ("n", 0)]
        assert ("c", 0) in held(cache)
        usage = cache.usage()
        assert (usage.classes.custody, usage.classes.replaceable) == (MIB, 3 * MIB)


def test_when_only_custody_is_left_a_put_is_refused_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, expect_logs: Callable[..., None]
) -> None:
    expect_logs(FULL, level=logging.WARNING, count=1)
    policy = Policy()
    with opened(tmp_path / "c", 2 * MIB, policy) as cache:
        assert put(cache, "n", 0) and put(cache, "n", 1)
        policy.now = 1.0
        policy.value = Classes(clock=lambda: policy.now)  # their jobs expired
        assert not put(cache, "r", 0)
        assert not put(cache, "r", 1)  # the same: no second warning
        assert held(cache) == {("n", 0), ("n", 1)}
        assert f"({2 * MIB} bytes" in caplog.text
        policy.value = Classes(frozenset({"n"}), clock=lambda: policy.now)  # delivered
        assert put(cache, "r", 0)
        assert held(cache) == {("n", 1), ("r", 0)}


def test_custody_over_a_lowered_cache_size_stays_whole_and_nothing_new_is_cached(
    tmp_path: Path, expect_logs: Callable[..., None]
) -> None:
    expect_logs(OVER, level=logging.WARNING, count=1)
    policy = Policy()
    with opened(tmp_path / "c", 8 * MIB, policy) as cache:
        for key, index in [("c", 0), ("c", 1), ("c", 2), ("r", 0), ("d", 0)]:
            assert put(cache, key, index)
    with opened(tmp_path / "c", 2 * MIB, policy) as smaller:
        assert len(held(smaller)) == 5  # nothing evicted before the classes are known
        smaller.fit()
        assert held(smaller) == {("c", 0), ("c", 1), ("c", 2)}
        assert not put(smaller, "n", 0)  # said once already, by fit
        smaller.fit()
        assert held(smaller) == {("c", 0), ("c", 1), ("c", 2)}


def test_without_classes_the_cache_is_plain_lru(tmp_path: Path) -> None:
    ticks = itertools.count()
    with DiskCache(tmp_path / "c", 2 * MIB, clock=lambda: float(next(ticks))) as cache:
        for key, index in [("c", 0), ("d", 0), ("n", 0)]:
            assert put(cache, key, index)
        assert held(cache) == {("d", 0), ("n", 0)}
        assert cache.usage().classes.replaceable == 2 * MIB
