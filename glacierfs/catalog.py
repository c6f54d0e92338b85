"""The jobs a mount shows: what the service lists, plus what only the cache still holds.

Every job seen is saved in the cache's metadata. When the service stops listing a
job (its output expired), the job stays visible as long as its whole output is in
the cache, so a paid-for retrieval that was read once stays readable forever; a job
that is gone at the service and not wholly cached disappears. A refresh that fails
keeps the jobs already known: listing still answers from what it knows; a mount's first
refresh that fails ends the mount (unless ``-o empty_start``).

A record that fails validation (:func:`~glacierfs.jobs.job_from_record`: an id outside
the service's alphabet, a field missing or absurd) hides that one job, with one log
line per job, not one per refresh.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import trio

from glacierfs.cache.aio import AsyncDisk
from glacierfs.errors import BadResponse, GlacierfsError, ServiceError
from glacierfs.intervals import covers, of_leaves
from glacierfs.jobs import Job, job_from_record, job_from_saved, job_to_record
from glacierfs.logs import LogOnce
from glacierfs.retry import RetryPolicy, retrying

log = logging.getLogger(__name__)

ListJobs = Callable[[], list[Any]]


def record_key(record: Any) -> str:
    """What a refused record is logged once under: its JobId, whatever its fault."""
    return repr(record.get("JobId")) if isinstance(record, dict) else repr(record)


class Catalog:
    def __init__(
        self,
        list_jobs: ListJobs,
        disk: AsyncDisk,
        vault_arn: str,
        retry: RetryPolicy,
        refused: LogOnce | None = None,
    ) -> None:
        self._list_jobs = list_jobs
        self._disk = disk
        self.namespace = vault_arn
        self._namespace = f"jobs:{vault_arn}"
        self._retry = retry
        self._bad = refused or LogOnce(log)  # one line per record, however many refreshes
        self.jobs: dict[str, Job] = {}
        self.listed: dict[str, Job] = {}  # what the service listed at its last answer

    async def refresh(self, required: bool = False) -> bool:
        """Ask the service for its jobs; True when the set of jobs changed.

        ``required`` (a mount's first listing): a service that cannot list within the
        retry policy's wait is an error, not an empty tree that looks like a vault with
        no jobs (and, from fstab, a mount that "worked")."""
        try:
            records = await retrying(self._list, self._retry, "listing jobs")
        except GlacierfsError as error:
            if required:
                raise ServiceError(
                    f"the jobs could not be listed within the start-up wait "
                    f"(timeout={self._retry.timeout:g}, retries={self._retry.attempts}): "
                    f"{error}; -o empty_start mounts without them"
                ) from None
            log.warning(
                "job list not refreshed, showing the %d jobs known: %s", len(self.jobs), error
            )
            return False
        listed = self.listed = self._parse(records)
        saved = await self._disk.list_meta(self._namespace)
        jobs = dict(listed)
        for job_id, record in saved.items():
            if job_id in listed or not isinstance(record, dict):
                continue
            kept = await self._kept_after_expiry(job_id, record)
            if kept is not None:
                jobs[job_id] = kept
        for job_id, job in listed.items():
            if job_id not in saved:
                await self._disk.put_meta(self._namespace, job_id, job_to_record(job))
            if job_id not in self.jobs:
                log.info("job %s appeared (%s, %d bytes)", job_id, job.kind, job.size)
        changed = jobs.keys() != self.jobs.keys()
        self.jobs = jobs
        return changed

    async def _list(self) -> list[dict[str, Any]]:
        # a request: abandoned, not waited for, when the mount ends
        return await trio.to_thread.run_sync(self._list_jobs, abandon_on_cancel=True)

    def _parse(self, records: list[dict[str, Any]]) -> dict[str, Job]:
        jobs: dict[str, Job] = {}
        for record in records:
            try:
                job = job_from_record(record)
            except BadResponse as error:
                self._bad.error(record_key(record), "job not shown: %s", error)
                continue
            jobs[job.job_id] = job
        return jobs

    async def _kept_after_expiry(self, job_id: str, record: dict[str, Any]) -> Job | None:
        try:
            job = job_from_saved(record)
        except (TypeError, BadResponse):  # saved by an older version, or damaged
            return None
        cached = await self._disk.leaves(job.cache_key)
        if covers(of_leaves(cached), job.first_leaf, job.first_leaf + job.leaves):
            return job
        if job_id in self.jobs:
            log.info("job %s expired at the service and is not wholly cached: removed", job_id)
        await self._disk.delete_meta(self._namespace, job_id)
        return None
