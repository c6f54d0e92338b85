"""The stored inventory of ``retrieve``: names as the mount's, built once, read in batches.

The growth test counts memory, not time: a plan over ten times the archives must not
hold ten times the memory (it is bounded by the batch, :data:`inventorydb.BATCH`).
"""

from __future__ import annotations

import random
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from glacierfs.cacheroot import Held, open_root
from glacierfs.errors import ConfigError
from glacierfs.inventory import Entry
from glacierfs.retrieve import inventorydb
from glacierfs.retrieve.cacheview import CacheIndex
from glacierfs.retrieve.engine import Engine, Snapshot
from glacierfs.retrieve.inventorydb import InventoryStore
from glacierfs.retrieve.pacing import Limits
from glacierfs.retrieve.pricing import PRICES
from glacierfs.retrieve.selected import Selected
from glacierfs.retrieve.selection import Criteria, name_archives
from glacierfs.retrieve.source import _load_file
from glacierfs.retrieve.state import State
from glacierfs.treehash import MIB

ARN = "arn:aws:glacier:us-east-1:123456789012:vaults/photos"


def entries(count: int, seed: int = 1) -> list[Entry]:
    """Archives contesting a few paths, some of them directories of others."""
    rnd = random.Random(seed)
    names = ["a", "a/b", "a/b/c", "b.txt", "b.txt~ID00", "c/d.jpg", "c", "x/../y", ""]
    return [
        Entry(
            f"ID{rnd.randrange(count // 2 + 1):04d}-{n}",
            rnd.choice(names),
            f"2020-01-{rnd.randrange(1, 28):02d}T00:00:00Z",
            n * 1000,
            f"{n:064x}",
        )
        for n in range(count)
    ]


@pytest.fixture
def held(tmp_path: Path) -> Iterator[Held]:
    """``tmp_path`` held as a cache root: the stores are made in it."""
    with open_root(tmp_path) as root:
        yield root


def many(count: int) -> list[Entry]:
    return [
        Entry(f"A{n:09d}", f"dir{n % 97}/f{n}.jpg", "2020-01-01T00:00:00Z", MIB, f"{n:064x}")
        for n in range(count)
    ]


def test_the_store_names_every_archive_as_assign_paths_does(held: Held) -> None:
    """Can fail: contested paths, directories that are also files, suffixes that collide."""
    for seed in range(5):
        listed = entries(400, seed)
        with InventoryStore(held, f"s{seed}") as store:
            store.load(listed, "test", "test")
            stored = [(a.archive_id, a.path) for batch in store.archives() for a in batch]
        assert stored == [(a.archive_id, a.path) for a in name_archives(listed)]
        assert len({path for _, path in stored}) == len(stored)


def test_a_second_run_with_the_same_file_reads_no_inventory(tmp_path: Path, held: Held) -> None:
    source = tmp_path / "inventory.csv"
    rows = [f"A{n},f{n}.txt,2020-01-01T00:00:00Z,{n},{n:064x}" for n in range(50)]
    source.write_text(
        "ArchiveId,ArchiveDescription,CreationDate,Size,SHA256TreeHash\n" + "\n".join(rows) + "\n"
    )
    _load_file(InventoryStore(held, "v"), source)
    built = (tmp_path / "inventory-v.sqlite3").stat().st_ino
    _load_file(InventoryStore(held, "v"), source)
    assert (tmp_path / "inventory-v.sqlite3").stat().st_ino == built  # not built again
    with source.open("a") as more:
        more.write("B1,new.txt,2020-01-01T00:00:00Z,1,00\n")
    store = InventoryStore(held, "v")
    _load_file(store, source)
    assert store.count == 51 and "new.txt" in store.lookup(["B1"])["B1"].path


def test_selection_by_id_and_by_pattern_reads_the_store(held: Held) -> None:
    with InventoryStore(held, "v") as store:
        store.load(many(300), "test", "test")
        by_id = Selected(store, Criteria(archive_ids=("A000000005", "nope")))
        assert [a.archive_id for a in by_id] == ["A000000005"]
        pattern = Selected(store, Criteria(patterns=("dir3/*",)))
        assert {a.path for a in pattern} == {f"dir3/f{n}.jpg" for n in range(3, 300, 97)}
        assert set(pattern.lookup(["A000000003", "A000000004"])) == {"A000000003"}


def _plan_peak(held: Held, count: int) -> tuple[int, int]:
    """Peak bytes allocated planning every one of ``count`` archives; the jobs planned."""
    with InventoryStore(held, f"n{count}") as store, State(held, ARN) as state:
        store.load(many(count), "test", "test")
        engine = Engine(
            None,  # type: ignore[arg-type]  # planning asks nothing of the service
            state,
            CacheIndex(held),
            Selected(store, Criteria(everything=True)),
            ARN,
            PRICES["Bulk"],
            Limits(10 * MIB),
            lambda kind, text: None,
        )
        tracemalloc.start()
        try:
            plan = engine.plan(Snapshot(now=1e9))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    return peak, plan.jobs


def test_planning_memory_grows_with_the_batch_not_the_vault(
    held: Held, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Can fail: a plan that holds every archive (or every unit) holds 10x more at 10x."""
    monkeypatch.setattr(inventorydb, "BATCH", 200)
    small, small_jobs = _plan_peak(held, 2_000)
    large, large_jobs = _plan_peak(held, 20_000)
    assert (small_jobs, large_jobs) == (2_000, 20_000)
    print(f"peak while planning: {small / 1e3:.0f} kB at 2,000, {large / 1e3:.0f} kB at 20,000")
    assert large < 2 * small


HEADER = "ArchiveId,ArchiveDescription,CreationDate,Size,SHA256TreeHash\n"


def test_a_bad_inventory_leaves_the_last_store_and_a_link_is_never_followed(
    tmp_path: Path, held: Held
) -> None:
    good, bad = tmp_path / "good.csv", tmp_path / "bad.csv"
    good.write_text(HEADER + "A,a.txt,2020-01-01T00:00:00Z,12,00\n")
    bad.write_text(HEADER + "B,b.txt,2020-01-01T00:00:00Z,notanumber,00\n")
    store = InventoryStore(held, "v")
    _load_file(store, good)
    with pytest.raises(ConfigError, match="not a size"):
        _load_file(store, bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "bad.csv",
        "good.csv",
        "inventory-v.sqlite3",
    ]
    again = InventoryStore(held, "v")
    assert again.ready and again.lookup(["A"])["A"].path == "a.txt"
    victim = tmp_path / "victim"
    victim.write_text("not a store")
    (tmp_path / "inventory-l.sqlite3").symlink_to(victim)
    linked = InventoryStore(held, "l")
    assert not linked.ready
    _load_file(linked, good)
    assert (
        victim.read_text() == "not a store" and not (tmp_path / "inventory-l.sqlite3").is_symlink()
    )
    assert linked.count == 1
