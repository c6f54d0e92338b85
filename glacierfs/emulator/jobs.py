"""The emulator's jobs: started, completed and expired against the emulated clock.

Jobs complete ``job_delay`` seconds after they start (or, for a tier given in
``tier_delays``, a delay drawn from that tier's range: :mod:`.tiers`) and expire
``job_expiry`` seconds after they complete, both reckoned lazily on each access
against the emulated :class:`~.clock.Clock` ("settling"), or on demand through the
admin endpoint. The records themselves live in the :class:`~.store.Store`.
"""

from __future__ import annotations

import re
from typing import Any

from glacierfs.emulator.inventory import render_inventory
from glacierfs.emulator.outputs import Output, job_output, retrieved
from glacierfs.emulator.policy import enforce, job_bytes
from glacierfs.emulator.records import (
    Job,
    check_description,
    invalid,
    iso,
    missing,
    new_id,
    not_found,
)
from glacierfs.emulator.store import Store
from glacierfs.emulator.tiers import TIERS, completion_delay
from glacierfs.treehash import MIB, combine

RANGE = re.compile(r"(\d+)-(\d+)\Z")


class Jobs:
    """Initiate Job, Describe Job, List Jobs and the admin's job controls over one store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def initiate(self, vault: str, params: dict[str, Any]) -> Job:
        store = self.store
        store.vault(vault)
        description = params.get("Description")
        if description is not None:
            check_description(description)
        tier = params.get("Tier") or "Standard"
        if tier not in TIERS:
            raise invalid(f"Invalid tier: {tier}")
        job = Job(new_id(69), vault, "", store.clock.now(), description, tier)
        job.sns_topic = params.get("SNSTopic")
        if tier in store.tier_delays:
            job.delay = completion_delay(store.tier_delays[tier], job.job_id)
        self._kind(job, params)
        with store.lock:
            if job.action == "ArchiveRetrieval":
                self._within_policy(job)
            store.jobs[job.job_id] = job
            self._settle(job)
            store.save()
        return job

    def _kind(self, job: Job, params: dict[str, Any]) -> None:
        kind = params.get("Type")
        if kind == "archive-retrieval":
            self._archive_job(job, params)
        elif kind == "inventory-retrieval":
            fmt = params.get("Format") or "JSON"
            if fmt not in ("JSON", "CSV"):
                raise invalid(f"Invalid format: {fmt}")
            job.action, job.fmt = "InventoryRetrieval", fmt
        elif kind is None:
            raise missing("Type")
        else:
            raise invalid(f"Invalid job type: {kind}")

    def _archive_job(self, job: Job, params: dict[str, Any]) -> None:
        archive_id = params.get("ArchiveId")
        if not archive_id:
            raise missing("ArchiveId")
        archive = self.store.archive(job.vault, archive_id)
        job.action, job.archive_id = "ArchiveRetrieval", archive_id
        text = params.get("RetrievalByteRange")
        if text is None:
            return
        match = RANGE.match(str(text))
        start, end = (int(match.group(1)), int(match.group(2))) if match else (-1, -1)
        aligned = (
            match is not None
            and start % MIB == 0
            and start <= end < archive.size
            and ((end + 1) % MIB == 0 or end == archive.size - 1)
        )
        if not aligned:
            raise invalid(f"The retrieval byte range is not megabyte aligned: {text}")
        job.byte_range = [start, end]

    def _within_policy(self, job: Job) -> None:
        store = self.store
        earlier = [
            (j.created, job_bytes(j, store.archives[j.archive_id].size))
            for j in store.jobs.values()
            if j.action == "ArchiveRetrieval" and j.archive_id and j.tier == "Standard"
        ]
        size = job_bytes(job, store.archives[job.archive_id or ""].size)
        enforce(store.policy, job.tier, size, earlier, job.created)

    def job(self, vault: str, job_id: str) -> Job:
        self.store.vault(vault)
        with self.store.lock:
            job = self.store.jobs.get(job_id)
            if job is None or job.vault != vault:
                raise not_found(f"The job ID was not found: {job_id}")
            self._settle(job)
            if job.expired:
                raise not_found(f"The job ID was not found: {job_id}")
            return job

    def output(self, job: Job) -> Output:
        return job_output(self.store, job)

    # the clock

    def _settle(self, job: Job) -> None:
        store = self.store
        now = store.clock.now()
        delay = store.job_delay if job.delay is None else job.delay
        if job.status == "InProgress" and now >= job.created + delay:
            self._complete(job, job.created + delay)
        expiry = store.job_expiry
        if not job.expired and job.completed is not None and now >= job.completed + expiry:
            job.expired, job.expired_at = True, job.completed + expiry

    def _complete(self, job: Job, when: float) -> None:
        store = self.store
        job.status, job.status_message, job.completed = "Succeeded", "Succeeded", when
        if job.action == "InventoryRetrieval":
            vault = store.vaults[job.vault]
            archives = store.live(job.vault)
            path = store.root / "outputs" / job.job_id
            text = render_inventory(store.arn(job.vault), when, archives, job.fmt or "JSON")
            path.write_bytes(text)
            job.inventory_size = path.stat().st_size
            vault.last_inventory = when
        store.save()

    # the admin's controls

    def complete(self, job_id: str) -> Job:
        with self.store.lock:
            job = self._any_job(job_id)
            if job.status == "InProgress":
                self._complete(job, self.store.clock.now())
            return job

    def fail(self, job_id: str, message: str) -> Job:
        with self.store.lock:
            job = self._any_job(job_id)
            job.status, job.status_message = "Failed", message
            job.completed = self.store.clock.now()
            self.store.save()
            return job

    def expire(self, job_id: str) -> Job:
        with self.store.lock:
            job = self._any_job(job_id)
            if not job.expired:
                job.expired, job.expired_at = True, self.store.clock.now()
            self.store.save()
            return job

    def override(self, job_id: str, fields: dict[str, Any]) -> Job:
        with self.store.lock:
            job = self._any_job(job_id)
            job.overrides.update(fields)
            self.store.save()
            return job

    def _any_job(self, job_id: str) -> Job:
        job = self.store.jobs.get(job_id)
        if job is None:
            raise not_found(f"The job ID was not found: {job_id}")
        return job

    # listings

    def list_jobs(
        self,
        vault: str,
        completed: str | None,
        status: str | None,
        limit: str | None,
        marker: str | None,
    ) -> dict[str, Any]:
        self.store.vault(vault)
        if completed not in (None, "true", "false"):
            raise invalid(f"Invalid completed value: {completed}")
        if status not in (None, "InProgress", "Succeeded", "Failed"):
            raise invalid(f"Invalid statuscode: {status}")
        with self.store.lock:
            jobs = self._settled(vault)
            chosen = [
                j.job_id
                for j in jobs
                if not j.expired
                and (completed is None or (j.status != "InProgress") == (completed == "true"))
                and (status is None or j.status == status)
            ]
            page, next_marker = self.store.page(chosen, limit, marker)
            records = [self.describe(self.store.jobs[j]) for j in page]
            return {"JobList": records, "Marker": next_marker}

    def _settled(self, vault: str | None) -> list[Job]:
        """A vault's jobs (every vault's, for None), oldest first, settled against the clock."""
        jobs = sorted(
            (j for j in self.store.jobs.values() if vault is None or j.vault == vault),
            key=lambda j: (j.created, j.job_id),
        )
        for job in jobs:
            self._settle(job)
        return jobs

    def history(self) -> list[dict[str, Any]]:
        """Every job ever initiated, expired ones too, with the moments it lived."""
        with self.store.lock:
            return [_lived(job) for job in self._settled(None)]

    def describe(self, job: Job) -> dict[str, Any]:
        record: dict[str, Any] = {
            "JobId": job.job_id,
            "JobDescription": job.description,
            "Action": job.action,
            "ArchiveId": None,
            "ArchiveSizeInBytes": None,
            "ArchiveSHA256TreeHash": None,
            "SHA256TreeHash": None,
            "RetrievalByteRange": None,
            "InventorySizeInBytes": job.inventory_size,
            "InventoryRetrievalParameters": None,
            "VaultARN": self.store.arn(job.vault),
            "CreationDate": iso(job.created),
            "Completed": job.status != "InProgress",
            "CompletionDate": iso(job.completed) if job.completed is not None else None,
            "StatusCode": job.status,
            "StatusMessage": job.status_message,
            "SNSTopic": job.sns_topic,
            "Tier": job.tier,
        }
        if job.action == "InventoryRetrieval":
            record["InventoryRetrievalParameters"] = {
                "Format": job.fmt,
                "StartDate": None,
                "EndDate": None,
                "Limit": None,
                "Marker": None,
            }
        else:
            self._describe_archive_job(job, record)
        record.update(job.overrides)
        return record

    def _describe_archive_job(self, job: Job, record: dict[str, Any]) -> None:
        archive, start, end, leaves = retrieved(self.store, job)
        record["ArchiveId"] = archive.archive_id
        record["ArchiveSizeInBytes"] = archive.size
        record["ArchiveSHA256TreeHash"] = archive.tree_hash
        if archive.size:
            record["RetrievalByteRange"] = f"{start}-{end}"
        if job.status == "Succeeded" and leaves is not None:
            record["SHA256TreeHash"] = combine(leaves).hex()


def _lived(job: Job) -> dict[str, Any]:
    byte_range = "-".join(map(str, job.byte_range)) if job.byte_range else None
    return {
        "JobId": job.job_id,
        "Action": job.action,
        "ArchiveId": job.archive_id,
        "RetrievalByteRange": byte_range,
        "Tier": job.tier,
        "StatusCode": job.status,
        "created": job.created,
        "completed": job.completed,
        "expired": job.expired_at if job.expired else None,
    }
