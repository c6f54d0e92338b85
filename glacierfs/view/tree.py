"""The directory tree a mount shows, built from the job catalog. Pure code.

    /jobs/<JobId>                 every readable job, by its exact id (the contract)
    /archives/<path or ArchiveId> archives (see :mod:`glacierfs.view.archives`) by the name
                                  their description gives, and the range jobs that
                                  complete no archive, as ``NAME.range-START-END``
    /inventories/<date>.json|csv  inventory jobs, by completion time

An archive whose name is not known yet is not in ``archives/`` at all (its jobs are
in ``jobs/``): it appears once its name is known, rather than appearing under its
ArchiveId and being renamed under a running copy. For the same reason a path, once
shown, stays what it is while mounted: a newcomer that wants a path already shown
gets the stable ``~TAG`` suffix instead (:mod:`glacierfs.names.safe`), and a range file
stays even after other jobs complete its archive (at the next mount only the
archive is shown). The caller persists :attr:`Tree.shown`, so that the next mount
gives each file the path it had (unless its description now puts it elsewhere, or
the inventory settled its name among the versions of its path: see :data:`Settled`).

A job has one inode whichever view it is reached by (like a hard link), so the
page cache and open handles are shared; an archive file has its own. Inode numbers
are stable: files keep theirs across refreshes and mounts (the caller persists
:attr:`Tree.file_inodes`); directories keep theirs across refreshes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from glacierfs.jobs import Job
from glacierfs.names.safe import Wanted, assign_paths, safe_name
from glacierfs.view.archives import Archive, Known, assemble, unknown

ROOT_INODE = 1
FIRST_FILE_INODE = 1 << 32
"""Files above, directories below: the two never collide."""

Path = tuple[str, ...]
Named = tuple[Path, float | None]
Namer = Callable[[Job], Named | None]
"""A job -> (safe path components for the archives view, mtime from the description),
or None while the name of its archive is not known."""
Settled = Callable[[Job], bool]
"""A job -> whether its archive's name is settled by an inventory that knew every version
of its path (:mod:`glacierfs.names.known`): a path remembered from an earlier mount does
not override it."""


def _unsettled(job: Job) -> bool:
    return False


PINNED = ("",)
"""The precedence of a path already shown: before any other claimant's."""


@dataclass
class Node:
    inode: int
    is_dir: bool
    mtime: float
    job: Job | None = None
    archive: Archive | None = None
    children: dict[str, int] = field(default_factory=dict)
    nlink: int = 1
    parent: int = ROOT_INODE
    """The directory holding this node, for lookups of ``..``; the root's is itself.
    A file has one name per view: its parent is where its first name is (``jobs`` for a
    job file, its directory under ``archives`` for an archive file)."""


def archive_id_name(job: Job) -> Named:
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


def _archive_path(named: Path, job: Job, label: str) -> Path:
    named = named or archive_id_name(job)[0]
    return ("archives", *named[:-1], safe_name(named[-1] + label, job.job_id))


def _order(completed: float, key: str) -> tuple[str, ...]:
    return (f"{completed:020.3f}", key)


