"""Archives assembled from the jobs that retrieved them. Pure code.

``archives/PATH`` is the archive, not a job. An archive is shown when every one of
its leaves can be read through a job of it that the catalog holds: a full retrieval,
or range jobs that together cover it (a job the service no longer lists is held only
while it is wholly cached, so its leaves come from the cache). Archive jobs that
complete no archive (a range of an archive nothing else covers, a job whose record
disagrees with the others about what the archive is) are shown as themselves.

Each leaf of an archive is read through one job, chosen the same way every time
(:func:`choose`): a job not known to fail its check there, then one whose whole output
was proven against its tree hash (a record can lie about which bytes a job holds, its
answers' checksums matching its own bytes: until the archive checks out whole, a proven
job is the only one whose word on its range the bytes have borne out; the soak found
another range's bytes served through a lying range job whose leaves were cached), then
one to which the leaf is already served from the cache (no request at all), then a full
retrieval (its answers carry a checksum for every aligned request), then the range job
that completed first (then by id). The header probe at mount (:func:`probe_job`) uses the
same order for the archive's first leaf, so the leaf it fetches is the one the
archive file reads, through the same job.

Whether jobs cover an archive is found on runs of leaves (:func:`job_leaves`,
:mod:`glacierfs.intervals`), so a 40 TiB archive costs what a 1 MiB one does to show;
only a read walks leaves, those it reads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from glacierfs.intervals import Run
from glacierfs.intervals import covers as runs_cover
from glacierfs.jobs import Job
from glacierfs.treehash import MIB

LeafTest = Callable[[Job, int], bool]
"""``(job, leaf in archive coordinates)`` -> a yes or no the caller knows."""

Piece = tuple[Job, int, int]
"""``(job, offset in the job's output, length)``: one read through one job."""

RankKey = tuple[bool, float, str]


def rank(job: Job) -> RankKey:
    """Full retrievals first, then the job that completed first, then by id."""
    return (job.size != job.archive_size, job.completed, job.job_id)


def covers(job: Job, leaf: int) -> bool:
    """Whether the job's output holds the whole of this leaf of its archive."""
    size = job.archive_size or 0
    return job.range_start <= leaf * MIB and min((leaf + 1) * MIB, size) <= (
        job.range_start + job.size
    )


def job_leaves(job: Job) -> Run:
    """The leaves of its archive the job's output holds whole, ``(first, stop)``: the
    leaves for which :func:`covers` is true."""
    size, end = job.archive_size or 0, job.range_start + job.size
    first = -(-job.range_start // MIB)
    stop = -(-size // MIB) if end >= size else end // MIB
    return first, max(first, stop)


@dataclass(frozen=True)
class Archive:
    """One archive and the jobs it can be read through, best first."""

    archive_id: str
    size: int
    tree_hash: str | None
    jobs: tuple[Job, ...]

    @property
    def key(self) -> str:
        """Its name among the tree's files; a job id never holds ``/``."""
        return f"archive/{self.archive_id}"

    @property
    def leaves(self) -> int:
        return -(-self.size // MIB)

    @property
    def completed(self) -> float:
        """When the first of its jobs completed: a stable mtime when no tool gave one."""
        return min(job.completed for job in self.jobs)

    @property
    def expires(self) -> float:
        return min(job.expires for job in self.jobs)

    def whole(self) -> Job:
        """A job that stands for the whole archive in questions to the cache.

        It is never sent to the service: its id is the archive's key, and its tree
        hash the archive's, so a check of it is a check of the whole archive.
        """
        return replace(
            self.jobs[0], job_id=self.key, range_start=0, size=self.size, tree_hash=self.tree_hash
        )

    def covering(self, leaf: int) -> list[Job]:
        return [job for job in self.jobs if covers(job, leaf)]


@dataclass(frozen=True)
class Assembly:
    """What the archives view is made of."""

    archives: list[Archive]
    loose: list[Job]  # archive jobs shown as themselves


def _identity(job: Job) -> tuple[int | None, str | None]:
    return job.archive_size, job.archive_tree_hash


Known = Callable[[str], "tuple[int, str] | None"]
"""An ArchiveId -> its size and tree hash as the inventory lists it, if it does."""


def unknown(archive_id: str) -> tuple[int, str] | None:
    return None


def assemble(jobs: Iterable[Job], known: Known = unknown) -> Assembly:
    """Complete archives, and the archive jobs that complete none.

    What an archive is (its size and tree hash) is the inventory's word where it has one
    (``known``), else its oldest record's: a record that claims the archive's id with
    another archive's size and tree hash (the soak's ``claim-id`` lie) must never be the
    one that defines it, or the archive's file would serve the claimer's bytes.
    """
    groups: dict[str, list[Job]] = {}
    for job in jobs:
        if job.kind == "archive" and job.archive_id and job.archive_size is not None:
            groups.setdefault(job.archive_id, []).append(job)
    archives: list[Archive] = []
    loose: list[Job] = []
    for archive_id, group in sorted(groups.items()):
        group.sort(key=rank)
        # What the archive is, by its oldest record; a job that says otherwise is alone.
        listed = known(archive_id)
        reference = (
            listed
            if listed is not None
            else _identity(min(group, key=lambda j: (j.completed, j.job_id)))
        )
        agreeing = [job for job in group if _identity(job) == reference]
        loose += [job for job in group if _identity(job) != reference]
        size, tree_hash = reference
        archive = Archive(archive_id, size or 0, tree_hash, tuple(agreeing))
        if runs_cover((job_leaves(job) for job in agreeing), 0, archive.leaves):
            archives.append(archive)
        else:
            loose += agreeing
    loose.sort(key=lambda j: (j.completed, j.job_id))
    return Assembly(archives, loose)


def _unproven(job: Job) -> bool:
    return False


def choose(
    archive: Archive,
    leaf: int,
    has: LeafTest,
    bad: LeafTest,
    proven: Callable[[Job], bool] = _unproven,
) -> Job:
    """The job to read this leaf through (see the module's docstring)."""
    candidates = archive.covering(leaf)
    if len(candidates) == 1:
        return candidates[0]
    return min(
        candidates,
        key=lambda job: (bad(job, leaf), not proven(job), not has(job, leaf), rank(job)),
    )


def plan(
    archive: Archive,
    offset: int,
    size: int,
    has: LeafTest,
    bad: LeafTest,
    proven: Callable[[Job], bool] = _unproven,
) -> list[Piece]:
    """Reads, one per run of leaves through the same job, for ``size`` bytes at ``offset``."""
    end = min(offset + size, archive.size)
    if offset >= end:
        return []
    pieces: list[Piece] = []
    for leaf in range(offset // MIB, -(-end // MIB)):
        job = choose(archive, leaf, has, bad, proven)
        start, stop = max(offset, leaf * MIB), min(end, (leaf + 1) * MIB)
        if pieces and pieces[-1][0] is job:
            previous = pieces[-1]
            pieces[-1] = (job, previous[1], previous[2] + stop - start)
        else:
            pieces.append((job, start - job.range_start, stop - start))
    return pieces


def probe_job(jobs: Iterable[Job], skip: Callable[[Job], bool]) -> Job | None:
    """The job of one archive whose first leaf to fetch for the archive's description.

    The one the archive file reads its first leaf through (full first), else the
    range that starts earliest; never one that ``skip`` refuses.
    """
    usable = [job for job in jobs if not skip(job)]
    if not usable:
        return None
    return min(usable, key=lambda job: (job.range_start, rank(job)))
