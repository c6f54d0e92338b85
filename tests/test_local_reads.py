"""Inline reads of cached leaves (glacierfs.cache.local), against a real DiskCache.

What is proven here: the bytes read are the leaf's and only those asked for (plus the
covering granules the first time); a damaged granule is never served and its leaf is
dropped; a leaf removed (and rewritten) while a view of it is held, even in the middle of
a read, is never served from that view; rows without sums are left to the checked path.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from glacierfs.cache import local
from glacierfs.cache.disk import DiskCache
from glacierfs.cache.disk.granules import GRANULE
from glacierfs.cache.local import LocalReads
from glacierfs.cache.replies import ReplyPool
from glacierfs.treehash import MIB
from tests.test_diskcache import DAMAGED, OWNER, Clock, leaf, put, write_v1_index
from tests.test_diskcache_granules import flip

KIB = 1 << 10


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[DiskCache]:
    with DiskCache(tmp_path / "cache", 64 * MIB) as opened:
        yield opened


def digest(key: str, index: int) -> bytes:
    return hashlib.sha256(leaf(key, index)).digest()


def run(cache: DiskCache, steps: Callable[[LocalReads], Any]) -> Any:
    """``steps(local)`` on a trio loop, with a LocalReads over ``cache``."""

    async def main() -> Any:
        reads = LocalReads(cache.reads, trio.CapacityLimiter(2))
        try:
            return await steps(reads)
        finally:
            reads.close()

    return trio.run(main)


async def read(reads: LocalReads, key: str, offset: int, end: int) -> bytes | None:
    digests = [digest(key, i) for i in range(offset // MIB, (end - 1) // MIB + 1)]
    found = await reads.read(key, offset, end, digests)
    return None if found is None else bytes(found)


def test_reads_the_bytes_asked_for_granules_first_then_just_the_bytes(cache: DiskCache) -> None:
    put(cache, "a", 0, 3)
    whole = b"".join(leaf("a", i) for i in range(3))

    async def steps(reads: LocalReads) -> None:
        offset = MIB + 5 * GRANULE + 100
        assert await read(reads, "a", offset, offset + 4 * KIB) == whole[offset : offset + 4 * KIB]
        assert reads.bytes_read == GRANULE  # its granule, checked
        assert await read(reads, "a", offset, offset + 4 * KIB) == whole[offset : offset + 4 * KIB]
        assert reads.bytes_read == GRANULE + 4 * KIB  # checked: just the bytes
        across = MIB - 10  # across two leaves: one read of the file
        assert await read(reads, "a", across, across + 20) == whole[across : across + 20]
        assert reads.bytes_read == GRANULE + 4 * KIB + 2 * GRANULE
        assert await read(reads, "a", 0, 3 * MIB) == whole
        assert reads.inline + reads.threaded == 4

    run(cache, steps)


def test_a_short_last_leaf_reads_to_its_end(cache: DiskCache) -> None:
    put(cache, "b", 0, 3)  # 2 MiB + 1000

    async def steps(reads: LocalReads) -> None:
        assert await read(reads, "b", 2 * MIB, 2 * MIB + 1000) == leaf("b", 2)
        assert await read(reads, "b", 2 * MIB + 990, 2 * MIB + 1001) is None  # past its end

    run(cache, steps)


@pytest.mark.expected_logs(DAMAGED)
def test_a_flipped_byte_is_never_served_and_its_leaf_is_dropped(
    cache: DiskCache, tmp_path: Path
) -> None:
    put(cache, "a", 0, 3)
    flip(tmp_path / "cache", "a", MIB + 7 * GRANULE + 5)

    async def steps(reads: LocalReads) -> None:
        assert await read(reads, "a", MIB, MIB + 4 * KIB) == leaf("a", 1)[: 4 * KIB]  # not there
        assert await read(reads, "a", MIB + 7 * GRANULE, MIB + 7 * GRANULE + 8) is None
        assert not cache.contains("a", 1)  # dropped: the caller fetches it again
        assert await read(reads, "a", 0, 8) == leaf("a", 0)[:8]  # the others stay

    run(cache, steps)


@pytest.mark.expected_logs(DAMAGED)
def test_a_truncated_file_is_a_short_read_and_drops_the_leaf(
    cache: DiskCache, tmp_path: Path
) -> None:
    put(cache, "a", 0, 3)

    async def steps(reads: LocalReads) -> None:
        assert await read(reads, "a", 2 * MIB, 2 * MIB + 8) == leaf("a", 2)[:8]  # checked now
        os.truncate(tmp_path / "cache" / "v1" / "data" / _name("a"), 2 * MIB + GRANULE)
        assert await read(reads, "a", 2 * MIB + 2 * GRANULE, 2 * MIB + 2 * GRANULE + 8) is None
        assert not cache.contains("a", 2)

    run(cache, steps)


def _name(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def test_a_leaf_replaced_after_its_view_was_taken_is_not_served_from_it(
    cache: DiskCache,
) -> None:
    put(cache, "a", 0, 2)

    async def steps(reads: LocalReads) -> None:
        assert await read(reads, "a", MIB, 2 * MIB) == leaf("a", 1)  # viewed, all checked
        cache.drop("a", 1)
        other = bytes(reversed(leaf("a", 1)))
        cache.put("a", 1, other, [hashlib.sha256(other).digest()], "block", owner=OWNER)
        assert await read(reads, "a", MIB, 2 * MIB) is None  # the old digest: not these bytes
        new = await reads.read("a", MIB, 2 * MIB, [hashlib.sha256(other).digest()])
        assert new is not None and bytes(new) == other  # the new digest: checked afresh

    run(cache, steps)


@pytest.mark.parametrize("rewrite", [False, True])
def test_a_removal_during_a_read_is_never_served(
    cache: DiskCache, monkeypatch: pytest.MonkeyPatch, rewrite: bool
) -> None:
    """The removal (punched, or punched and rewritten with other bytes) lands between
    the view's check of the generation and the preadv: the generation after it refuses
    what was read."""
    put(cache, "a", 0, 2)
    other = bytes(reversed(leaf("a", 1)))
    real = os.preadv
    raced: list[int] = []

    def racing(fd: int, buffers: list[memoryview], offset: int, *flags: int) -> int:
        if not raced:
            raced.append(offset)
            cache.drop("a", 1)
            if rewrite:
                cache.put("a", 1, other, [hashlib.sha256(other).digest()], "block", owner=OWNER)
        return real(fd, buffers, offset, *flags)

    async def steps(reads: LocalReads) -> None:
        assert await read(reads, "a", MIB, 2 * MIB) == leaf("a", 1)  # viewed, all checked
        monkeypatch.setattr(local.os, "preadv", racing)
        assert await read(reads, "a", MIB + 100, MIB + 200) is None
        assert raced

    run(cache, steps)


def test_rows_without_sums_are_left_to_the_checked_path(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    write_v1_index(root, "a", 3)
    with DiskCache(root, 64 * MIB) as cache:

        async def steps(reads: LocalReads) -> None:
            assert await read(reads, "a", 0, 8) is None  # no sums: SHA-256 whole, elsewhere
            assert cache.get("a", 0) == leaf("a", 0)  # which fills its sums in
            assert await read(reads, "a", 0, 8) == leaf("a", 0)[:8]

        run(cache, steps)


def test_hints_ask_the_page_cache_for_the_leaves_ahead(
    cache: DiskCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    put(cache, "a", 0, 3)
    advised: list[tuple[int, int]] = []

    def advise(fd: int, offset: int, length: int, advice: int) -> None:
        advised.append((offset, length))

    monkeypatch.setattr(local.os, "posix_fadvise", advise)

    async def steps(reads: LocalReads) -> None:
        async with trio.open_nursery() as nursery:
            reads.hint_in(nursery)
            assert await read(reads, "a", 0, 8) == leaf("a", 0)[:8]
            reads.hint("a", 1, 5)  # too few to bother a thread with
            reads.hint("a", 1, 5, final=True)  # the object's end: leaves 3 and 4 are not cached
            reads.hint("a", 1, 5, final=True)  # hinted already
        assert advised == [(MIB, 2 * MIB)]

    run(cache, steps)


@pytest.mark.parametrize("reads", [1, local.TOUCH_READS])
def test_inline_reads_count_as_uses_for_eviction(tmp_path: Path, reads: int) -> None:
    """Leaf 0, read inline (``reads`` times: the last use reaches the eviction order in
    batches, or when the mount ends), is used after leaf 1: leaf 1 goes first."""
    clock = Clock()
    with DiskCache(tmp_path / "cache", 3 * MIB, clock=clock) as cache:
        for i in range(3):
            clock.tick()
            put(cache, "a", i, 1)
        clock.tick()

        async def steps(reads_: LocalReads) -> None:
            async with trio.open_nursery() as nursery:
                reads_.hint_in(nursery)
                for _ in range(reads):
                    assert await read(reads_, "a", 0, 8) == leaf("a", 0)[:8]

        run(cache, steps)  # its end (close) gives the rest to the eviction order
        clock.tick()
        assert put(cache, "b", 0, 1)
        assert sorted(cache.leaves("a")) == [0, 2]


def test_the_reply_pool_reuses_only_its_own_large_buffers() -> None:
    pool = ReplyPool(keep=1)
    small = pool.take(4 * KIB)
    assert len(small) == 4 * KIB  # fresh: as cheap as a pooled one
    pool.give(small)
    assert pool.take(4 * KIB) is not small
    large = pool.take(MIB + 1)
    assert len(large) == 2 * MIB
    pool.give(large)
    assert pool.take(2 * MIB) is large
    pool.give(bytearray(2 * MIB))  # not the pool's: not kept
    assert pool.take(2 * MIB) is not large
    huge = pool.take(64 * MIB)
    pool.give(huge)
    assert pool.take(64 * MIB) is not huge
    buffer = pool.take(MIB)
    pool.recycle_after_reply(memoryview(buffer)[:10])  # replied: free for the next read
    assert pool.take(MIB) is buffer
    joined = pool.take(MIB)
    pool.recycle_after_reply(bytes(joined[:10]))  # another buffer went out: this one stays
    assert pool.take(MIB) is not joined
