"""The directory tree a mount shows, built from the job catalog. Pure code.

    /jobs/<JobId>                 every readable job, by its exact id (the contract)
    /archives/<path or ArchiveId> archive jobs, by the name their description gives
    /inventories/<date>.json|csv  inventory jobs, by completion time

A job has one inode, whichever view it is reached by (like a hard link), so the
page cache and open handles are shared. Inode numbers are stable: files keep theirs
across refreshes and mounts (the caller persists :attr:`Tree.file_inodes`);
directories keep theirs across refreshes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from glacierfs.jobs import Job
from glacierfs.naming import Wanted, assign_paths, safe_name

ROOT_INODE = 1
FIRST_FILE_INODE = 1 << 32
"""Files above, directories below: the two never collide."""

Namer = Callable[[Job], tuple[tuple[str, ...], float | None]]
"""A job -> (safe path components for the archives view, mtime from the description)."""


@dataclass
class Node:
    inode: int
    is_dir: bool
    mtime: float
    job: Job | None = None
    children: dict[str, int] = field(default_factory=dict)
    nlink: int = 1
    parent: int = ROOT_INODE
    """The directory holding this node, for lookups of ``..``; the root's is itself.
    A file has one name per view: its parent is the ``jobs`` directory."""


def archive_id_name(job: Job) -> tuple[tuple[str, ...], float | None]:
    """The fallback name of an archive job: its ArchiveId."""
    return (safe_name(job.archive_id or job.job_id, job.job_id),), None


def range_label(job: Job) -> str:
    """``.range-START-END`` for a job that holds part of its archive, else ``""``."""
    if job.kind != "archive" or job.archive_size is None or job.size == job.archive_size:
        return ""
    return f".range-{job.range_start}-{job.range_start + job.size - 1}"


def inventory_name(job: Job) -> str:
    stamp = time.strftime("%Y-%m-%dT%H-%M-%SZ", time.gmtime(job.completed))
    return f"{stamp}.{(job.inventory_format or 'JSON').lower()}"


class Tree:
    """Inodes and names for one set of jobs; rebuilt on every refresh."""

    def __init__(self, file_inodes: dict[str, int] | None = None) -> None:
        self.file_inodes: dict[str, int] = dict(file_inodes or {})
        self._dir_inodes: dict[tuple[str, ...], int] = {(): ROOT_INODE}
        self.nodes: dict[int, Node] = {}
        self.paths: dict[str, tuple[str, ...]] = {}  # job id -> its path in archives/...
        self.mount_time = time.time()

    def build(self, jobs: Iterable[Job], namer: Namer = archive_id_name) -> None:
        jobs = sorted(jobs, key=lambda job: (job.completed, job.job_id))
        nodes: dict[int, Node] = {}
        for view in ("jobs", "archives", "inventories"):
            self._dir(nodes, (view,))
        wanted: list[Wanted] = []
        mtimes: dict[str, float] = {}
        for job in jobs:
            inode = self._file_inode(job.job_id)
            jobs_dir = self._dir(nodes, ("jobs",))
            nodes[inode] = Node(inode, False, job.completed, job, nlink=2, parent=jobs_dir.inode)
            self._link(nodes, ("jobs",), job.job_id, inode)
            wanted.append(self._wanted(job, namer, mtimes))
        self.paths = assign_paths(wanted)
        for job_id, path in self.paths.items():
            inode = self.file_inodes[job_id]
            self._link(nodes, path[:-1], path[-1], inode)
            if job_id in mtimes:
                nodes[inode].mtime = mtimes[job_id]
        self.nodes = nodes

    def _wanted(self, job: Job, namer: Namer, mtimes: dict[str, float]) -> Wanted:
        if job.kind == "inventory":
            components: tuple[str, ...] = ("inventories", inventory_name(job))
        else:
            named, mtime = namer(job)
            if mtime is not None:
                mtimes[job.job_id] = mtime
            named = named or archive_id_name(job)[0]
            components = (
                "archives",
                *named[:-1],
                safe_name(named[-1] + range_label(job), job.job_id),
            )
        return Wanted(
            job.job_id,
            components,
            (f"{job.completed:020.3f}", job.job_id),
            job.archive_id or job.job_id,
        )

    def _file_inode(self, job_id: str) -> int:
        if job_id not in self.file_inodes:
            self.file_inodes[job_id] = FIRST_FILE_INODE + len(self.file_inodes)
        return self.file_inodes[job_id]

    def _dir(self, nodes: dict[int, Node], path: tuple[str, ...]) -> Node:
        inode = self._dir_inodes.setdefault(path, len(self._dir_inodes) + 1)
        node = nodes.get(inode)
        if node is None:
            node = nodes[inode] = Node(inode, True, self.mount_time, nlink=2)
            if path:
                parent = self._dir(nodes, path[:-1])
                parent.children[path[-1]] = inode
                parent.nlink += 1
                node.parent = parent.inode
        return node

    def _link(
        self, nodes: dict[int, Node], directory: tuple[str, ...], name: str, inode: int
    ) -> None:
        self._dir(nodes, directory).children[name] = inode

    def lookup(self, parent: int, name: str) -> Node | None:
        node = self.nodes.get(parent)
        if node is None or not node.is_dir or name not in node.children:
            return None
        return self.nodes.get(node.children[name])
