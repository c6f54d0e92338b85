"""The tree of views: every job by id, archives once by name, stable paths and inodes. Pure."""

from __future__ import annotations

import json

from glacierfs.jobs import Job
from glacierfs.view.tree import FIRST_FILE_INODE, ROOT_INODE, Named, Tree

MIB = 1 << 20
ARN = "arn:aws:glacier:us-east-1:123456789012:vaults/v"


def part(job_id: str, archive_id: str, completed: float, start: int, size: int) -> Job:
    """A retrieval of ``size`` bytes from ``start`` of a 10 MiB archive."""
    return Job(
        job_id,
        "archive",
        size,
        completed,
        completed - 60,
        ARN,
        archive_id,
        10 * MIB,
        archive_id * 64,
        start,
    )


def archive_job(job_id: str, archive_id: str, completed: float) -> Job:
    return part(job_id, archive_id, completed, 0, 10 * MIB)


def inventory_job(job_id: str, completed: float, fmt: str) -> Job:
    return Job(job_id, "inventory", 100, completed, completed - 60, ARN, inventory_format=fmt)


def path_of(tree: Tree, *names: str) -> int | None:
    inode = ROOT_INODE
    for name in names:
        node = tree.lookup(inode, name)
        if node is None:
            return None
        inode = node.inode
    return inode


def listing(tree: Tree) -> dict[str, int]:
    """Every file under archives/, by path, with its inode."""
    found: dict[str, int] = {}

    def walk(inode: int, prefix: str) -> None:
        for name, child in tree.nodes[inode].children.items():
            if tree.nodes[child].is_dir:
                walk(child, f"{prefix}{name}/")
            else:
                found[prefix + name] = child

    walk(path_of(tree, "archives") or 0, "")
    return found


NAMES: dict[str, Named] = {
    "a": (("photos", "beach.jpg"), 1.5e9),
    "b": (("photos", "beach.jpg"), None),
    "c": (("docs", "c.txt"), None),
    "x": (("x", "y"), None),
    "z": (("x", "y", "z"), None),
}


def named(job: Job) -> Named | None:
    return NAMES.get(job.archive_id or "")


def test_every_job_is_under_jobs_and_each_archive_once_under_its_name() -> None:
    jobs = [
        archive_job("J1", "a", 1000.0),
        part("J2", "a", 2000.0, 4 * MIB, 3 * MIB),
        part("J3", "c", 3000.0, 0, 4 * MIB),
        inventory_job("J4", 4000.0, "CSV"),
    ]
    tree = Tree()
    tree.build(jobs, named)
    for job in jobs:
        inode = path_of(tree, "jobs", job.job_id)
        assert inode is not None and inode >= FIRST_FILE_INODE
    assert listing(tree) == {
        "photos/beach.jpg": tree.file_inodes["archive/a"],
        f"docs/c.txt.range-0-{4 * MIB - 1}": tree.file_inodes["J3"],  # completes nothing
    }
    beach = tree.nodes[tree.file_inodes["archive/a"]]
    assert beach.archive is not None and beach.job is None and beach.mtime == 1.5e9
    assert [j.job_id for j in beach.archive.jobs] == ["J1", "J2"]
    assert beach.nlink == 1 and tree.nodes[tree.file_inodes["J3"]].nlink == 2
    assert tree.nodes[tree.file_inodes["J1"]].nlink == 1  # only under jobs/
    inventories = tree.nodes[path_of(tree, "inventories") or 0].children
    assert len(inventories) == 1 and next(iter(inventories)).endswith(".csv")


def test_ranges_that_cover_an_archive_are_one_file() -> None:
    sizes = [4 * MIB, 4 * MIB, 2 * MIB]
    jobs = [part(f"R{n}", "c", float(n), n * 4 * MIB, size) for n, size in enumerate(sizes)]
    tree = Tree()
    tree.build(jobs, named)
    assert list(listing(tree)) == ["docs/c.txt"]
    assert tree.nodes[path_of(tree, "archives", "docs", "c.txt") or 0].mtime == 0.0  # the first


def test_an_archive_whose_name_is_unknown_is_only_under_jobs_until_it_is_known() -> None:
    known: dict[str, Named] = {}
    tree = Tree()
    jobs = [archive_job("J1", "a", 1.0), archive_job("J2", "c", 2.0)]
    tree.build(jobs, lambda job: known.get(job.archive_id or ""))
    assert listing(tree) == {} and path_of(tree, "jobs", "J1") is not None
    known["c"] = NAMES["c"]
    tree.build(jobs, lambda job: known.get(job.archive_id or ""))
    assert list(listing(tree)) == ["docs/c.txt"]


def test_a_path_shown_keeps_its_file_when_an_older_archive_wants_it() -> None:
    tree = Tree()
    newer = archive_job("J2", "b", 2000.0)
    tree.build([newer], named)
    first = listing(tree)
    assert list(first) == ["photos/beach.jpg"]
    tree.build([archive_job("J1", "a", 1000.0), newer], named)  # older: it would win a remount
    now = listing(tree)
    assert now["photos/beach.jpg"] == first["photos/beach.jpg"]
    assert [p for p in now if p != "photos/beach.jpg"] == ["photos/beach~a.jpg"]
    fresh = Tree(tree.file_inodes)  # nothing remembered: the oldest wins
    fresh.build([archive_job("J1", "a", 1000.0), newer], named)
    assert listing(fresh)["photos/beach.jpg"] == tree.file_inodes["archive/a"]
    remount = Tree(tree.file_inodes, saved(tree))
    remount.build([archive_job("J1", "a", 1000.0), newer], named)
    assert listing(remount) == now  # the names of the last mount