class Tree:
    """Inodes and names for one set of jobs; rebuilt on every refresh."""

    def __init__(
        self,
        file_inodes: dict[str, int] | None = None,
        paths: dict[str, list[str]] | None = None,
    ) -> None:
        self.file_inodes: dict[str, int] = dict(file_inodes or {})
        self._dir_inodes: dict[Path, int] = {(): ROOT_INODE}
        self.nodes: dict[int, Node] = {}
        self.shown: dict[str, Path] = {}  # job id or archive key -> its path in a view
        self._remembered = {
            key: tuple(path) for key, path in (paths or {}).items() if _remembered_path(path)
        }
        self._settled: Settled = _unsettled
        self._known: Known = unknown
        self._final: set[str] = set()  # keys whose names the inventory settled
        self.mount_time = time.time()

    def build(
        self,
        jobs: Iterable[Job],
        namer: Namer = archive_id_name,
        settled: Settled = _unsettled,
        known: Known = unknown,
    ) -> None:
        jobs = sorted(jobs, key=lambda job: (job.completed, job.job_id))
        self._settled = settled
        self._known = known
        nodes: dict[int, Node] = {}
        for view in ("jobs", "archives", "inventories"):
            self._dir(nodes, (view,))
        for job in jobs:
            inode = self._file_inode(job.job_id)
            nodes[inode] = Node(inode, False, job.completed, job, nlink=0)
            self._link(nodes, ("jobs",), job.job_id, inode)
        self.shown = self._assign(self._wanted(jobs, namer, nodes), nodes)
        for key, path in self.shown.items():
            node = nodes[self.file_inodes[key]]
            self._link(nodes, path[:-1], path[-1], node.inode)
            named = namer(node.job) if node.job and node.job.kind == "archive" else None
            if named is not None and named[1] is not None:
                node.mtime = named[1]  # a job file in archives/ shares its inode with jobs/
        self.nodes = nodes

    def _wanted(self, jobs: list[Job], namer: Namer, nodes: dict[int, Node]) -> list[Wanted]:
        """Who wants which path in the views (archive nodes are made here)."""
        wanted: list[Wanted] = []
        for job in jobs:
            if job.kind == "inventory":
                path: Path = ("inventories", inventory_name(job))
                order = _order(job.completed, job.job_id)
                wanted.append(Wanted(job.job_id, path, order, job.job_id))
        assembly = assemble(jobs, self._known)
        self._final = set()
        for archive in assembly.archives:
            named = namer(archive.jobs[0])
            if named is None:
                continue
            if self._settled(archive.jobs[0]):
                self._final.add(archive.key)
            inode = self._file_inode(archive.key)
            mtime = archive.completed if named[1] is None else named[1]
            nodes[inode] = Node(inode, False, mtime, archive=archive, nlink=0)
            path = _archive_path(named[0], archive.jobs[0], "")
            order = _order(archive.completed, archive.key)
            wanted.append(Wanted(archive.key, path, order, archive.archive_id))
        for job in assembly.loose:
            named = namer(job)
            if named is None:
                continue
            path = _archive_path(named[0], job, range_label(job))
            order = _order(job.completed, job.job_id)
            wanted.append(Wanted(job.job_id, path, order, job.archive_id or job.job_id))
        return wanted

    def _assign(self, wanted: list[Wanted], nodes: dict[int, Node]) -> dict[str, Path]:
        """A path for each claimant, keeping the paths shown before (see the docstring).

        A path shown in this mount stays while its file exists; one shown at an earlier
        mount (the caller persists :attr:`shown`) is taken again by its claimant if it
        is in the same directory as the claim and no path kept is in its way.
        """
        pins = _Pins()
        for key, path in self.shown.items():
            if key in self.file_inodes and self.file_inodes[key] in nodes:
                pins.add(key, path)
        for w in wanted:
            before = self._remembered.get(w.key)
            if w.key in pins.paths or before is None or before[:-1] != w.components[:-1]:
                continue
            if w.key in self._final and before != w.components:
                continue
            if pins.fits(before):
                pins.add(w.key, before)
        claims = [Wanted(key, path, PINNED, "") for key, path in pins.paths.items()]
        claims += [_clear_of(w, pins.files) for w in wanted if w.key not in pins.paths]
        return assign_paths(claims)

    def _file_inode(self, key: str) -> int:
        if key not in self.file_inodes:
            self.file_inodes[key] = FIRST_FILE_INODE + len(self.file_inodes)
        return self.file_inodes[key]

    def _dir(self, nodes: dict[int, Node], path: Path) -> Node:
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

    def _link(self, nodes: dict[int, Node], directory: Path, name: str, inode: int) -> None:
        parent = self._dir(nodes, directory)
        parent.children[name] = inode
        if not nodes[inode].nlink:  # its first name: jobs/ for a job, archives/ for an archive
            nodes[inode].parent = parent.inode
        nodes[inode].nlink += 1

    def lookup(self, parent: int, name: str) -> Node | None:
        node = self.nodes.get(parent)
        if node is None or not node.is_dir or name not in node.children:
            return None
        return self.nodes.get(node.children[name])


class _Pins:
    """Paths kept for their files: no other file takes one or passes through one."""

    def __init__(self) -> None:
        self.paths: dict[str, Path] = {}
        self.files: set[Path] = set()
        self._directories: set[Path] = set()

    def fits(self, path: Path) -> bool:
        return (
            path not in self.files
            and path not in self._directories
            and not any(path[:depth] in self.files for depth in range(1, len(path)))
        )

    def add(self, key: str, path: Path) -> None:
        self.paths[key] = path
        self.files.add(path)
        self._directories.update(path[:depth] for depth in range(1, len(path)))


def _remembered_path(path: object) -> bool:
    """A path saved by an earlier mount, that could have been made by this code."""
    return (
        isinstance(path, list)
        and len(path) >= 2
        and path[0] in ("archives", "inventories")
        and all(isinstance(part, str) and part == safe_name(part, "_") for part in path)
    )


def _clear_of(wanted: Wanted, files: set[Path]) -> Wanted:
    """``wanted`` with any directory of its path that is a file shown renamed.

    A shown file never gives way to a newcomer's directory: the newcomer's directory
    takes a suffix from its archive id instead (``dir~TAG``).
    """
    components = list(wanted.components)
    tag = "".join(c for c in wanted.tag if c.isalnum())[:8] or "x"
    for depth in range(1, len(components)):
        base = components[depth - 1].encode()[:200].decode("utf-8", "ignore")
        count = 0
        while tuple(components[:depth]) in files:
            count += 1
            suffix = f"~{tag}" if count == 1 else f"~{tag}-{count}"
            components[depth - 1] = safe_name(base + suffix, "_")
    return Wanted(wanted.key, tuple(components), wanted.precedence, wanted.tag)
