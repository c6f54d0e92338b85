"""Seeding a vault through botocore, as a user's upload tool would."""

from __future__ import annotations

import random
from typing import Any


def sample(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def upload(client: Any, vault: str, data: bytes, description: str = "") -> str:
    response = client.upload_archive(vaultName=vault, body=data, archiveDescription=description)
    return str(response["archiveId"])


def retrieve(client: Any, vault: str, archive_id: str, byte_range: str | None = None) -> str:
    params: dict[str, Any] = {"Type": "archive-retrieval", "ArchiveId": archive_id}
    if byte_range is not None:
        params["RetrievalByteRange"] = byte_range
    response = client.initiate_job(vaultName=vault, jobParameters=params)
    return str(response["jobId"])


def inventory(client: Any, vault: str, fmt: str = "JSON") -> str:
    response = client.initiate_job(
        vaultName=vault, jobParameters={"Type": "inventory-retrieval", "Format": fmt}
    )
    return str(response["jobId"])


def job_output(client: Any, vault: str, job_id: str) -> bytes:
    return bytes(client.get_job_output(vaultName=vault, jobId=job_id)["body"].read())
