"""Fast checks of bytes at rest: XXH3 sums per 64 KiB granule, and reads of ranges."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from glacierfs.cache.disk import DiskCache, blocks, reads
from glacierfs.cache.disk.granules import GRANULE
from glacierfs.treehash import MIB
from tests.support.files import flip_byte
from tests.test_diskcache import DAMAGED, OWNER, data_file, leaf, put, write_v1_index


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def cache(root: Path) -> Iterator[DiskCache]:
    with DiskCache(root, 64 * MIB) as opened:
        yield opened


def stored_sums(root: Path, key: str, index: int) -> bytes | None:
    with sqlite3.connect(root / "v1" / "index.sqlite3") as db:
        query = "SELECT sums FROM leaves WHERE key = ? AND idx = ?"
        row = db.execute(query, (key, index)).fetchone()
    return None if row[0] is None else bytes(row[0])


def expected_sums(data: bytes) -> bytes:
    return b"".join(
        xxhash.xxh3_64_digest(data[n : n + GRANULE]) for n in range(0, len(data), GRANULE)
    )


def flip(root: Path, key: str, offset: int) -> None:
    flip_byte(data_file(root, key), offset)


class NoSha256:
    """Stands for hashlib in the read path: a SHA-256 there fails the test."""

    @staticmethod
    def sha256(data: object) -> object:
        raise AssertionError("SHA-256 on a read of a leaf that has sums")


class PreadSizes:
    """Records the size of every pread of a data file."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self._pread = os.pread

    def __call__(self, fd: int, length: int, offset: int) -> bytes:
        self.sizes.append(length)
        return self._pread(fd, length, offset)


@pytest.fixture
def preads(monkeypatch: pytest.MonkeyPatch) -> PreadSizes:
    recorder = PreadSizes()
    monkeypatch.setattr(blocks.os, "pread", recorder)
    return recorder


# --- sums stored with each leaf ------------------------------------------------------


def test_a_put_stores_a_sum_per_granule_the_last_short(root: Path, cache: DiskCache) -> None:
    put(cache, "a", 0, 3)  # whole leaves
    put(cache, "b", 2, 1)  # 1000 bytes: one short granule
    put(cache, "c", 0, 1)  # 5000 bytes
    assert stored_sums(root, "a", 1) == expected_sums(leaf("a", 1))
    assert len(expected_sums(leaf("a", 1))) == 16 * 8
    assert stored_sums(root, "b", 2) == expected_sums(leaf("b", 2))
    assert len(stored_sums(root, "c", 0) or b"") == 8


