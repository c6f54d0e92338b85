"""The emulator's vaults, archives and jobs, kept in a state directory across restarts.

Layout of the state directory: ``state.json`` (vaults, archives, jobs; rewritten
atomically on every change), ``archives/<id>`` (uploaded bytes; seeded archives
have no file), ``archives/<id>.leaves`` (the 32-byte leaf digests of every
archive) and ``outputs/<job>`` (inventory outputs, made when the job completes).

Jobs complete ``job_delay`` seconds after they start (or, for a tier given in
``tier_delays``, a delay drawn from that tier's range: :mod:`.tiers`) and expire
``job_expiry`` seconds after they complete, both reckoned lazily on each access
against the emulated :class:`~.clock.Clock`, or on demand through the admin endpoint.
The clock's time is saved with the state, so a restart never moves it back.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from glacierfs.emulator.clock import Clock
from glacierfs.emulator.content import FileSource, SeededSource, Source, source_digests
from glacierfs.emulator.inventory import render_inventory
from glacierfs.emulator.tiers import completion_delay
from glacierfs.treehash import MIB, combine, leaf_digests


class ApiError(Exception):
    """An error answer: HTTP status, Glacier error code, message, Client or Server."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.type = "Server" if status >= 500 else "Client"


def not_found(message: str) -> ApiError:
    return ApiError(404, "ResourceNotFoundException", message)


def invalid(message: str) -> ApiError:
    return ApiError(400, "InvalidParameterValueException", message)


def missing(what: str) -> ApiError:
    return ApiError(400, "MissingParameterValueException", f"Required parameter {what} missing")


def iso(moment: float) -> str:
    milliseconds = int(moment * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(moment)) + f".{milliseconds:03d}Z"


def is_tree_node(start: int, end: int, size: int) -> bool:
    """Whether bytes ``start`` to ``end`` (exclusive) are one node of the data's tree.

    Node ``j`` of level ``k`` covers leaves ``j*2^k`` up to ``(j+1)*2^k`` or the last
    leaf, whichever comes first (an odd node is carried up unchanged).
    """
    if size == 0:
        return start == end == 0
    if start % MIB or start >= end or end > size or (end != size and end % MIB):
        return False
    first, count, leaves = start // MIB, -(-(end - start) // MIB), -(-size // MIB)
    span = 1
    while span < count:
        span *= 2
    return first % span == 0 and (count == span or first + count == leaves)


VAULT_NAME = re.compile(r"[A-Za-z0-9_.-]{1,255}\Z")
RANGE = re.compile(r"(\d+)-(\d+)\Z")


@dataclass
class Vault:
    name: str
    created: float
    last_inventory: float | None = None


@dataclass
class Archive:
    archive_id: str
    vault: str
    size: int
    tree_hash: str
    description: str
    created: float
    seed: int | None = None
    deleted: bool = False  # jobs started before the delete still read it


@dataclass
class Job:
    job_id: str
    vault: str
    action: str  # ArchiveRetrieval | InventoryRetrieval
    created: float
    description: str | None
    tier: str
    archive_id: str | None = None
    byte_range: list[int] | None = None  # [start, end] inclusive, as asked
    fmt: str | None = None
    status: str = "InProgress"
    completed: float | None = None
    status_message: str | None = None
    expired: bool = False
    inventory_size: int | None = None
    sns_topic: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    delay: float | None = None  # seconds to complete; None: the store's job_delay
    expired_at: float | None = None


@dataclass
class Output:
    """What Get Job Output serves for one job."""

    source: Source
    content_type: str
    description: str | None
    leaves: list[bytes] | None  # None: no checksum header for any range

    def tree_hash(self, start: int, end: int) -> str | None:
        """The checksum header for bytes ``start..end`` (inclusive), when one is sent."""
        if self.leaves is None or not is_tree_node(start, end + 1, self.source.size):
            return None
        return combine(_leaf_window(self.leaves, start, end)).hex()


class _Window:
    """Bytes ``offset`` to ``offset + size`` of another source."""

    def __init__(self, inner: Source, offset: int, size: int) -> None:
        self._inner, self._offset, self.size = inner, offset, size

    def chunks(self, start: int, end: int) -> Any:
        return self._inner.chunks(self._offset + start, self._offset + end)


