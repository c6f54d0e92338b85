"""Helpers for tests that talk to the emulator through botocore only."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError
from botocore.utils import calculate_tree_hash

from tests.support.emulator import Emulator

MIB = 1 << 20
VAULT = "photos"
ISO_DATE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z\Z")


def tree(data: bytes) -> str:
    return str(calculate_tree_hash(io.BytesIO(data)))


def failure(call: Callable[[], Any]) -> tuple[int, str, str]:
    """The HTTP status, error code and message of a call that must fail."""
    with pytest.raises(ClientError) as caught:
        call()
    response = caught.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], *(
        response["Error"][key] for key in ("Code", "Message")
    )


def with_vault(emulator: Emulator) -> Any:
    client = emulator.client()
    client.create_vault(vaultName=VAULT)
    return client


def seeded(emulator: Emulator, size: int, seed: int = 1, description: str = "") -> tuple[Any, str]:
    """A client, and a seeded archive's id, in a fresh vault."""
    client = with_vault(emulator)
    archive_id, _ = emulator.seeded_archive(VAULT, size, seed, description)
    return client, archive_id


def output(client: Any, job_id: str, byte_range: str | None = None) -> tuple[dict[str, Any], bytes]:
    kwargs = {"range": byte_range} if byte_range is not None else {}
    response = client.get_job_output(vaultName=VAULT, jobId=job_id, **kwargs)
    return response, response["body"].read()