def test_a_first_read_checks_the_sums_not_sha256(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with DiskCache(root, 64 * MIB) as cache:
        put(cache, "a", 0, 3)
    monkeypatch.setattr(reads, "hashlib", NoSha256)
    with DiskCache(root, 64 * MIB) as cache:
        assert [cache.get("a", i) for i in range(3)] == [leaf("a", i) for i in range(3)]


@pytest.mark.expected_logs(DAMAGED)
@pytest.mark.parametrize("where", [0, 5 * GRANULE + 77, MIB - 1])
def test_a_flipped_byte_anywhere_in_a_leaf_fails_its_sums(root: Path, where: int) -> None:
    with DiskCache(root, 64 * MIB) as cache:
        put(cache, "a", 0, 3)
    flip(root, "a", MIB + where)
    with DiskCache(root, 64 * MIB) as cache:
        assert cache.get("a", 1) is None
        assert not cache.contains("a", 1)
        assert cache.get("a", 2) == leaf("a", 2)


# --- rows from before the sums -------------------------------------------------------


def test_rows_without_sums_are_checked_by_sha256_once_then_get_sums(root: Path) -> None:
    write_v1_index(root, "a", 3)
    with DiskCache(root, 64 * MIB) as cache:
        assert stored_sums(root, "a", 1) is None
        assert cache.get("a", 1) == leaf("a", 1)
        assert stored_sums(root, "a", 1) == expected_sums(leaf("a", 1))
        assert stored_sums(root, "a", 0) is None  # not read yet


@pytest.mark.expected_logs(DAMAGED)
def test_a_damaged_row_without_sums_is_dropped_not_given_sums(root: Path) -> None:
    write_v1_index(root, "a", 2)
    flip(root, "a", 3)
    with DiskCache(root, 64 * MIB) as cache:
        assert cache.get("a", 0) is None
        assert not cache.contains("a", 0)
        assert cache.get("a", 1) == leaf("a", 1)


@pytest.mark.expected_logs(DAMAGED)
def test_sums_filled_in_catch_later_damage(root: Path) -> None:
    write_v1_index(root, "a", 1)
    with DiskCache(root, 64 * MIB) as cache:
        assert cache.get("a", 0) == leaf("a", 0)
    flip(root, "a", 9 * GRANULE)
    with DiskCache(root, 64 * MIB) as cache:
        assert cache.get("a", 0) is None


def test_sums_of_another_algorithm_are_dropped_at_open(root: Path) -> None:
    with DiskCache(root, 64 * MIB) as cache:
        put(cache, "a", 0, 1)
    with sqlite3.connect(root / "v1" / "index.sqlite3") as db:
        db.execute("UPDATE meta SET value = '\"crc32c per 4096 bytes\"'")
    with DiskCache(root, 64 * MIB) as cache:
        assert stored_sums(root, "a", 0) is None
        assert cache.get("a", 0) == leaf("a", 0)  # by SHA-256, and given sums again
        assert stored_sums(root, "a", 0) == expected_sums(leaf("a", 0))


# --- reads of ranges -----------------------------------------------------------------


def test_a_small_read_reads_its_granule_once_then_only_its_bytes(
    cache: DiskCache, preads: PreadSizes
) -> None:
    put(cache, "a", 0, 2)
    offset = 3 * GRANULE + 100
    assert cache.read_range("a", 1, offset, 4096, OWNER) == leaf("a", 1)[offset : offset + 4096]
    assert (
        cache.read_range("a", 1, offset + 8192, 4096, OWNER)
        == leaf("a", 1)[offset + 8192 : offset + 12288]
    )
    assert preads.sizes == [GRANULE, 4096]


def test_a_read_across_granules_checks_only_those_not_checked(
    cache: DiskCache, preads: PreadSizes
) -> None:
    put(cache, "a", 0, 1)
    data = leaf("a", 0)
    assert cache.read_range("a", 0, 0, 10, OWNER) == data[:10]
    assert cache.read_range("a", 0, GRANULE - 5, 10, OWNER) == data[GRANULE - 5 : GRANULE + 5]
    assert cache.read_range("a", 0, GRANULE - 5, 10, OWNER) == data[GRANULE - 5 : GRANULE + 5]
    assert preads.sizes == [GRANULE, 2 * GRANULE, 10]


def test_after_a_whole_leaf_read_ranges_read_only_their_bytes(
    cache: DiskCache, preads: PreadSizes
) -> None:
    put(cache, "a", 0, 1)
    assert cache.get("a", 0) == leaf("a", 0)
    assert cache.read_range("a", 0, 12345, 4096, OWNER) == leaf("a", 0)[12345 : 12345 + 4096]
    assert preads.sizes == [MIB, 4096]


def test_after_every_granule_is_read_in_ranges_the_leaf_is_not_hashed_again(
    cache: DiskCache, preads: PreadSizes, monkeypatch: pytest.MonkeyPatch
) -> None:
    put(cache, "b", 2, 1)  # a short leaf: 1000 bytes, one granule
    assert cache.read_range("b", 2, 0, 1000, OWNER) == leaf("b", 2)
    monkeypatch.setattr(reads.granules, "matches", None)  # any check would fail here
    assert cache.get("b", 2) == leaf("b", 2)


@pytest.mark.expected_logs(DAMAGED)
def test_damage_in_one_granule_fails_only_reads_that_touch_it(root: Path) -> None:
    with DiskCache(root, 64 * MIB) as cache:
        put(cache, "a", 0, 2)
    flip(root, "a", MIB + 7 * GRANULE + 3)
    with DiskCache(root, 64 * MIB) as cache:
        data = leaf("a", 1)
        for start in (0, 6 * GRANULE, 8 * GRANULE, MIB - 4096):
            assert cache.read_range("a", 1, start, 4096, OWNER) == data[start : start + 4096]
        assert cache.contains("a", 1)
        assert cache.read_range("a", 1, 7 * GRANULE - 10, 20, OWNER) is None
        assert not cache.contains("a", 1)  # dropped, to be fetched again
        assert cache.read_range("a", 1, 0, 4096, OWNER) is None
        assert cache.get("a", 0) == leaf("a", 0)


@pytest.mark.expected_logs(DAMAGED)
def test_a_truncated_file_fails_a_range_read_even_after_its_check(
    root: Path, cache: DiskCache
) -> None:
    put(cache, "a", 0, 3)
    assert cache.read_range("a", 2, MIB - 100, 100, OWNER) == leaf("a", 2)[-100:]
    os.truncate(data_file(root, "a"), 2 * MIB + 10)
    assert cache.read_range("a", 2, MIB - 100, 100, OWNER) is None


def test_a_range_read_of_a_row_without_sums_checks_the_whole_leaf(root: Path) -> None:
    write_v1_index(root, "a", 2)
    with DiskCache(root, 64 * MIB) as cache:
        assert cache.share("a", [hashlib.sha256(leaf("a", i)).digest() for i in range(2)])
        assert cache.read_range("a", 1, 10, 20, OWNER) == leaf("a", 1)[10:30]
        assert stored_sums(root, "a", 1) == expected_sums(leaf("a", 1))


def test_a_range_read_answers_only_the_leaf_owner(cache: DiskCache) -> None:
    put(cache, "a", 0, 1, owner="A")
    assert cache.read_range("a", 0, 0, 10, "B") is None
    assert cache.read_range("a", 0, 0, 10, "A") == leaf("a", 0)[:10]
    assert cache.read_range("a", 1, 0, 10, "A") is None  # absent


def test_a_range_outside_the_leaf_is_refused(cache: DiskCache) -> None:
    put(cache, "c", 0, 1)
    assert cache.read_range("c", 0, 5000, 0, OWNER) == b""
    with pytest.raises(ValueError):
        cache.read_range("c", 0, 4990, 11, OWNER)
    with pytest.raises(ValueError):
        cache.read_range("c", 0, -1, 2, OWNER)
    assert cache.read_range("c", 0, 4990, 10, OWNER) == leaf("c", 0)[4990:]


@settings(max_examples=60, deadline=None)
@given(
    reads_=st.lists(
        st.tuples(st.integers(0, MIB + 1000 - 1), st.integers(1, 3 * GRANULE)),
        min_size=1,
        max_size=8,
    )
)
def test_any_range_reads_back_exactly(tmp_path_factory: pytest.TempPathFactory, reads_) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("cache") / "cache"
    with DiskCache(root, 8 * MIB) as cache:
        put(cache, "b", 1, 2)  # a whole leaf and the short last one
        for offset, length in reads_:
            index, at = (1, offset) if offset < MIB else (2, offset - MIB)
            size = len(leaf("b", index))
            length = min(length, size - at)
            assert (
                cache.read_range("b", index, at, length, OWNER)
                == leaf("b", index)[at : at + length]
            )
