"""The retrieval state kept with the cache, and the read-only view of the cache index that
plans beside a mount."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.utils import calculate_tree_hash

from glacierfs.cache.disk import DiskCache
from glacierfs.cacheroot import Held, open_root
from glacierfs.errors import ConfigError
from glacierfs.retrieve.cacheview import CacheIndex, archive_key
from glacierfs.retrieve.pacing import Unit
from glacierfs.retrieve.selection import Archive
from glacierfs.retrieve.state import EXPIRED, REQUESTED, SAVED, State
from glacierfs.treehash import leaf_digests

MIB = 1 << 20
ARN = "arn:aws:glacier:us-east-1:123456789012:vaults/v"


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Held]:
    """The cache root, held as every command holds it."""
    with open_root(tmp_path) as held:
        yield held


def archive_of(data: bytes, archive_id: str = "A") -> Archive:
    tree = calculate_tree_hash(io.BytesIO(data))
    return Archive(archive_id, len(data), tree, 0.0, "", "some/path")


def test_the_index_view_sees_what_an_open_disk_cache_holds_without_its_lock(
    tmp_path: Path, root: Held
) -> None:
    data = bytes(range(256)) * (3 * MIB // 256) + b"tail"
    archive = archive_of(data)
    key = archive_key(archive, ARN)
    with DiskCache(tmp_path, 1 << 30) as disk:
        digests = leaf_digests(data)
        assert disk.put(key, 0, data[: 2 * MIB], digests[:2], "block", owner="test")
        with CacheIndex(root) as index:  # beside the holder of the lock
            assert index.leaves(key) == {0, 1}
            assert not index.verified(archive, ARN)
            assert disk.put(key, 2, data[2 * MIB :], digests[2:], "block", owner="test")
            assert index.leaves(key) == {0, 1, 2, 3}
            assert index.verified(archive, ARN)
    liar = Archive("C", 2 * MIB, archive_of(b"x" * 2 * MIB).tree_hash, 0.0, "", "c")
    with DiskCache(tmp_path, 1 << 30) as disk:  # leaves under its key that are not its bytes
        disk.put(
            archive_key(liar, ARN),
            0,
            data[: 2 * MIB],
            leaf_digests(data[: 2 * MIB]),
            "size",
            owner="test",
        )
    with CacheIndex(root) as index:
        assert index.leaves(archive_key(liar, ARN)) == {0, 1}
        assert not index.verified(liar, ARN)


def test_an_empty_cache_directory_is_an_empty_cache_and_a_broken_index_an_error(
    tmp_path: Path,
) -> None:
    with open_root(tmp_path / "nothing") as empty, CacheIndex(empty) as index:
        assert index.leaves("anything") == frozenset()
    broken = tmp_path / "broken" / "v1"
    broken.mkdir(parents=True)
    (broken / "index.sqlite3").write_bytes(b"this is not a database" * 100)
    uncached = pytest.raises(ConfigError, match="every archive would look uncached")
    with open_root(tmp_path / "broken") as held, uncached:
        CacheIndex(held)


def test_intents_become_requests_and_their_history_counts_for_the_cap(
    tmp_path: Path, root: Held
) -> None:
    archive = Archive("A", 5 * MIB, "00" * 32, 0.0, "", "a/b")
    unit = Unit(archive, MIB, 2 * MIB - 1, False)
    with State(root, ARN) as state:
        intent = state.intend(unit, "Bulk", 1000.0, again=False)
        assert [(i.archive_id, i.start, i.end) for i in state.intents()] == [
            ("A", MIB, 2 * MIB - 1)
        ]
        assert [(h.when, h.size) for h in state.history()] == [(1000.0, MIB)]
        state.requested(intent, "JOB1")
        assert state.intents() == []
        (request,) = state.requests()
        assert (request.job_id, request.status, request.size, request.tier) == (
            "JOB1",
            REQUESTED,
            MIB,
            "Bulk",
        )
        state.mark("JOB1", EXPIRED, "gone")
        again = state.intend(unit, "Bulk", 2000.0, again=True)
        state.requested(again, "JOB2")
        state.mark("JOB2", SAVED)
        assert [(r.job_id, r.status, r.again) for r in state.requests()] == [
            ("JOB1", EXPIRED, False),
            ("JOB2", SAVED, True),
        ]
        assert state.failed_once("JOB2") == 1 and state.failed_once("JOB2") == 2
    with State(root, "another vault") as other:
        assert other.requests() == []  # one state file, each vault its own rows


def test_only_one_run_holds_the_state(tmp_path: Path, root: Held) -> None:
    with State(root, ARN) as first, State(root, ARN) as second:
        first.lock()
        with pytest.raises(ConfigError, match="another glacierfs retrieve"):
            second.lock()
    with State(root, ARN) as third:
        third.lock()  # released when the first closed


def test_facts_outlive_the_run(tmp_path: Path, root: Held) -> None:
    with State(root, ARN) as state:
        assert state.fact("download_rate") is None
        state.set_fact("download_rate", 12.5)
    with State(root, ARN) as state:
        assert state.fact("download_rate") == 12.5


def test_the_index_view_made_before_the_cache_exists_sees_it_once_created(
    tmp_path: Path, root: Held
) -> None:
    data = b"x" * 1000
    key = archive_key(archive_of(data), ARN)
    with CacheIndex(root) as index:
        assert index.leaves(key) == frozenset()
        with DiskCache(tmp_path, 1 << 30) as disk:
            disk.put(key, 0, data, leaf_digests(data), "block", owner="test")
        assert index.leaves(key) == {0}
