"""What already holds an archive's bytes: leaves in the cache, and live jobs. Pure code.

A job is live while the service lists it as in progress, or as succeeded (it stops
listing a job when its output expires). Live jobs come from ListJobs, whoever started
them (this host, a run killed before it wrote down its job, another tool), so an
archive is never requested while a job of it is live. Job records are untrusted: one
that does not parse, or claims a size past the service's limit, is ignored for coverage
(and logged by the caller).

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

from glacierfs.intervals import Run, Runs, covers, gaps, of_leaves, union
from glacierfs.jobs import MAX_SIZE
from glacierfs.logs import escape
from glacierfs.retrieve.selection import Archive
from glacierfs.treehash import MIB

EXPIRY = 86400.0
"""Outputs last at least 24 hours after completion: expected expiry, for ordering saves."""

_RANGE = re.compile(r"(\d+)-(\d+)\Z")


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
    """A live archive job from a ListJobs record; None for anything else."""
    if not isinstance(record, dict) or record.get("Action") != "ArchiveRetrieval":
        return None
    job_id, archive_id = record.get("JobId"), record.get("ArchiveId")
    status, size = record.get("StatusCode"), record.get("ArchiveSizeInBytes")
    created = _moment(record.get("CreationDate"))
    if not (isinstance(job_id, str) and isinstance(archive_id, str) and created is not None):
        return None
    if status not in ("InProgress", "Succeeded") or not isinstance(size, int):
        return None
    if not 0 <= size <= MAX_SIZE:
        return None
    start, end = 0, size - 1
    text = record.get("RetrievalByteRange")
    if isinstance(text, str) and (match := _RANGE.match(text)):
        start, end = int(match.group(1)), int(match.group(2))
        if not 0 <= start <= end + 1 <= size:
            return None
    completed = _moment(record.get("CompletionDate")) if status == "Succeeded" else None
    tier = record.get("Tier") if isinstance(record.get("Tier"), str) else "Standard"
    return LiveJob(job_id, archive_id, start, end, status, created, completed, str(tier))


def past_limits(record: Any) -> str | None:
    """Why an archive job's record is past the service's limits (one line, escaped), or
    None: a size below 0 or above 40 TiB is no archive's, and is not planned around."""
    if not isinstance(record, dict) or record.get("Action") != "ArchiveRetrieval":
        return None
    size = record.get("ArchiveSizeInBytes")
    if not isinstance(size, int) or 0 <= size <= MAX_SIZE:
        return None
    return (
        f"job {escape(str(record.get('JobId'))[:200])}: ArchiveSizeInBytes {size} is no archive's"
    )


def live_jobs(
    records: Iterable[Any], refused: Callable[[str], None] = lambda why: None
) -> dict[str, list[LiveJob]]:
    """ArchiveId -> its live jobs; ``refused`` is told of each record past the limits."""
    found: dict[str, list[LiveJob]] = {}
    for record in records:
        job = live_job(record)
        if job is not None:
            found.setdefault(job.archive_id, []).append(job)
        elif (why := past_limits(record)) is not None:
            refused(why)
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
