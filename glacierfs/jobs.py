"""A job record from the service, validated into what the filesystem needs.

Job records are untrusted input: a field may be missing, null, of the wrong type or
absurd. :func:`job_from_record` checks every field it uses and raises BadResponse
with one line naming the job and the field, so one bad record hides one file, not
the mount. JobIds and ArchiveIds become file names and log text: they must be in the
service's own alphabet (:data:`SERVICE_ID`), so ``.``, ``..``, a slash or a control
character never get that far.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

from glacierfs.errors import BadResponse
from glacierfs.treehash import MIB, is_tree_hash_aligned

EXPIRY = timedelta(hours=24)
"""Output stays downloadable for at least 24 hours after completion."""

MAX_SIZE = 40 << 40
"""40 TiB: Glacier's largest archive (10,000 parts of 4 GiB are a little less); a record
that says more is refused, so no size past the service's limits reaches the planning."""

SERVICE_ID = re.compile(r"[A-Za-z0-9_-]{1,256}")
"""What the service's JobIds and ArchiveIds are made of: base64url, 92 and 138
characters long in practice. Anything else is a wrong or hostile answer."""

_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_RANGE = re.compile(r"^(\d+)-(-1|\d+)$")


@dataclass(frozen=True)
class Job:
    """One completed job whose output can be read."""

    job_id: str
    kind: str  # "archive" or "inventory"
    size: int  # bytes of output
    completed: float  # POSIX time of CompletionDate
    created: float
    vault_arn: str
    archive_id: str | None = None
    archive_size: int | None = None
    archive_tree_hash: str | None = None
    range_start: int = 0
    tree_hash: str | None = None  # of the output; None when the service gives none
    inventory_format: str | None = None  # "JSON" or "CSV"
    description: str | None = None  # JobDescription, the user's own note

    @property
    def expires(self) -> float:
        return self.completed + EXPIRY.total_seconds()

    @cached_property
    def leaves(self) -> int:
        """How many 1 MiB leaves the output has."""
        return -(-self.size // MIB)

    @cached_property
    def cache_key(self) -> str:
        """The cache object holding this output's bytes; never changes meaning.

        Archive bytes are keyed by what the archive is (its tree hash and size), so every
        job of the same archive, range or whole, in any vault, shares them; inventories
        by the job that produced them.
        """
        if self.kind == "archive" and self.archive_tree_hash:
            return f"archive/{self.archive_tree_hash}/{self.archive_size}"
        if self.kind == "archive":
            return f"archive-id/{self.vault_arn}/{self.archive_id}"
        return f"inventory/{self.vault_arn}/{self.job_id}"

    @cached_property
    def first_leaf(self) -> int:
        """The cache leaf holding the output's first byte (range jobs start inside)."""
        return self.range_start // MIB

    @cached_property
    def ident(self) -> str:
        """This job, whatever vault or endpoint it comes from, as a short token."""
        return job_token(self.vault_arn, self.job_id)

    @property
    def owner(self) -> str:
        """Whom the cached leaves this job fetched are good for (see the disk cache): the
        job itself, until its archive's tree hash proves the leaves the archive's.

        A record can say anything, ArchiveId and tree hashes included: two jobs that name
        the same archive are not the same bytes until the bytes show it. So a leaf serves
        the job that fetched it, whichever path fetched it (a read, the name probe, the
        saver of ``retrieve``), and no job is judged by another's bytes; a renewed
        retrieval reads what an expired one cached once the archive was proven whole."""
        return self.ident

    @property
    def whole_archive(self) -> bool:
        """An archive job that retrieved all of its archive (its output is the archive)."""
        return self.kind == "archive" and self.range_start == 0 and self.size == self.archive_size

    @property
    def shareable(self) -> bool:
        """The cache object is named by the archive's tree hash, which can prove it whole."""
        return self.kind == "archive" and self.archive_tree_hash is not None

    @property
    def archive_leaves(self) -> int:
        return -(-(self.archive_size or 0) // MIB)

    @property
    def checksums_due(self) -> bool:
        """Whether the service must send ``x-amz-sha256-tree-hash`` with every tree-hash
        aligned range of the output: an archive job whose retrieval range is itself
        tree-hash aligned (the whole archive is), as the Get Job Output spec says."""
        if self.kind != "archive" or not self.size or not self.archive_size:
            return False
        last = self.range_start + self.size - 1
        return last < self.archive_size and is_tree_hash_aligned(
            self.range_start, last, self.archive_size
        )


def job_token(vault_arn: str, job_id: str) -> str:
    """:attr:`Job.ident` of the job ``job_id`` of vault ``vault_arn`` (the owner of the
    leaves it fetched, in the disk cache's index)."""
    return _token("job", vault_arn, job_id)


def _token(*parts: str) -> str:
    """A short hash of strings from the service: no separator or control character in it."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


def contradictions(job: Job) -> list[tuple[str, str]]:
    """(field, why) for each thing a job's record says against itself."""
    hashes = (job.tree_hash, job.archive_tree_hash)
    if job.whole_archive and None not in hashes and hashes[0] != hashes[1]:
        return [
            (
                "SHA256TreeHash",
                f"SHA256TreeHash {job.tree_hash} is not ArchiveSHA256TreeHash "
                f"{job.archive_tree_hash}, though the job retrieved the whole archive",
            )
        ]
    return []


def disagreements(job: Job, size: int, tree_hash: str | None) -> list[tuple[str, str]]:
    """(field, why) for each thing a job's record says against the inventory's entry of
    its archive (``size`` and ``tree_hash``): the service says these twice."""
    found = []
    if job.archive_size != size:
        found.append(
            (
                "ArchiveSizeInBytes",
                f"ArchiveSizeInBytes is {job.archive_size}, the inventory says {size}",
            )
        )
    theirs = tree_hash.lower() if tree_hash else None
    if job.archive_tree_hash and theirs and job.archive_tree_hash != theirs:
        found.append(
            (
                "ArchiveSHA256TreeHash",
                f"ArchiveSHA256TreeHash is {job.archive_tree_hash}, the inventory says {theirs}",
            )
        )
    return found


def shown(value: Any) -> str:
    """A value from the service, quoted and cut short for a one-line message."""
    text = repr(value)
    return text if len(text) <= 300 else f"{text[:300]}... ({len(text)} characters)"


def _field(record: dict[str, Any], name: str, kind: type | tuple[type, ...], job: str) -> Any:
    value = record.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise BadResponse(f"job {job}: field {name} is {shown(value)}")
    return value


def _time(record: dict[str, Any], name: str, job: str) -> float:
    text = _field(record, name, str, job)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadResponse(f"job {job}: field {name} is not a date: {shown(text)}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _size(record: dict[str, Any], name: str, job: str) -> int:
    value = _field(record, name, int, job)
    if not 0 <= value <= MAX_SIZE:
        raise BadResponse(f"job {job}: field {name} is out of range: {value}")
    return int(value)


def _hash(record: dict[str, Any], name: str, job: str) -> str | None:
    value = record.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not _HEX64.match(value):
        raise BadResponse(f"job {job}: field {name} is not a tree hash: {shown(value)}")
    return value.lower()


def job_from_record(record: Any) -> Job:
    """Validate a DescribeJob/ListJobs record of a completed, succeeded job."""
    if not isinstance(record, dict):
        raise BadResponse(f"a job record is not an object: {type(record).__name__}")
    job = record.get("JobId")
    if not isinstance(job, str) or not SERVICE_ID.fullmatch(job):
        raise BadResponse(f"a job record has an unusable JobId: {shown(job)}")
    action = record.get("Action")
    common = {
        "job_id": job,
        "completed": _time(record, "CompletionDate", job),
        "created": _time(record, "CreationDate", job),
        "vault_arn": _field(record, "VaultARN", str, job),
        "description": record.get("JobDescription")
        if isinstance(record.get("JobDescription"), str)
        else None,
    }
    if action == "InventoryRetrieval":
        params = record.get("InventoryRetrievalParameters") or {}
        fmt = params.get("Format") if isinstance(params, dict) else None
        return Job(
            kind="inventory",
            size=_size(record, "InventorySizeInBytes", job),
            inventory_format="CSV" if fmt == "CSV" else "JSON",
            **common,
        )
    if action != "ArchiveRetrieval":
        raise BadResponse(f"job {job}: action {shown(action)} has no readable output")
    return _archive_job(record, job, common)


def _archive_job(record: dict[str, Any], job: str, common: dict[str, Any]) -> Job:
    archive_size = _size(record, "ArchiveSizeInBytes", job)
    start, end = 0, archive_size - 1
    text = record.get("RetrievalByteRange")
    if text is not None:
        match = _RANGE.match(text) if isinstance(text, str) else None
        if not match:
            raise BadResponse(f"job {job}: RetrievalByteRange is {shown(text)}")
        start, end = int(match.group(1)), int(match.group(2))
        if start % MIB or end < start - 1 or end >= archive_size:
            raise BadResponse(f"job {job}: RetrievalByteRange {text} does not fit the archive")
    archive_id = _field(record, "ArchiveId", str, job)
    if not SERVICE_ID.fullmatch(archive_id):
        raise BadResponse(f"job {job}: unusable ArchiveId {shown(archive_id)}")
    return Job(
        kind="archive",
        size=max(end - start + 1, 0),
        archive_id=archive_id,
        archive_size=archive_size,
        archive_tree_hash=_hash(record, "ArchiveSHA256TreeHash", job),
        range_start=start,
        tree_hash=_hash(record, "SHA256TreeHash", job),
        **common,
    )


def job_to_record(job: Job) -> dict[str, Any]:
    """The fields glacierfs keeps of a job, to list it after the service forgot it."""
    return {key: getattr(job, key) for key in Job.__dataclass_fields__}


def job_from_saved(saved: dict[str, Any]) -> Job:
    """A job saved by :func:`job_to_record`; TypeError or BadResponse if it is not one."""
    job = Job(**{key: saved[key] for key in Job.__dataclass_fields__ if key in saved})
    for name in ("job_id", "archive_id"):
        value = getattr(job, name)
        if value is not None and not (isinstance(value, str) and SERVICE_ID.fullmatch(value)):
            raise BadResponse(f"a saved job has an unusable {name}: {shown(value)}")
    return job
