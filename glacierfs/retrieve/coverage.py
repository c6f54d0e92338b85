"""What already holds an archive's bytes: leaves in the cache, and live jobs. Pure code.

A job is live while the service lists it as in progress, or as succeeded (it stops
listing a job when its output expires). Live jobs come from ListJobs, whoever started
them (this host, a run killed before it wrote down its job, another tool), so an
archive is never requested while a job of it is live. Job records are untrusted: one
that does not parse is ignored for coverage (and logged by the caller).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

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
    def leaves(self) -> range:
        return range(self.start // MIB, -(-(self.end + 1) // MIB))

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
    start, end = 0, size - 1
    text = record.get("RetrievalByteRange")
    if isinstance(text, str) and (match := _RANGE.match(text)):
        start, end = int(match.group(1)), int(match.group(2))
    completed = _moment(record.get("CompletionDate")) if status == "Succeeded" else None
    tier = record.get("Tier") if isinstance(record.get("Tier"), str) else "Standard"
    return LiveJob(job_id, archive_id, start, end, status, created, completed, str(tier))


def live_jobs(records: Iterable[Any]) -> dict[str, list[LiveJob]]:
    """ArchiveId -> its live jobs."""
    found: dict[str, list[LiveJob]] = {}
    for record in records:
        job = live_job(record)
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
    def wholly_cached(self) -> bool:
        return len(self.cached) >= self.archive.leaves and all(
            leaf in self.cached for leaf in range(self.archive.leaves)
        )

    def covered(self) -> set[int]:
        """Leaves cached or to come from a live job."""
        leaves = set(self.cached)
        for job in self.jobs:
            leaves.update(job.leaves)
        return leaves

    def unsaved_jobs(self) -> list[LiveJob]:
        """Live jobs with leaves not yet in the cache: outputs still to save."""
        return [j for j in self.jobs if any(leaf not in self.cached for leaf in j.leaves)]
