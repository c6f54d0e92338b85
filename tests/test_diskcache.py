"""The disk cache, on real files: what is put comes back whole or not at all."""

from __future__ import annotations

import errno
import hashlib
import inspect
import logging
import os
import random
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from glacierfs.cache.disk import SCHEMA_VERSION, SHARED, DiskCache
from glacierfs.errors import ConfigError
from glacierfs.treehash import MIB

DAMAGED = r"disk cache: leaf \d+ of \w+ is damaged on disk: dropped"
"""What the cache logs when a leaf fails its digest (tests/support/checklogs.py)."""

SIZES = {"a": 3 * MIB, "b": 2 * MIB + 1000, "c": 5000}
"""Objects the tests put: whole leaves, a short last leaf, a single short leaf."""


def content(key: str, index: int, length: int) -> bytes:
    """The bytes of leaf ``index`` of ``key``: unique to the leaf, as real data is."""
    pattern = f"<{key}:{index}>".encode()
    return (pattern * (length // len(pattern) + 1))[:length]


def leaf(key: str, index: int) -> bytes:
    return content(key, index, min(MIB, SIZES[key] - index * MIB))


def leaf_count(key: str) -> int:
    return -(-SIZES[key] // MIB)


OWNER = "job1"


def put(
    cache: DiskCache,
    key: str,
    first: int,
    count: int,
    verified: str = "block",
    owner: str = OWNER,
) -> bool:
    pieces = [leaf(key, i) for i in range(first, first + count)]
    digests = [hashlib.sha256(p).digest() for p in pieces]
    return cache.put(key, first, b"".join(pieces), digests, verified, owner=owner)


def data_file(root: Path, key: str) -> Path:
    """Where the module's docstring says the object's bytes are."""
    return root / "v1" / "data" / hashlib.sha256(key.encode()).hexdigest()


class Clock:
    """A clock that moves only when told: the LRU order, without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def tick(self) -> float:
        self.now += 1.0
        return self.now


class FillableDisk:
    """A pwrite that can be made to fail as a full disk does."""

    def __init__(self) -> None:
        self.full = False

    def pwrite(self, fd: int, data: memoryview, offset: int) -> int:
        if self.full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return os.pwrite(fd, data, offset)


class CountingWriter:
    """A pwrite that notes where it wrote."""

    def __init__(self) -> None:
        self.offsets: list[int] = []

    def __call__(self, fd: int, data: memoryview, offset: int) -> int:
        self.offsets.append(offset)
        return os.pwrite(fd, data, offset)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def cache(root: Path) -> Iterator[DiskCache]:
    with DiskCache(root, 64 * MIB) as opened:
        yield opened


# --- storing and reading -------------------------------------------------------------


def test_put_then_get_returns_each_leaf(cache: DiskCache) -> None:
    assert put(cache, "a", 0, 3)
    for i in range(3):
        assert cache.get("a", i) == leaf("a", i)


def test_get_of_absent_leaf_is_none(cache: DiskCache) -> None:
    put(cache, "a", 1, 1)
    assert cache.get("a", 0) is None
    assert cache.get("a", 2) is None
    assert cache.get("b", 1) is None


def test_short_last_leaf_comes_back_at_its_length(cache: DiskCache) -> None:
    assert put(cache, "b", 0, 3)
    assert cache.get("b", 2) == leaf("b", 2)
    assert len(leaf("b", 2)) == 1000
    assert put(cache, "c", 0, 1)
    assert cache.get("c", 0) == leaf("c", 0)


def test_put_accepts_bytearray_and_memoryview(cache: DiskCache) -> None:
    data = leaf("a", 0)
    digest = [hashlib.sha256(data).digest()]
    assert cache.put("a", 0, bytearray(data), digest, "block", owner=OWNER)
    assert cache.put("x", 0, memoryview(data), digest, "block", owner=OWNER)
    assert cache.get("a", 0) == cache.get("x", 0) == data


def test_data_that_is_not_the_digests_leaves_is_refused(cache: DiskCache) -> None:
    digest = hashlib.sha256(b"").digest()
    with pytest.raises(ValueError):
        cache.put("a", 0, b"x" * (MIB + 1), [digest], "block", owner=OWNER)
    with pytest.raises(ValueError):
        cache.put("a", 0, b"x" * MIB, [digest, digest], "block", owner=OWNER)


def test_a_digest_that_is_not_its_leafs_is_refused_and_nothing_is_stored(
    cache: DiskCache,
) -> None:
    """A put does not take the digests it is given on trust: the row would vouch for
    them to every later read."""
    data = leaf("a", 0) + leaf("a", 1)
    digests = [hashlib.sha256(leaf("a", 0)).digest(), hashlib.sha256(b"other").digest()]
    with pytest.raises(ValueError, match="leaf 1 of a"):
        cache.put("a", 0, data, digests, "block", owner=OWNER)
    assert cache.leaves("a") == {}
    assert cache.usage().used == 0


def test_leaves_reports_digest_and_how_verified(cache: DiskCache) -> None:
    put(cache, "a", 0, 1, "block")
    put(cache, "a", 2, 1, "size")
    assert cache.leaves("a") == {
        0: (hashlib.sha256(leaf("a", 0)).digest(), "block", OWNER),
        2: (hashlib.sha256(leaf("a", 2)).digest(), "size", OWNER),
    }
    assert cache.leaves("b") == {}


def test_contains_and_cached_bytes_follow_puts(cache: DiskCache) -> None:
    put(cache, "b", 1, 2)
    assert cache.contains("b", 1) and cache.contains("b", 2)
    assert not cache.contains("b", 0)
    assert cache.cached_bytes("b") == MIB + 1000
    assert cache.cached_bytes("a") == 0


def test_usage_counts_bytes_leaves_and_objects(cache: DiskCache) -> None:
    put(cache, "a", 0, 2)
    put(cache, "c", 0, 1)
    usage = cache.usage()
    assert (usage.used, usage.leaves, usage.objects) == (2 * MIB + 5000, 3, 2)
    assert usage.capacity == 64 * MIB


def test_putting_a_leaf_again_stores_it_once(cache: DiskCache) -> None:
    put(cache, "a", 0, 2)
    assert put(cache, "a", 1, 2)
    assert cache.usage().used == 3 * MIB
    assert [cache.get("a", i) == leaf("a", i) for i in range(3)] == [True] * 3


def test_a_new_digest_for_a_stored_leaf_replaces_it(cache: DiskCache) -> None:
    put(cache, "a", 0, 1)
    other = b"o" * MIB
    assert cache.put("a", 0, other, [hashlib.sha256(other).digest()], "size", owner=OWNER)
    assert cache.get("a", 0) == other
    assert cache.usage().used == MIB


def test_drop_removes_a_leaf_and_a_data_file_left_empty(root: Path, cache: DiskCache) -> None:
    put(cache, "a", 0, 2)
    cache.drop("a", 0)
    assert cache.get("a", 0) is None and not cache.contains("a", 0)
    assert cache.get("a", 1) == leaf("a", 1)
    cache.drop("a", 1)
    cache.drop("a", 7)  # absent: nothing to do
    assert not data_file(root, "a").exists()
    assert cache.usage().used == 0


def test_leaves_survive_reopen(root: Path) -> None:
    with DiskCache(root, 64 * MIB) as cache:
        put(cache, "a", 0, 3, "size")
    with DiskCache(root, 64 * MIB) as cache:
        assert cache.leaves("a")[1][1] == "size"
        assert [cache.get("a", i) == leaf("a", i) for i in range(3)] == [True] * 3
        assert cache.usage().used == 3 * MIB


def test_many_objects_stay_readable_past_the_open_file_limit(cache: DiskCache) -> None:
    keys = [f"object/{n}" for n in range(300)]
    for key in keys:
        digest = hashlib.sha256(key.encode()).digest()
        assert cache.put(key, 0, key.encode(), [digest], "block", owner=OWNER)
    for key in keys + keys[:10]:
        assert cache.get(key, 0) == key.encode()


# --- damage --------------------------------------------------------------------------


@pytest.mark.expected_logs(DAMAGED)
def test_corrupted_bytes_are_a_miss_then_a_put_heals(root: Path) -> None:
    with DiskCache(root, 64 * MIB) as cache:
        put(cache, "a", 0, 3)
    with open(data_file(root, "a"), "r+b") as f:
        f.seek(MIB + 12345)
        f.write(b"rot")
    with DiskCache(root, 64 * MIB) as cache:
        assert cache.get("a", 1) is None
        assert not cache.contains("a", 1)
        assert cache.get("a", 0) == leaf("a", 0)
        assert put(cache, "a", 1, 1)
        assert cache.get("a", 1) == leaf("a", 1)


@pytest.mark.expected_logs(DAMAGED)
def test_leaf_is_checked_on_its_first_read_even_right_after_put(
    root: Path, cache: DiskCache
) -> None:
    put(cache, "a", 0, 1)
    with open(data_file(root, "a"), "r+b") as f:
        f.write(b"X")
    assert cache.get("a", 0) is None


@pytest.mark.expected_logs(DAMAGED)
def test_truncated_file_is_a_miss_even_for_a_leaf_already_checked(
    root: Path, cache: DiskCache
) -> None:
    put(cache, "a", 0, 3)
    assert cache.get("a", 2) == leaf("a", 2)
    os.truncate(data_file(root, "a"), 2 * MIB + 10)
    assert cache.get("a", 2) is None
    assert cache.get("a", 1) == leaf("a", 1)


@pytest.mark.expected_logs(r"disk cache: data file of a unreadable .*: dropped")
def test_missing_data_file_is_a_miss(root: Path) -> None:
    with DiskCache(root, 64 * MIB) as cache:
        put(cache, "a", 0, 2)
    data_file(root, "a").unlink()
    with DiskCache(root, 64 * MIB) as cache:
        assert cache.get("a", 0) is None
        assert cache.leaves("a") == {}
        assert cache.usage().used == 0
        assert put(cache, "a", 0, 1)
        assert cache.get("a", 0) == leaf("a", 0)


@pytest.mark.expected_logs(r"disk cache: data file of a unreadable .*: dropped")
def test_unreadable_data_file_is_a_miss_not_an_error(root: Path) -> None:
    with DiskCache(root, 64 * MIB) as cache:
        put(cache, "a", 0, 1)
    data_file(root, "a").unlink()
    data_file(root, "a").mkdir()
    with DiskCache(root, 64 * MIB) as cache:
        assert cache.get("a", 0) is None
        assert not cache.contains("a", 0)


# --- eviction ------------------------------------------------------------------------


def test_least_recently_used_leaves_are_evicted_first(root: Path) -> None:
    clock = Clock()
    with DiskCache(root, 3 * MIB, clock=clock) as cache:
        for i in range(3):
            clock.tick()
            put(cache, "a", i, 1)
        clock.tick()
        assert cache.get("a", 0) is not None  # now leaf 1 is the least recently used
        clock.tick()
        assert put(cache, "b", 0, 1)
        assert sorted(cache.leaves("a")) == [0, 2]
        assert cache.usage().used == 3 * MIB


def test_last_use_survives_reopen(root: Path) -> None:
    clock = Clock()
    with DiskCache(root, 2 * MIB, clock=clock) as cache:
        put(cache, "a", 0, 1)
        clock.tick()
        put(cache, "a", 1, 1)
        clock.tick()
        cache.get("a", 0)
    with DiskCache(root, 2 * MIB, clock=clock) as cache:
        clock.tick()
        put(cache, "b", 0, 1)
        assert sorted(cache.leaves("a")) == [0]


def test_a_put_never_evicts_its_own_leaves(root: Path) -> None:
    clock = Clock()
    with DiskCache(root, 2 * MIB, clock=clock) as cache:
        put(cache, "a", 0, 1)
        clock.tick()
        put(cache, "b", 0, 1)
        clock.tick()
        assert put(cache, "a", 0, 2)  # a/0 is the oldest, but is being put
        assert sorted(cache.leaves("a")) == [0, 1]
        assert cache.leaves("b") == {}


def test_put_larger_than_the_capacity_is_not_stored(root: Path) -> None:
    with DiskCache(root, 2 * MIB) as cache:
        put(cache, "c", 0, 1)
        assert not put(cache, "a", 0, 3)
        assert cache.leaves("a") == {}
        assert cache.get("c", 0) == leaf("c", 0)


def test_evicted_object_loses_its_data_file(root: Path) -> None:
    clock = Clock()
    with DiskCache(root, 2 * MIB, clock=clock) as cache:
        put(cache, "c", 0, 1)
        clock.tick()
        put(cache, "a", 0, 2)
        assert not data_file(root, "c").exists()
        assert cache.usage().objects == 1


def test_eviction_frees_the_disk_space_of_its_leaves(root: Path) -> None:
    clock = Clock()
    with DiskCache(root, 3 * MIB, clock=clock) as cache:
        put(cache, "a", 0, 3)
        clock.tick()
        put(cache, "b", 0, 2)
        allocated = os.stat(data_file(root, "a")).st_blocks * 512
        assert sorted(cache.leaves("a")) == [2]
    if allocated >= 3 * MIB:
        pytest.skip("this filesystem cannot punch holes")
    assert allocated < 2 * MIB


def test_lower_capacity_at_reopen_evicts_down_to_it(root: Path) -> None:
    with DiskCache(root, 8 * MIB) as cache:
        put(cache, "a", 0, 3)
    with DiskCache(root, 2 * MIB) as cache:
        assert cache.usage().used <= 2 * MIB
        assert cache.usage().leaves == 2


# --- a full or failing disk ----------------------------------------------------------


@pytest.mark.expected_logs(r"disk cache .* cannot be written \(No space left on device")
def test_full_disk_fails_puts_with_one_warning_until_one_succeeds(
    root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    disk = FillableDisk()
    caplog.set_level(logging.INFO, logger="glacierfs.cache.disk")
    with DiskCache(root, 64 * MIB, pwrite=disk.pwrite) as cache:
        disk.full = True
        assert not put(cache, "a", 0, 2)
        assert not put(cache, "b", 0, 1)
        assert cache.leaves("a") == {} and cache.leaves("b") == {}
        assert cache.usage().used == 0
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "No space left" in warnings[0].getMessage()
        disk.full = False
        assert put(cache, "a", 0, 1)
        assert cache.get("a", 0) == leaf("a", 0)
        assert any("resumed" in r.getMessage() for r in caplog.records)
        disk.full = True
        assert not put(cache, "b", 0, 1)
        assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2


def test_short_writes_are_carried_on(root: Path) -> None:
    def dribble(fd: int, data: memoryview, offset: int) -> int:
        return os.pwrite(fd, data[:100_000], offset)

    with DiskCache(root, 64 * MIB, pwrite=dribble) as cache:
        assert put(cache, "a", 0, 3)
        assert cache.get("a", 1) == leaf("a", 1)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through file modes")
def test_read_only_data_directory_fails_puts_but_serves_reads(root: Path) -> None:
    with DiskCache(root, 64 * MIB) as cache:
        put(cache, "a", 0, 1)
        (root / "v1" / "data").chmod(0o500)
        try:
            assert not put(cache, "b", 0, 1)
            assert cache.get("a", 0) == leaf("a", 0)
        finally:
            (root / "v1" / "data").chmod(0o700)


# --- the directory -------------------------------------------------------------------


def test_root_and_missing_parents_are_created_private(tmp_path: Path) -> None:
    root = tmp_path / "x" / "y" / "cache"
    old = os.umask(0o022)
    try:
        with DiskCache(root, 64 * MIB) as cache:
            put(cache, "a", 0, 1)
            cache.put_meta("jobs", "j", {"id": "j"})
            found = list(root.rglob("*"))
            assert any(p.name == "index.sqlite3-wal" for p in found)
            for path in found:
                mode = stat.S_IMODE(path.stat().st_mode)
                assert mode == (0o700 if path.is_dir() else 0o600), path
    finally:
        os.umask(old)
    for path in (tmp_path / "x", tmp_path / "x" / "y", root):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700


def test_root_writable_by_others_is_refused(root: Path) -> None:
    root.mkdir(mode=0o700)
    root.chmod(0o775)
    with pytest.raises(ConfigError, match=r"writable by group or others \(mode 0775\)"):
        DiskCache(root, MIB)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a directory away")
def test_root_of_another_user_is_refused(root: Path) -> None:
    root.mkdir(mode=0o700)
    os.chown(root, 65534, 65534)
    with pytest.raises(ConfigError, match="belongs to uid 65534"):
        DiskCache(root, MIB)


def test_root_that_is_a_file_is_refused(root: Path) -> None:
    root.write_bytes(b"")
    with pytest.raises(ConfigError, match="is not a directory"):
        DiskCache(root, MIB)


def test_second_cache_on_the_same_root_is_refused_until_the_first_closes(root: Path) -> None:
    first = DiskCache(root, MIB)
    with pytest.raises(ConfigError, match=rf"in use by another glacierfs \(pid {os.getpid()}\)"):
        DiskCache(root, MIB)
    first.close()
    DiskCache(root, MIB).close()


def test_cache_held_by_another_process_is_refused_with_its_pid(root: Path) -> None:
    holder = (
        "import sys; from pathlib import Path; from glacierfs.cache.disk import DiskCache\n"
        "cache = DiskCache(Path(sys.argv[1]), 1 << 20); print('ready', flush=True)\n"
        "sys.stdin.read(); cache.close()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", holder, str(root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        with pytest.raises(ConfigError, match=rf"in use by another glacierfs \(pid {child.pid}\)"):
            DiskCache(root, MIB)
    finally:
        child.communicate("")
    DiskCache(root, MIB).close()


def test_index_of_a_future_schema_is_refused(root: Path) -> None:
    DiskCache(root, MIB).close()
    with sqlite3.connect(root / "v1" / "index.sqlite3") as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(ConfigError, match=f"schema {SCHEMA_VERSION + 1}"):
        DiskCache(root, MIB)


def write_v1_index(root: Path, key: str, count: int) -> None:
    """A cache as schema 1 left it: leaves of ``key`` with no owners in the index."""
    DiskCache(root, 64 * MIB).close()
    index = root / "v1" / "index.sqlite3"
    with sqlite3.connect(index) as db:
        db.execute("DROP TABLE leaves")
        db.execute(
            "CREATE TABLE leaves (key TEXT NOT NULL, idx INTEGER NOT NULL,"
            " length INTEGER NOT NULL, digest BLOB NOT NULL, verified TEXT NOT NULL,"
            " used REAL NOT NULL, PRIMARY KEY (key, idx)) WITHOUT ROWID"
        )
        for i in range(count):
            row = (key, i, len(leaf(key, i)), hashlib.sha256(leaf(key, i)).digest(), "block", 1.0)
            db.execute("INSERT INTO leaves VALUES (?, ?, ?, ?, ?, ?)", row)
        db.execute("PRAGMA user_version = 1")
    with data_file(root, key).open("wb") as out:
        for i in range(count):
            out.write(leaf(key, i))


def test_schema_1_leaves_are_kept_and_owned_by_no_job(root: Path) -> None:
    write_v1_index(root, "a", 3)
    writes = CountingWriter()
    with DiskCache(root, 64 * MIB, pwrite=writes) as cache:
        assert {row.owners for row in cache.leaves("a").values()} == {""}
        assert cache.get("a", 1, owner=OWNER) is None  # not served to a job...
        assert cache.get("a", 1) == leaf("a", 1)  # ...but kept
        assert put(cache, "a", 0, 3)  # earned again by the same digests: nothing written
        assert writes.offsets == []
        assert [cache.get("a", i, owner=OWNER) == leaf("a", i) for i in range(3)] == [True] * 3
    with sqlite3.connect(root / "v1" / "index.sqlite3") as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


# --- ownership -----------------------------------------------------------------------


def test_a_leaf_is_served_only_to_its_owner_until_shared(cache: DiskCache) -> None:
    put(cache, "a", 0, 3, owner="A")
    assert cache.get("a", 0, owner="B") is None
    assert cache.get("a", 0, owner="A") == leaf("a", 0)
    digests = [row.digest for _, row in sorted(cache.leaves("a").items())]
    assert not cache.share("a", [digests[0], digests[0], digests[2]])  # not these leaves
    assert cache.get("a", 0, owner="B") is None
    assert cache.share("a", digests)
    assert [cache.get("a", i, owner="B") == leaf("a", i) for i in range(3)] == [True] * 3
    assert {row.owners for row in cache.leaves("a").values()} == {SHARED}


def test_the_same_digest_from_another_owner_is_not_written_again(root: Path) -> None:
    writes = CountingWriter()
    with DiskCache(root, 64 * MIB, pwrite=writes) as cache:
        put(cache, "a", 0, 2, "size", owner="A")
        assert len(writes.offsets) == 1
        assert put(cache, "a", 0, 2, "block", owner="B")
        assert len(writes.offsets) == 1
        assert cache.leaves("a")[1] == (hashlib.sha256(leaf("a", 1)).digest(), "block", "A B")
        assert cache.get("a", 1, owner="A") == cache.get("a", 1, owner="B") == leaf("a", 1)


def test_another_digest_replaces_an_owned_leaf_but_not_a_shared_one(cache: DiskCache) -> None:
    other = b"o" * MIB
    put(cache, "a", 0, 1, owner="A")
    assert cache.put("a", 0, other, [hashlib.sha256(other).digest()], "block", owner="B")
    assert cache.get("a", 0, owner="A") is None
    assert cache.get("a", 0, owner="B") == other
    put(cache, "c", 0, 1, owner="A")
    assert cache.share("c", [cache.leaves("c")[0].digest])
    assert cache.put(
        "c", 0, other[:5000], [hashlib.sha256(other[:5000]).digest()], "block", owner="B"
    )
    assert cache.get("c", 0, owner="B") == leaf("c", 0)


def test_adopt_adds_an_owner_only_to_the_digests_given(cache: DiskCache) -> None:
    put(cache, "a", 0, 3, owner="A")
    digests = [row.digest for _, row in sorted(cache.leaves("a").items())]
    assert not cache.adopt("a", 1, digests[:2], "B")
    assert cache.get("a", 1, owner="B") is None
    assert cache.adopt("a", 1, digests[1:], "B")
    assert [cache.get("a", i, owner="B") is not None for i in range(3)] == [False, True, True]


def test_disown_removes_a_leaf_only_when_no_one_else_vouches_for_it(cache: DiskCache) -> None:
    put(cache, "a", 0, 2, owner="A")
    put(cache, "a", 1, 1, owner="B")
    cache.disown("a", 0, "A")
    cache.disown("a", 1, "A")
    assert not cache.contains("a", 0)
    assert cache.get("a", 1, owner="B") == leaf("a", 1)
    assert cache.get("a", 1, owner="A") is None
    put(cache, "c", 0, 1, owner="A")
    cache.share("c", [cache.leaves("c")[0].digest])
    cache.disown("c", 0, "A")
    assert cache.get("c", 0, owner="B") == leaf("c", 0)


def test_a_leaf_being_written_is_not_written_by_a_second_put_at_once(root: Path) -> None:
    """The second put skips it: two writers of one leaf never interleave their bytes."""
    other = b"o" * MIB
    nested: list[bool] = []

    def pwrite(fd: int, data: memoryview, offset: int) -> int:
        if not nested:  # while the first put writes, a second one comes for the same leaf
            nested.append(
                cache.put("a", 0, other, [hashlib.sha256(other).digest()], "block", owner="B")
            )
        return os.pwrite(fd, data, offset)

    with DiskCache(root, 64 * MIB, pwrite=pwrite) as cache:
        assert put(cache, "a", 0, 1, owner="A")
        assert nested == [True]
        assert cache.get("a", 0, owner="A") == leaf("a", 0)
        assert cache.get("a", 0, owner="B") is None


# --- metadata ------------------------------------------------------------------------


def test_meta_round_trips_by_namespace_and_survives_reopen(root: Path) -> None:
    with DiskCache(root, MIB) as cache:
        cache.put_meta("jobs", "j1", {"size": 5, "tags": ["x"]})
        cache.put_meta("jobs", "j2", 7)
        cache.put_meta("inodes", "j1", 42)
        cache.put_meta("jobs", "j2", 8)
        assert cache.get_meta("jobs", "j3") is None
    with DiskCache(root, MIB) as cache:
        assert cache.get_meta("jobs", "j1") == {"size": 5, "tags": ["x"]}
        assert cache.list_meta("jobs") == {"j1": {"size": 5, "tags": ["x"]}, "j2": 8}
        cache.delete_meta("jobs", "j1")
        cache.delete_meta("jobs", "absent")
        assert cache.list_meta("jobs") == {"j2": 8}
        assert cache.list_meta("inodes") == {"j1": 42}
        assert cache.list_meta("none") == {}


# --- concurrency, crashes and a model ------------------------------------------------


def test_threads_putting_reading_and_dropping_get_right_bytes_or_none(root: Path) -> None:
    keys = ["a", "b", "c"]
    shared = DiskCache(root, 3 * MIB)

    def work(seed: int) -> int:
        rng, served = random.Random(seed), 0
        for _ in range(120):
            key = rng.choice(keys)
            index = rng.randrange(leaf_count(key))
            roll = rng.random()
            if roll < 0.35:
                put(shared, key, index, 1)
            elif roll < 0.9:
                data = shared.get(key, index)
                assert data is None or data == leaf(key, index)
                served += data is not None
            else:
                shared.drop(key, index)
        return served

    with shared, ThreadPoolExecutor(4) as pool:
        assert sum(pool.map(work, range(4))) > 0
        assert shared.usage().used <= 3 * MIB
        for key in keys:
            for index in shared.leaves(key):
                assert shared.get(key, index) == leaf(key, index)


def test_every_leaf_present_after_kill_9_is_whole(root: Path) -> None:
    putter = inspect.getsource(content) + (
        "import hashlib, sys\n"
        "from pathlib import Path\n"
        "from glacierfs.cache.disk import DiskCache\n"
        "MIB = 1 << 20\n"
        "cache = DiskCache(Path(sys.argv[1]), 6 * MIB)\n"
        "for n in range(10**9):\n"
        "    key, first = f'k{n % 5}', n * 7 % 6\n"
        "    pieces = [content(key, i, MIB) for i in range(first, first + 1 + n % 3)]\n"
        "    digests = [hashlib.sha256(p).digest() for p in pieces]\n"
        "    cache.put(key, first, b''.join(pieces), digests, 'block', owner='job1')\n"
        "    if n % 4 == 0:\n"
        "        cache.drop(key, first)\n"
        "    print(n, flush=True)\n"
    )
    for round_ in range(3):
        child = subprocess.Popen(
            [sys.executable, "-c", putter, str(root)], stdout=subprocess.PIPE, text=True
        )
        assert child.stdout is not None
        for _ in range(20 + 7 * round_):
            assert child.stdout.readline()
        child.send_signal(signal.SIGKILL)
        child.communicate()
        with DiskCache(root, 6 * MIB) as cache:
            assert 0 < cache.usage().used <= 6 * MIB
            for key in (f"k{n}" for n in range(5)):
                for index, (digest, _, _) in cache.leaves(key).items():
                    assert digest == hashlib.sha256(content(key, index, MIB)).digest()
                    assert cache.get(key, index) == content(key, index, MIB)


def test_put_killed_between_write_and_commit_leaves_no_leaf_and_no_bytes(root: Path) -> None:
    crasher = inspect.getsource(content) + (
        "import hashlib, os, signal, sys\n"
        "from pathlib import Path\n"
        "from glacierfs.cache.disk import DiskCache\n"
        "MIB = 1 << 20\n"
        "def write_then_die(fd, data, offset):\n"
        "    os.pwrite(fd, data, offset)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "for index, writer in ((0, os.pwrite), (1, write_then_die)):\n"
        "    cache = DiskCache(Path(sys.argv[1]), 8 * MIB, pwrite=writer)\n"
        "    data = content('a', index, MIB)\n"
        "    cache.put('a', index, data, [hashlib.sha256(data).digest()], 'block', owner='j')\n"
        "    cache.close()\n"
    )
    child = subprocess.run([sys.executable, "-c", crasher, str(root)], check=False)
    assert child.returncode == -signal.SIGKILL
    assert os.stat(data_file(root, "a")).st_blocks * 512 >= 2 * MIB  # both leaves written
    with DiskCache(root, 8 * MIB) as cache:
        assert sorted(cache.leaves("a")) == [0]
        assert cache.get("a", 0) == content("a", 0, MIB)
        assert cache.usage().used == MIB
        allocated = os.stat(data_file(root, "a")).st_blocks * 512
    if allocated >= 2 * MIB:
        pytest.skip("this filesystem cannot punch holes")
    assert allocated < 2 * MIB


CAPACITY = 4 * MIB


def foreign(key: str, index: int) -> bytes:
    """Other bytes for the leaf, as a job claiming the object would bring."""
    return bytes(b ^ 0x5A for b in leaf(key, index))


class DiskCacheModel(RuleBasedStateMachine):
    """Random puts (by two honest owners and one that brings other bytes), shares, gets,
    drops, reopens and damage against a small cache: a get returns the bytes put or
    None, a leaf is only ever good for whoever brought its bytes (or all, once shared
    with the true digests), and the cache never holds more than its capacity."""

    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp())
        self.root = self.directory / "cache"
        self.clock = Clock()
        self.cache = DiskCache(self.root, CAPACITY, clock=self.clock)
        self.ever_put: set[tuple[str, int]] = set()

    def teardown(self) -> None:
        self.cache.close()
        shutil.rmtree(self.directory)

    @rule(key=st.sampled_from(sorted(SIZES)), first=st.integers(0, 2), count=st.integers(1, 3))
    def put(self, key: str, first: int, count: int) -> None:
        first = min(first, leaf_count(key) - 1)
        count = min(count, leaf_count(key) - first)
        self.clock.tick()
        assert put(self.cache, key, first, count)
        self.ever_put.update((key, i) for i in range(first, first + count))
        assert all(self.cache.contains(key, i) for i in range(first, first + count))

    @rule(key=st.sampled_from(sorted(SIZES)), first=st.integers(0, 2), count=st.integers(1, 3))
    def put_by_another(self, key: str, first: int, count: int) -> None:
        first = min(first, leaf_count(key) - 1)
        count = min(count, leaf_count(key) - first)
        self.clock.tick()
        assert put(self.cache, key, first, count, owner="job2")
        self.ever_put.update((key, i) for i in range(first, first + count))

    @rule(key=st.sampled_from(sorted(SIZES)), index=st.integers(0, 2))
    def put_foreign(self, key: str, index: int) -> None:
        index = min(index, leaf_count(key) - 1)
        self.clock.tick()
        data = foreign(key, index)
        self.cache.put(key, index, data, [hashlib.sha256(data).digest()], "block", owner="liar")
        self.ever_put.add((key, index))

    @rule(key=st.sampled_from(sorted(SIZES)))
    def share(self, key: str) -> None:
        truth = [hashlib.sha256(leaf(key, i)).digest() for i in range(leaf_count(key))]
        rows = self.cache.leaves(key)
        whole = all(i in rows and rows[i].digest == d for i, d in enumerate(truth))
        assert self.cache.share(key, truth) == whole

    @rule(
        key=st.sampled_from(sorted(SIZES)),
        index=st.integers(0, 2),
        owner=st.sampled_from([OWNER, "job2", "liar"]),
    )
    def get(self, key: str, index: int, owner: str) -> None:
        self.clock.tick()
        data = self.cache.get(key, index, owner=owner)
        if (key, index) not in self.ever_put:
            assert data is None
        if owner == "liar":
            assert data in (None, leaf(key, index), foreign(key, index))
        else:  # an honest owner never gets the liar's bytes
            assert data is None or data == leaf(key, index)

    @rule(key=st.sampled_from(sorted(SIZES)), index=st.integers(0, 2))
    def drop(self, key: str, index: int) -> None:
        self.cache.drop(key, index)
        assert self.cache.get(key, index) is None

    @rule()
    def reopen(self) -> None:
        self.cache.close()
        self.cache = DiskCache(self.root, CAPACITY, clock=self.clock)

    @rule(key=st.sampled_from(sorted(SIZES)), offset=st.integers(0, SIZES["a"] - 1))
    def damage_then_reopen(self, key: str, offset: int) -> None:
        self.cache.close()
        path = data_file(self.root, key)
        if path.exists():
            with open(path, "r+b") as f:
                f.seek(offset)
                old = f.read(1)
                f.seek(offset)
                f.write(bytes([(old[0] if old else 0) ^ 0xFF]))
        self.cache = DiskCache(self.root, CAPACITY, clock=self.clock)

    @invariant()
    def within_capacity_and_consistent(self) -> None:
        usage = self.cache.usage()
        assert usage.used <= CAPACITY
        total = 0
        for key in SIZES:
            for index, (digest, verified, owners) in self.cache.leaves(key).items():
                assert (key, index) in self.ever_put
                if digest == hashlib.sha256(leaf(key, index)).digest():
                    assert owners == SHARED or set(owners.split()) <= {OWNER, "job2"}
                else:
                    assert digest == hashlib.sha256(foreign(key, index)).digest()
                    assert owners == "liar"
                assert verified == "block"
            total += self.cache.cached_bytes(key)
        assert total == usage.used


TestDiskCacheModel = DiskCacheModel.TestCase
TestDiskCacheModel.pytestmark = [pytest.mark.expected_logs(DAMAGED)]  # its damage rule
TestDiskCacheModel.settings = settings(max_examples=25, stateful_step_count=20, deadline=None)
