"""The tree of views: every job by id, friendly names, stable inodes. Pure code."""

from __future__ import annotations

from glacierfs.jobs import Job
from glacierfs.tree import FIRST_FILE_INODE, ROOT_INODE, Tree

MIB = 1 << 20
ARN = "arn:aws:glacier:us-east-1:123456789012:vaults/v"


def archive_job(job_id: str, archive_id: str, completed: float, start: int | None = None) -> Job:
    """A full retrieval of a 3 MiB archive, or 3 MiB from ``start`` of a 10 MiB one."""
    whole = 3 * MIB if start is None else 10 * MIB
    return Job(
        job_id,
        "archive",
        3 * MIB,
        completed,
        completed - 60,
        ARN,
        archive_id,
        whole,
        "a" * 64,
        start or 0,
        None,
    )


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


def named(job: Job) -> tuple[tuple[str, ...], float | None]:
    return {"a1": (("photos", "beach.jpg"), 1.5e9)}.get(job.archive_id or "", ((), None))


def test_every_job_is_under_jobs_by_id_and_once_in_a_friendly_view() -> None:
    jobs = [
        archive_job("J1", "a1", 1000.0),
        archive_job("J2", "a1", 2000.0, start=4 * MIB),
        archive_job("J3", "a2", 3000.0),
        inventory_job("J4", 4000.0, "CSV"),
    ]
    tree = Tree()
    tree.build(jobs, named)
    for job in jobs:
        inode = path_of(tree, "jobs", job.job_id)
        assert inode is not None and inode >= FIRST_FILE_INODE
    assert path_of(tree, "archives", "photos", "beach.jpg") == path_of(tree, "jobs", "J1")
    ranged = [n for n in tree.nodes[path_of(tree, "archives", "photos")].children if "range" in n]
    assert ranged == [f"beach.jpg.range-{4 * MIB}-{7 * MIB - 1}"]
    assert path_of(tree, "archives", "a2") == path_of(tree, "jobs", "J3")
    inventories = tree.nodes[path_of(tree, "inventories")].children
    assert len(inventories) == 1 and next(iter(inventories)).endswith(".csv")
    assert tree.nodes[path_of(tree, "jobs", "J1")].mtime == 1.5e9


def test_inodes_stay_the_same_across_rebuilds_and_mounts() -> None:
    first = Tree()
    first.build([archive_job("J1", "a1", 1.0), archive_job("J2", "a2", 2.0)])
    second = Tree(first.file_inodes)
    second.build([archive_job("J3", "a3", 3.0), archive_job("J2", "a2", 2.0)])
    assert path_of(second, "jobs", "J2") == path_of(first, "jobs", "J2")
    assert path_of(second, "jobs", "J3") not in (path_of(first, "jobs", "J1"), None)


def test_an_unknown_name_is_not_found() -> None:
    tree = Tree()
    tree.build([archive_job("J1", "a1", 1.0)])
    assert path_of(tree, "jobs", "nope") is None
    assert path_of(tree, "jobs", "J1", "below-a-file") is None
