"""Fuzzing the parsers of what the service sends: only the documented errors escape."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from glacierfs.answers import parse_content_range
from glacierfs.errors import BadResponse
from glacierfs.jobs import job_from_record

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)

GOOD_RECORD: dict[str, Any] = {
    "JobId": "job-1",
    "Action": "ArchiveRetrieval",
    "ArchiveId": "archive-1",
    "ArchiveSizeInBytes": 5 << 20,
    "ArchiveSHA256TreeHash": "a" * 64,
    "SHA256TreeHash": "a" * 64,
    "RetrievalByteRange": f"0-{(5 << 20) - 1}",
    "VaultARN": "arn:aws:glacier:us-east-1:123456789012:vaults/v",
    "CreationDate": "2026-01-01T00:00:00.000Z",
    "CompletionDate": "2026-01-01T01:00:00.000Z",
    "Completed": True,
    "StatusCode": "Succeeded",
}


@given(st.text(max_size=60) | st.from_regex(r"bytes \d{1,20}-\d{1,20}/(\d{1,20}|\*)"))
def test_content_range_parses_or_is_a_bad_response(header: str) -> None:
    try:
        start, end, total = parse_content_range(header)
    except BadResponse:
        return
    assert 0 <= start <= end and (total is None or total >= 0)


@settings(max_examples=300)
@given(st.sampled_from(sorted(GOOD_RECORD)), JSON_VALUES)
def test_a_job_record_with_any_field_replaced_is_a_job_or_a_bad_response(
    field: str, value: Any
) -> None:
    record = {**GOOD_RECORD, field: value}
    try:
        job = job_from_record(record)
    except BadResponse:
        return
    assert 0 <= job.size <= (job.archive_size or job.size)


@given(JSON_VALUES)
def test_any_json_value_as_a_record_is_a_job_or_a_bad_response(value: Any) -> None:
    try:
        job_from_record(value)
    except BadResponse:
        return
