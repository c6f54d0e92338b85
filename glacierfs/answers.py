"""What the service's answers hold, read as the service sent them: ranges, job records, ids.

Job records (ListJobs pages, DescribeJob answers) are taken from the answer's JSON
document, not from botocore's parse of it. Botocore converts each field to its model's
type, for the whole answer at once: one record's ``ArchiveSizeInBytes: "abc"`` fails
the page (every job hidden, at mount and at every refresh after), ``1.5`` becomes ``1``
and a ``"x"`` for a boolean becomes ``False``, so a lie would be rewritten before
anything checked it. Here a page is a list of records, each left as sent, for
:func:`glacierfs.jobs.job_from_record` (the mount) and
:func:`glacierfs.retrieve.coverage.live_job` (``retrieve``) to check one by one: one bad
record hides one job. Pure code: :mod:`glacierfs.client` hands it the bytes.
"""

from __future__ import annotations

import json
import re
from typing import Any

from glacierfs.errors import BadResponse, SizeDisagreement, TransientServiceError
from glacierfs.jobs import SERVICE_ID, shown

_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


def document(body: Any) -> Any:
    """The JSON document of an answer's body; ValueError when it is none."""
    if not isinstance(body, bytes | bytearray | str):
        raise ValueError("no body")
    return json.loads(body)


def job_page(what: str, answer: Any) -> tuple[list[Any], str | None]:
    """A ListJobs answer: its records, each as sent (not checked here), and its Marker."""
    if not isinstance(answer, dict):
        raise BadResponse(f"{what}: the answer is not an object")
    records = answer.get("JobList")
    if not isinstance(records, list):
        raise BadResponse(f"{what}: the response has no JobList")
    marker = answer.get("Marker")
    if marker is not None and not isinstance(marker, str):
        raise BadResponse(f"{what}: the Marker is {shown(marker)}")
    return records, marker or None


def job_record(what: str, answer: Any, job_id: str) -> dict[str, Any]:
    """A DescribeJob answer of job ``job_id``: one record, as sent (its other fields are
    checked by its user); BadResponse when it is not an object or describes another job."""
    if not isinstance(answer, dict):
        raise BadResponse(f"{what}: the answer is not an object")
    if answer.get("JobId") != job_id:
        raise BadResponse(f"{what}: the answer describes job {shown(answer.get('JobId'))}")
    return answer


def new_job_id(what: str, value: Any) -> str:
    """The JobId an InitiateJob answered: in the service's alphabet, or a BadResponse
    (it becomes a file name, a state row and a line on the terminal)."""
    if not isinstance(value, str) or not value:
        raise BadResponse(f"{what}: the service answered no job id")
    if not SERVICE_ID.fullmatch(value):
        raise BadResponse(f"{what}: the service answered an unusable job id {shown(value)}")
    return value


def parse_content_range(header: str) -> tuple[int, int, int | None]:
    """``bytes a-b/total`` -> ``(a, b, total)``; BadResponse for anything else."""
    match = _CONTENT_RANGE.match(header.strip())
    if not match:
        raise BadResponse(f"malformed Content-Range: {header!r}")
    start, end, total = match.groups()
    if int(end) < int(start):
        raise BadResponse(f"Content-Range ends before it starts: {header!r}")
    return int(start), int(end), None if total == "*" else int(total)


def check_part(
    what: str,
    response: dict[str, Any],
    start: int,
    end: int,
    total: int,
    whole: bool,
    received: int,
) -> None:
    """A Get Job Output answer's status, Content-Range and length against the request."""
    status = int(response.get("status", 0) or 0)
    header = response.get("contentRange")
    if header:
        got = parse_content_range(str(header))
        if got[:2] != (start, end):
            raise TransientServiceError(f"{what}: the service answered Content-Range {header}")
        if got[2] not in (None, total):
            message = f"{what}: Content-Range {header} says the output is not {total} bytes"
            raise SizeDisagreement(message, int(got[2] or 0))
    elif not (whole and status == 200):
        raise BadResponse(f"{what}: status {status} without a Content-Range")
    expected = end - start + 1
    if received != expected and whole and not header:
        # The body was read to its Content-Length (botocore checks): not cut short.
        message = f"{what}: the whole output is {received} bytes, not {expected}"
        raise SizeDisagreement(message, received)
    if received != expected:
        raise TransientServiceError(f"{what}: received {received} of {expected} bytes")
