"""The service's answers read as sent: pages of records, one record, a new job id."""

from __future__ import annotations

from typing import Any

import pytest

from glacierfs.answers import document, job_page, job_record, new_job_id
from glacierfs.errors import BadResponse

REAL = (
    "HkF9p6o7yjhFx-K3CGl6fuSm6VzW9T7esGQfco8nUXVYwS0jlb5gq1JZ55yHgt5vP54ZShjoQzQVVh7vEXAMPLEjobID"
)


def test_a_page_keeps_every_record_as_sent_and_its_marker() -> None:
    records: list[Any] = [{"JobId": "a", "ArchiveSizeInBytes": "abc"}, 5, None, {"X": 1.5}]
    assert job_page("listing", {"JobList": records, "Marker": "m"}) == (records, "m")
    assert job_page("listing", {"JobList": [], "Marker": ""}) == ([], None)
    assert job_page("listing", document(b'{"JobList": [], "Marker": null}')) == ([], None)


@pytest.mark.parametrize(
    "answer",
    [None, [], "x", {}, {"JobList": {}}, {"JobList": "abc"}, {"JobList": [], "Marker": 5}],
)
def test_a_page_that_is_no_page_is_a_bad_response(answer: Any) -> None:
    with pytest.raises(BadResponse):
        job_page("listing", answer)


def test_a_described_record_must_be_the_job_asked_for() -> None:
    record = {"JobId": REAL, "Completed": "x"}
    assert job_record("job", record, REAL) is record
    for answer in (None, [record], {"JobId": "other"}, {}):
        with pytest.raises(BadResponse):
            job_record("job", answer, REAL)


@pytest.mark.parametrize(
    "bad", [None, "", 5, "a\nb", "\x1b]0;t\x07", "..", "a/b", "x" * 257, "\u202eabc"]
)
def test_a_new_job_id_outside_the_alphabet_is_a_bad_response(bad: Any) -> None:
    with pytest.raises(BadResponse) as raised:
        new_job_id("retrieval", bad)
    assert "\n" not in str(raised.value) and "\x1b" not in str(raised.value)


def test_a_real_new_job_id_is_taken() -> None:
    assert new_job_id("retrieval", REAL) == REAL


def test_a_body_that_is_not_json_is_a_value_error() -> None:
    for body in (b"", b"{", None, b"\xff"):
        with pytest.raises(ValueError):
            document(body)
