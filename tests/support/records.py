"""Job records as ListJobs gives them, for tests and benchmarks that need no emulator."""

from __future__ import annotations

from typing import Any

from glacierfs.treehash import tree_hash


def archive_record(job_id: str, archive_id: str, data: bytes, arn: str) -> dict[str, Any]:
    """A succeeded retrieval of the whole archive ``data`` in the vault ``arn``."""
    return {
        "JobId": job_id,
        "Action": "ArchiveRetrieval",
        "ArchiveId": archive_id,
        "ArchiveSizeInBytes": len(data),
        "ArchiveSHA256TreeHash": tree_hash(data),
        "SHA256TreeHash": tree_hash(data),
        "RetrievalByteRange": f"0-{len(data) - 1}",
        "CreationDate": "2026-11-01T10:00:00.000Z",
        "CompletionDate": "2026-11-01T14:00:00.000Z",
        "Completed": True,
        "StatusCode": "Succeeded",
        "VaultARN": arn,
        "JobDescription": None,
    }
