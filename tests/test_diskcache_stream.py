"""Streamed puts into the disk cache, on real files: claimed before the bytes arrive,
written leaf by leaf unverified, committed in one transaction or abandoned and punched."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from glacierfs.cache.disk import DiskCache
from tests.support.files import has_data
from tests.test_diskcache import CountingWriter, FillableDisk, data_file

MIB = 1 << 20
OWNER = "job1"


def content(key: str, index: int, length: int = MIB) -> bytes:
    pattern = f"<{key}:{index}>".encode()
    return (pattern * (length // len(pattern) + 1))[:length]


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def cache(root: Path) -> Iterator[DiskCache]:
    with DiskCache(root, 64 * MIB) as opened:
        yield opened


def stream(cache: DiskCache, key: str, first: int, count: int, last: int = MIB) -> list[bytes]:
    """Claim, write every leaf, commit: the digests."""
    lengths = [MIB] * (count - 1) + [last]
    claim = cache.begin_put(key, first, lengths, OWNER)
    assert claim is not None
    digests = []
    for n, length in enumerate(lengths):
        data = content(key, first + n, length)
        digests.append(sha(data))
        assert cache.write_leaf(claim, n, memoryview(data), digests[-1])
    assert cache.commit(claim, digests, "block") == set(range(count))
    return digests


def test_a_committed_stream_comes_back_leaf_by_leaf(cache: DiskCache) -> None:
    digests = stream(cache, "a", 2, 3, last=1000)
    assert cache.leaves("a").keys() == {2, 3, 4}
    for n in range(3):
        expected = content("a", 2 + n, 1000 if n == 2 else MIB)
        assert cache.get_leaf("a", 2 + n, OWNER) == (expected, digests[n])
    assert cache.usage().used == 2 * MIB + 1000


def test_written_leaves_have_no_row_until_the_commit(cache: DiskCache) -> None:
    claim = cache.begin_put("a", 0, [MIB, MIB], OWNER)
    assert claim is not None
    data = content("a", 0)
    assert cache.write_leaf(claim, 0, memoryview(data), sha(data))
    assert cache.leaves("a") == {}
    assert cache.get("a", 0) is None
    cache.abandon(claim)


def test_an_abandoned_stream_leaves_no_row_and_punches_its_bytes(
    cache: DiskCache, root: Path
) -> None:
    stream(cache, "a", 0, 1)  # a leaf of the object that stays
    claim = cache.begin_put("a", 4, [MIB, MIB, MIB], OWNER)
    assert claim is not None
    for n in range(2):  # half written, then the body is cut
        data = content("a", 4 + n)
        assert cache.write_leaf(claim, n, memoryview(data), sha(data))
    assert has_data(data_file(root, "a"), 4 * MIB, 6 * MIB)
    cache.abandon(claim)
    assert cache.leaves("a").keys() == {0}
    assert not has_data(data_file(root, "a"), MIB, 8 * MIB)
    assert cache.get("a", 0) == content("a", 0)
    assert cache.usage().used == MIB


def test_an_abandoned_claim_gives_its_room_back(root: Path) -> None:
    with DiskCache(root, 4 * MIB) as small:
        claim = small.begin_put("a", 0, [MIB] * 4, OWNER)
        assert claim is not None
        assert small.begin_put("b", 0, [MIB], OWNER) is None  # all reserved by the claim
        small.abandon(claim)
        again = small.begin_put("b", 0, [MIB], OWNER)
        assert again is not None
        small.abandon(again)


def test_a_claim_larger_than_the_cache_is_refused(root: Path) -> None:
    with DiskCache(root, 2 * MIB) as small:
        assert small.begin_put("a", 0, [MIB] * 3, OWNER) is None


def test_a_present_leaf_is_hashed_never_written_and_gains_the_owner(root: Path) -> None:
    writer = CountingWriter()
    with DiskCache(root, 64 * MIB, pwrite=writer) as cache:
        stream(cache, "a", 1, 1)
        writer.offsets.clear()
        claim = cache.begin_put("a", 0, [MIB] * 3, "job2")
        assert claim is not None
        pieces = [content("a", i) for i in range(3)]
        for n, data in enumerate(pieces):
            assert cache.write_leaf(claim, n, memoryview(data), sha(data))
        assert cache.commit(claim, [sha(p) for p in pieces], "block") == {0, 1, 2}
        assert 1 * MIB not in writer.offsets
        assert sorted(writer.offsets) == [0, 2 * MIB]
        assert cache.leaves("a")[1].owners == f"{OWNER} job2"


def test_a_present_leaf_with_other_bytes_is_not_taken_nor_overwritten(cache: DiskCache) -> None:
    stream(cache, "a", 0, 1)
    claim = cache.begin_put("a", 0, [MIB], "job2")
    assert claim is not None
    other = b"x" * MIB
    assert not cache.write_leaf(claim, 0, memoryview(other), sha(other))  # kept by the caller
    assert cache.commit(claim, [sha(other)], "block") == set()
    assert cache.get_leaf("a", 0, OWNER) == (content("a", 0), sha(content("a", 0)))


def test_a_leaf_another_stream_is_writing_is_left_to_it(cache: DiskCache) -> None:
    first = cache.begin_put("a", 0, [MIB], OWNER)
    second = cache.begin_put("a", 0, [MIB], "job2")
    assert first is not None and second is not None
    data = content("a", 0)
    assert not cache.write_leaf(second, 0, memoryview(data), sha(data))
    assert cache.write_leaf(first, 0, memoryview(data), sha(data))
    assert cache.commit(second, [sha(data)], "block") == set()
    assert cache.commit(first, [sha(data)], "block") == {0}
    assert cache.get("a", 0) == data


@pytest.mark.expected_logs(r"disk cache .* cannot be written")
def test_a_disk_that_fills_mid_stream_keeps_the_leaves_written_before(root: Path) -> None:
    disk = FillableDisk()
    with DiskCache(root, 64 * MIB, pwrite=disk.pwrite) as cache:
        claim = cache.begin_put("a", 0, [MIB] * 3, OWNER)
        assert claim is not None
        pieces = [content("a", i) for i in range(3)]
        assert cache.write_leaf(claim, 0, memoryview(pieces[0]), sha(pieces[0]))
        disk.full = True
        assert not cache.write_leaf(claim, 1, memoryview(pieces[1]), sha(pieces[1]))
        disk.full = False  # a refused claim writes no more, even when space returns
        assert not cache.write_leaf(claim, 2, memoryview(pieces[2]), sha(pieces[2]))
        assert cache.commit(claim, [sha(p) for p in pieces], "block") == {0}
        assert not cache.writable
        assert cache.leaves("a").keys() == {0}
        assert not has_data(data_file(root, "a"), MIB, 3 * MIB)
        stream(cache, "a", 1, 2)  # space is back: the next put succeeds
        assert cache.writable


def test_a_stream_that_outlives_the_cache_commits_nothing(root: Path) -> None:
    cache = DiskCache(root, 64 * MIB)
    claim = cache.begin_put("a", 0, [MIB, MIB], OWNER)
    assert claim is not None
    data = content("a", 0)
    assert cache.write_leaf(claim, 0, memoryview(data), sha(data))
    cache.close()  # the mount ended while the fetch's thread went on
    late = content("a", 1)
    assert not cache.write_leaf(claim, 1, memoryview(late), sha(late))  # no write after close
    assert cache.commit(claim, [sha(data), sha(late)], "block") == set()
    with DiskCache(root, 64 * MIB) as again:  # not closed cleanly: what it wrote goes
        assert again.leaves("a") == {}
        assert not has_data(data_file(root, "a"), 0, 2 * MIB)
    with DiskCache(root, 64 * MIB) as later:  # and that one was closed cleanly
        assert later.usage().used == 0


def test_writes_into_one_data_file_take_its_lock_one_at_a_time(root: Path) -> None:
    """Streams of one object write through the same open file, each pwrite under its
    lock: the kernel's lock on the file is never fought over by the connections (its
    waiters would spin on the 2 cores the writer needs)."""
    held: list[bool] = []
    claims: list[object] = []

    def pwrite(fd: int, data: memoryview, offset: int) -> int:
        held.extend(claim.handle.writes.locked() for claim in claims)  # type: ignore[attr-defined]
        return os.pwrite(fd, data, offset)

    with DiskCache(root, 64 * MIB, pwrite=pwrite) as cache:
        first = cache.begin_put("k", 0, [MIB, MIB], OWNER)
        second = cache.begin_put("k", 2, [MIB], OWNER)
        assert first is not None and second is not None
        assert first.handle is second.handle
        claims[:] = [first, second]
        for claim, n in ((first, 0), (second, 0), (first, 1)):
            data = content("k", claim.first + n)
            assert cache.write_leaf(claim, n, memoryview(data), sha(data))
        assert held and all(held)
        cache.abandon(first)
        cache.abandon(second)