def saved(tree: Tree) -> dict[str, list[str]]:
    """The paths shown, as the daemon saves them (JSON)."""
    return json.loads(json.dumps(tree.shown))


def test_a_remembered_path_is_not_taken_when_it_moved_or_was_not_made_by_glacierfs() -> None:
    tree = Tree()
    tree.build([archive_job("J1", "c", 1.0)], named)
    paths = saved(tree)
    assert paths == {"archive/c": ["archives", "docs", "c.txt"]}
    moved = Tree(tree.file_inodes, {"archive/c": ["archives", "old", "c.txt"]})
    moved.build([archive_job("J1", "c", 1.0)], named)
    assert list(listing(moved)) == ["docs/c.txt"]
    for bad in (["archives", "docs", ".."], ["archives", "a/b"], ["elsewhere", "x"], "str"):
        forged = Tree(tree.file_inodes, {"archive/c": bad})  # type: ignore[dict-item]
        forged.build([archive_job("J1", "c", 1.0)], named)
        assert list(listing(forged)) == ["docs/c.txt"]


def test_a_file_shown_does_not_give_way_to_a_newcomers_directory() -> None:
    tree = Tree()
    tree.build([archive_job("J1", "x", 1.0)], named)
    tree.build([archive_job("J1", "x", 1.0), archive_job("J2", "z", 2.0)], named)
    assert sorted(listing(tree)) == ["x/y", "x/y~z/z"]


def test_a_range_file_stays_while_mounted_once_its_archive_is_complete() -> None:
    first = part("R1", "c", 1.0, 0, 4 * MIB)
    rest = part("R2", "c", 2.0, 4 * MIB, 6 * MIB)
    tree = Tree()
    tree.build([first], named)
    assert list(listing(tree)) == [f"docs/c.txt.range-0-{4 * MIB - 1}"]
    tree.build([first, rest], named)
    assert sorted(listing(tree)) == ["docs/c.txt", f"docs/c.txt.range-0-{4 * MIB - 1}"]
    remount = Tree(tree.file_inodes, saved(tree))
    remount.build([first, rest], named)
    assert list(listing(remount)) == ["docs/c.txt"]
    assert listing(remount)["docs/c.txt"] == listing(tree)["docs/c.txt"]
    remount.build([first], named)  # R2 gone and not cached: the archive is not whole
    assert list(listing(remount)) == [f"docs/c.txt.range-0-{4 * MIB - 1}"]


def test_inodes_stay_the_same_across_rebuilds_and_mounts() -> None:
    first = Tree()
    first.build([archive_job("J1", "a", 1.0), archive_job("J2", "c", 2.0)], named)
    second = Tree(first.file_inodes)
    second.build([archive_job("J3", "x", 3.0), archive_job("J2", "c", 2.0)], named)
    assert path_of(second, "jobs", "J2") == path_of(first, "jobs", "J2")
    assert path_of(second, "archives", "docs", "c.txt") == path_of(
        first, "archives", "docs", "c.txt"
    )
    assert path_of(second, "jobs", "J3") not in (path_of(first, "jobs", "J1"), None)


def test_an_unknown_name_is_not_found() -> None:
    tree = Tree()
    tree.build([archive_job("J1", "a", 1.0)])
    assert path_of(tree, "jobs", "nope") is None
    assert path_of(tree, "jobs", "J1", "below-a-file") is None
    assert path_of(tree, "archives", "a" * 64) is None
    assert path_of(tree, "archives", "a") is not None  # the default name: the ArchiveId


def test_a_name_the_inventory_settled_is_not_overridden_by_one_remembered() -> None:
    older = archive_job("J1", "a", 1.0)
    tree = Tree()
    tree.build([older], named)  # an earlier mount showed the older version plainly
    assert list(listing(tree)) == ["photos/beach.jpg"]
    dated: dict[str, Named] = {"a": (("photos", "beach~20190101T000000Z.jpg"), None)}
    dated["b"] = NAMES["b"]
    jobs = [older, archive_job("J2", "b", 2.0)]
    remount = Tree(tree.file_inodes, saved(tree))
    remount.build(jobs, lambda job: dated.get(job.archive_id or ""), lambda job: True)
    assert listing(remount) == {
        "photos/beach.jpg": remount.file_inodes["archive/b"],
        "photos/beach~20190101T000000Z.jpg": remount.file_inodes["archive/a"],
    }
    unsettled = Tree(tree.file_inodes, saved(tree))  # without an inventory: as it was shown
    unsettled.build(jobs, lambda job: dated.get(job.archive_id or ""))
    assert unsettled.file_inodes["archive/a"] == listing(unsettled)["photos/beach.jpg"]
