"""What already holds an archive's bytes: leaves in the cache, and live jobs. Pure code.

A job is live while the service lists it as in progress, or as succeeded (it stops
listing a job when its output expires). Live jobs come from ListJobs, whoever started
them (this host, a run killed before it wrote down its job, another tool), so an
archive is never requested while a job of it is live. Job records are untrusted: a
live archive job's record whose JobId or ArchiveId is outside the service's alphabet
(a control character, a newline), or whose size, range or date does not parse, covers
nothing; :func:`live_jobs` hands it to the caller, which logs it once. So does one
whose size is past the service's 40 TiB.

What holds an archive is runs of leaves (:mod:`glacierfs.intervals`), so a 40 TiB
archive costs what a 1 MiB one does; only the leaves actually cached are counted one by
one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from glacierfs.errors import BadResponse
from glacierfs.intervals import Run, Runs, covers, gaps, of_leaves, union
from glacierfs.jobs import MAX_SIZE, SERVICE_ID, shown
from glacierfs.retrieve.selection import Archive
from glacierfs.treehash import MIB

EXPIRY = 86400.0
"""Outputs last at least 24 hours after completion: expected expiry, for ordering saves."""

_RANGE = re.compile(r"(\d+)-(-1|\d+)\Z")


@dataclass(frozen=True)
class LiveJob:
    job_id: str
    archive_id: str
    start: int
    end: int  # inclusive; -1 for an empty archive
    status: str  # InProgress | Succeeded
    created: float
    completed: float | None
    tier: str

    @property
    def leaves(self) -> Run:
        """The leaves its output holds, ``(first, stop)``."""
        return self.start // MIB, -(-(self.end + 1) // MIB)

    @property
    def expires(self) -> float:
        return (self.completed or self.created) + EXPIRY


def _moment(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def live_job(record: Any) -> LiveJob | None:
    """A live archive job from a ListJobs record; None for any other job; BadResponse
    for a live archive job's record that cannot be read."""
    if not isinstance(record, dict):
        raise BadResponse(f"a job record is not an object: {type(record).__name__}")
    if record.get("Action") != "ArchiveRetrieval":
        return None
    if record.get("StatusCode") not in ("InProgress", "Succeeded"):
        return None
    job_id, archive_id = record.get("JobId"), record.get("ArchiveId")
    if not isinstance(job_id, str) or not SERVICE_ID.fullmatch(job_id):
        raise BadResponse(f"a job record has an unusable JobId: {shown(job_id)}")
    if not isinstance(archive_id, str) or not SERVICE_ID.fullmatch(archive_id):
        raise BadResponse(f"job {job_id}: unusable ArchiveId {shown(archive_id)}")
    size, created = record.get("ArchiveSizeInBytes"), _moment(record.get("CreationDate"))
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_SIZE:
        raise BadResponse(f"job {job_id}: field ArchiveSizeInBytes is {shown(size)}")
    if created is None:
        raise BadResponse(
            f"job {job_id}: field CreationDate is {shown(record.get('CreationDate'))}"
        )
    start, end = _range(record.get("RetrievalByteRange"), size, job_id)
    status = str(record["StatusCode"])
    completed = _moment(record.get("CompletionDate")) if status == "Succeeded" else None
    tier = record.get("Tier") if isinstance(record.get("Tier"), str) else "Standard"
    return LiveJob(job_id, archive_id, start, end, status, created, completed, str(tier))


def _range(text: Any, size: int, job_id: str) -> tuple[int, int]:
    """The job's bytes: its RetrievalByteRange, or the whole archive when it has none."""
    if text is None:
        return 0, size - 1
    match = _RANGE.match(text) if isinstance(text, str) else None
    start, end = (int(match.group(1)), int(match.group(2))) if match else (0, size)
    if not start <= end + 1 <= size:
        raise BadResponse(f"job {job_id}: RetrievalByteRange is {shown(text)}")
    return start, end


Refused = Callable[[Any, BadResponse], None]


def live_jobs(records: Iterable[Any], refused: Refused | None = None) -> dict[str, list[LiveJob]]:
    """ArchiveId -> its live jobs; ``refused(record, why)`` for each record that covers
    nothing because it cannot be read."""
    found: dict[str, list[LiveJob]] = {}
    for record in records:
        try:
            job = live_job(record)
        except BadResponse as error:
            if refused is not None:
                refused(record, error)
            continue
        if job is not None:
            found.setdefault(job.archive_id, []).append(job)
    return found


@dataclass(frozen=True)
class Holding:
    """What holds one archive now."""

    archive: Archive
    cached: frozenset[int]  # leaves in the cache
    jobs: tuple[LiveJob, ...]  # its live jobs

    @property
    def cached_runs(self) -> Runs:
        return of_leaves(self.cached)

    @property
    def wholly_cached(self) -> bool:
        return len(self.cached) >= self.archive.leaves and covers(
            self.cached_runs, 0, self.archive.leaves
        )

    def covered(self) -> Runs:
        """Runs of leaves cached or to come from a live job."""
        return union(self.cached_runs, (job.leaves for job in self.jobs))

    def unsaved_jobs(self) -> list[LiveJob]:
        """Live jobs with leaves not yet in the cache: outputs still to save."""
        cached = self.cached_runs
        return [j for j in self.jobs if gaps(*j.leaves, cached)]