class Store:
    def __init__(
        self,
        root: Path,
        *,
        account: str = "123456789012",
        region: str = "us-east-1",
        job_delay: float = 0.0,
        job_expiry: float = 86400.0,
        max_page: int = 50,
        tier_delays: dict[str, tuple[float, float]] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.root, self.account, self.region = root, account, region
        self.job_delay, self.job_expiry, self.max_page = job_delay, job_expiry, max_page
        self.tier_delays = dict(tier_delays or {})
        self.clock = clock or Clock()
        self.lock = threading.RLock()
        self.vaults: dict[str, Vault] = {}
        self.archives: dict[str, Archive] = {}
        self.jobs: dict[str, Job] = {}
        self._leaves: dict[str, list[bytes]] = {}
        for sub in ("archives", "outputs"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        self._load()

    # persistence

    def _load(self) -> None:
        path = self.root / "state.json"
        if not path.exists():
            return
        state = json.loads(path.read_text())
        saved_time = state.get("clock")
        if isinstance(saved_time, int | float) and saved_time > self.clock.now():
            self.clock.advance(saved_time - self.clock.now())
        self.vaults = {v["name"]: Vault(**v) for v in state["vaults"]}
        self.archives = {a["archive_id"]: Archive(**a) for a in state["archives"]}
        self.jobs = {j["job_id"]: Job(**j) for j in state["jobs"]}

    def save(self) -> None:
        with self.lock:
            state = {
                "vaults": [dataclasses.asdict(v) for v in self.vaults.values()],
                "archives": [dataclasses.asdict(a) for a in self.archives.values()],
                "jobs": [dataclasses.asdict(j) for j in self.jobs.values()],
                "clock": self.clock.now(),
            }
            temporary = self.root / "state.json.tmp"
            temporary.write_text(json.dumps(state))
            os.replace(temporary, self.root / "state.json")

    # vaults

    def arn(self, vault: str) -> str:
        return f"arn:aws:glacier:{self.region}:{self.account}:vaults/{vault}"

    def vault(self, name: str) -> Vault:
        found = self.vaults.get(name)
        if found is None:
            raise not_found(f"Vault not found for ARN: {self.arn(name)}")
        return found

    def create_vault(self, name: str) -> None:
        if not VAULT_NAME.match(name):
            raise invalid(f"Invalid vault name: {name}")
        with self.lock:
            self.vaults.setdefault(name, Vault(name, self.clock.now()))
            self.save()

    def delete_vault(self, name: str) -> None:
        with self.lock:
            self.vault(name)
            if self._live(name):
                raise invalid(f"Vault not empty or recently written to: {self.arn(name)}")
            del self.vaults[name]
            self.save()

    def describe_vault(self, name: str) -> dict[str, Any]:
        vault = self.vault(name)
        archives = self._live(name)
        return {
            "VaultARN": self.arn(name),
            "VaultName": name,
            "CreationDate": iso(vault.created),
            "LastInventoryDate": iso(vault.last_inventory) if vault.last_inventory else None,
            "NumberOfArchives": len(archives),
            "SizeInBytes": sum(a.size for a in archives),
        }

    def list_vaults(self, limit: str | None, marker: str | None) -> dict[str, Any]:
        names = sorted(self.vaults)
        page, next_marker = self._page([self.arn(n) for n in names], limit, marker)
        return {
            "VaultList": [self.describe_vault(arn.rsplit("/", 1)[1]) for arn in page],
            "Marker": next_marker,
        }

    def _page(self, keys: list[str], limit: str | None, marker: str | None) -> Any:
        size = self.max_page
        if limit is not None:
            if not limit.isdigit() or not 1 <= int(limit) <= 1000:
                raise invalid(f"Invalid limit: {limit}")
            size = min(int(limit), self.max_page)
        start = 0
        if marker is not None:
            if marker not in keys:
                raise invalid(f"Invalid marker: {marker}")
            start = keys.index(marker)
        page = keys[start : start + size]
        return page, keys[start + size] if start + size < len(keys) else None

    # archives

    def upload(self, vault: str, data: bytes, description: str, checksum: str | None) -> Archive:
        self.vault(vault)
        _check_description(description)
        digests = leaf_digests(data)
        tree = combine(digests).hex()
        if checksum is None:
            raise missing("x-amz-sha256-tree-hash")
        if checksum.lower() != tree:
            raise invalid(f"Checksum mismatch: expected {checksum}, computed {tree}")
        archive = Archive(_new_id(104), vault, len(data), tree, description, self.clock.now())
        (self.root / "archives" / archive.archive_id).write_bytes(data)
        return self._add(archive, digests)

    def seed(self, vault: str, size: int, seed: int, description: str) -> Archive:
        self.vault(vault)
        _check_description(description)
        if size < 0 or seed < 0:
            raise invalid("size and seed must not be negative")
        digests = source_digests(SeededSource(seed, size))
        archive = Archive(
            _new_id(104), vault, size, combine(digests).hex(), description, self.clock.now(), seed
        )
        return self._add(archive, digests)

    def _add(self, archive: Archive, digests: list[bytes]) -> Archive:
        path = self.root / "archives" / f"{archive.archive_id}.leaves"
        path.write_bytes(b"".join(digests))
        with self.lock:
            self._leaves[archive.archive_id] = digests
            self.archives[archive.archive_id] = archive
            self.save()
        return archive

    def archive(self, vault: str, archive_id: str) -> Archive:
        self.vault(vault)
        found = self.archives.get(archive_id)
        if found is None or found.vault != vault or found.deleted:
            raise not_found(f"Archive not found: {archive_id}")
        return found

    def delete_archive(self, vault: str, archive_id: str) -> None:
        with self.lock:
            self.archive(vault, archive_id).deleted = True
            self.save()

    def _live(self, vault: str) -> list[Archive]:
        return [a for a in self.archives.values() if a.vault == vault and not a.deleted]

    def source(self, archive: Archive) -> Source:
        if archive.seed is not None:
            return SeededSource(archive.seed, archive.size)
        return FileSource(self.root / "archives" / archive.archive_id, archive.size)

    def leaves(self, archive: Archive) -> list[bytes]:
        with self.lock:
            if archive.archive_id not in self._leaves:
                raw = (self.root / "archives" / f"{archive.archive_id}.leaves").read_bytes()
                self._leaves[archive.archive_id] = [raw[i : i + 32] for i in range(0, len(raw), 32)]
            return self._leaves[archive.archive_id]

    # jobs

    def initiate(self, vault: str, params: dict[str, Any]) -> Job:
        self.vault(vault)
        kind = params.get("Type")
        description = params.get("Description")
        if description is not None:
            _check_description(description)
        tier = params.get("Tier") or "Standard"
        if tier not in ("Expedited", "Standard", "Bulk"):
            raise invalid(f"Invalid tier: {tier}")
        job = Job(
            _new_id(69),
            vault,
            "",
            self.clock.now(),
            description,
            tier,
            sns_topic=params.get("SNSTopic"),
        )
        if tier in self.tier_delays:
            job.delay = completion_delay(self.tier_delays[tier], job.job_id)
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
        with self.lock:
            self.jobs[job.job_id] = job
            self._settle(job)
            self.save()
        return job

    def _archive_job(self, job: Job, params: dict[str, Any]) -> None:
        archive_id = params.get("ArchiveId")
        if not archive_id:
            raise missing("ArchiveId")
        archive = self.archive(job.vault, archive_id)
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

    def job(self, vault: str, job_id: str) -> Job:
        self.vault(vault)
        with self.lock:
            job = self.jobs.get(job_id)
            if job is None or job.vault != vault:
                raise not_found(f"The job ID was not found: {job_id}")
            self._settle(job)
            if job.expired:
                raise not_found(f"The job ID was not found: {job_id}")
            return job

    def _settle(self, job: Job) -> None:
        now = self.clock.now()
        delay = self.job_delay if job.delay is None else job.delay
        if job.status == "InProgress" and now >= job.created + delay:
            self._complete(job, job.created + delay)
        if not job.expired and job.completed is not None and now >= job.completed + self.job_expiry:
            job.expired, job.expired_at = True, job.completed + self.job_expiry

    def _complete(self, job: Job, when: float) -> None:
        job.status, job.status_message, job.completed = "Succeeded", "Succeeded", when
        if job.action == "InventoryRetrieval":
            vault = self.vaults[job.vault]
            archives = self._live(job.vault)
            path = self.root / "outputs" / job.job_id
            text = render_inventory(self.arn(job.vault), when, archives, job.fmt or "JSON")
            path.write_bytes(text)
            job.inventory_size = path.stat().st_size
            vault.last_inventory = when
        self.save()

    def complete(self, job_id: str) -> Job:
        with self.lock:
            job = self._any_job(job_id)
            if job.status == "InProgress":
                self._complete(job, self.clock.now())
            return job

    def fail(self, job_id: str, message: str) -> Job:
        with self.lock:
            job = self._any_job(job_id)
            job.status, job.status_message, job.completed = "Failed", message, self.clock.now()
            self.save()
            return job

    def expire(self, job_id: str) -> Job:
        with self.lock:
            job = self._any_job(job_id)
            if not job.expired:
                job.expired, job.expired_at = True, self.clock.now()
            self.save()
            return job

    def override(self, job_id: str, fields: dict[str, Any]) -> Job:
        with self.lock:
            job = self._any_job(job_id)
            job.overrides.update(fields)
            self.save()
            return job

    def _any_job(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise not_found(f"The job ID was not found: {job_id}")
        return job

    def list_jobs(
        self,
        vault: str,
        completed: str | None,
        status: str | None,
        limit: str | None,
        marker: str | None,
    ) -> dict[str, Any]:
        self.vault(vault)
        if completed not in (None, "true", "false"):
            raise invalid(f"Invalid completed value: {completed}")
        if status not in (None, "InProgress", "Succeeded", "Failed"):
            raise invalid(f"Invalid statuscode: {status}")
        with self.lock:
            jobs = sorted(
                (j for j in self.jobs.values() if j.vault == vault),
                key=lambda j: (j.created, j.job_id),
            )
            for job in jobs:
                self._settle(job)
            chosen = [
                j.job_id
                for j in jobs
                if not j.expired
                and (completed is None or (j.status != "InProgress") == (completed == "true"))
                and (status is None or j.status == status)
            ]
            page, next_marker = self._page(chosen, limit, marker)
            return {"JobList": [self.describe(self.jobs[j]) for j in page], "Marker": next_marker}

    def history(self) -> list[dict[str, Any]]:
        """Every job ever initiated, expired ones too, with the moments it lived."""
        with self.lock:
            jobs = sorted(self.jobs.values(), key=lambda j: (j.created, j.job_id))
            answer = []
            for job in jobs:
                self._settle(job)
                answer.append(
                    {
                        "JobId": job.job_id,
                        "Action": job.action,
                        "ArchiveId": job.archive_id,
                        "RetrievalByteRange": "-".join(map(str, job.byte_range))
                        if job.byte_range
                        else None,
                        "Tier": job.tier,
                        "StatusCode": job.status,
                        "created": job.created,
                        "completed": job.completed,
                        "expired": job.expired_at if job.expired else None,
                    }
                )
            return answer

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
            "VaultARN": self.arn(job.vault),
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
        archive, start, end, leaves = self._retrieved(job)
        record["ArchiveId"] = archive.archive_id
        record["ArchiveSizeInBytes"] = archive.size
        record["ArchiveSHA256TreeHash"] = archive.tree_hash
        if archive.size:
            record["RetrievalByteRange"] = f"{start}-{end}"
        if job.status == "Succeeded" and leaves is not None:
            record["SHA256TreeHash"] = combine(leaves).hex()

    def _retrieved(self, job: Job) -> tuple[Archive, int, int, list[bytes] | None]:
        """An archive job's archive and range (inclusive), and the range's leaf digests
        when the range is a node of the archive's tree (else None: no checksum)."""
        archive = self.archives[job.archive_id or ""]
        start, end = job.byte_range or (0, archive.size - 1)
        if not is_tree_node(start, end + 1, archive.size):
            return archive, start, end, None
        return archive, start, end, _leaf_window(self.leaves(archive), start, end)

    def output(self, job: Job) -> Output:
        if job.status != "Succeeded":
            raise invalid(f"The job is not currently available for download: {job.job_id}")
        if job.action == "InventoryRetrieval":
            path = self.root / "outputs" / job.job_id
            kind = "text/csv" if job.fmt == "CSV" else "application/json"
            return Output(FileSource(path, path.stat().st_size), kind, None, None)
        archive, start, end, leaves = self._retrieved(job)
        window = _Window(self.source(archive), start, end - start + 1)
        return Output(window, "application/octet-stream", archive.description, leaves)


def _leaf_window(leaves: list[bytes], start: int, end: int) -> list[bytes]:
    """The digests of the leaves that bytes ``start..end`` (inclusive) cover."""
    return leaves[start // MIB : -(-(end + 1) // MIB)]


def _new_id(nbytes: int) -> str:
    return secrets.token_urlsafe(nbytes)[: nbytes * 4 // 3]


def _check_description(text: str) -> None:
    if len(text) > 1024 or any(not " " <= c <= "~" for c in text):
        raise invalid("The description must be at most 1024 printable ASCII characters")
