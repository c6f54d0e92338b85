"""Strings from the service checked at the edge: ids outside its alphabet hide one job.

JobIds and ArchiveIds become file names under ``jobs/`` and text in the log. A wrong
or hostile answer (``..``, a slash, a newline, an escape sequence) must reach neither:
the record is refused, and one log line per id names it, escaped.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import trio

from glacierfs.cache.aio import AsyncDisk
from glacierfs.cache.disk import DiskCache
from glacierfs.catalog import Catalog
from glacierfs.errors import BadResponse
from glacierfs.jobs import job_from_record, job_from_saved, job_to_record
from glacierfs.retry import RetryPolicy
from tests.support.emulator import Emulator
from tests.support.mount import Mount, needs_fuse, wait_for
from tests.support.vault import retrieve

REAL_JOB_ID = (
    "HkF9p6o7yjhFx-K3CGl6fuSm6VzW9T7esGQfco8nUXVYwS0jlb5gq1JZ55yHgt5vP54ZShjoQzQVVh7vEXAMPLEjobID"
)
REAL_ARCHIVE_ID = (
    "NkbByEejwEggmBz2fTHgJrg0XBoDfjP4q6iu87-TjhqG6eGoOY9Z8i1_AUyUsuhPAdTqLHy8pTl5nfCFJmDl2yEZONi5L26"
    "Omw12vcs01MNGntHEQL8MBfGlqrEXAMPLEArchiveId"
)
BAD_IDS = [
    "",
    ".",
    "..",
    "a/b",
    "a\nb",
    "job\n2026-11-25 12:00:00,000 ERROR glacierfs: forged",
    "\x1b[31mred",
    "sp ace",
    "unicodé",
    "x" * 257,
    None,
    5,
    ["list"],
]


def record(**fields: Any) -> dict[str, Any]:
    base = {
        "JobId": REAL_JOB_ID,
        "Action": "ArchiveRetrieval",
        "ArchiveId": REAL_ARCHIVE_ID,
        "ArchiveSizeInBytes": 5 << 20,
        "ArchiveSHA256TreeHash": "a" * 64,
        "SHA256TreeHash": "a" * 64,
        "VaultARN": "arn:aws:glacier:us-east-1:123456789012:vaults/v",
        "CreationDate": "2026-01-01T00:00:00.000Z",
        "CompletionDate": "2026-01-01T01:00:00.000Z",
        "StatusCode": "Succeeded",
    }
    return {**base, **fields}


def test_real_ids_are_accepted() -> None:
    assert len(REAL_JOB_ID) == 92 and len(REAL_ARCHIVE_ID) == 138
    job = job_from_record(record())
    assert (job.job_id, job.archive_id) == (REAL_JOB_ID, REAL_ARCHIVE_ID)
    assert job_from_saved(job_to_record(job)) == job


@pytest.mark.parametrize("bad", BAD_IDS)
def test_a_job_id_outside_the_alphabet_is_a_bad_response(bad: Any) -> None:
    with pytest.raises(BadResponse, match="unusable JobId") as raised:
        job_from_record(record(JobId=bad))
    assert "\n" not in str(raised.value) and "\x1b" not in str(raised.value)
    assert len(str(raised.value)) < 400


@pytest.mark.parametrize("bad", [b for b in BAD_IDS if isinstance(b, str)])
def test_an_archive_id_outside_the_alphabet_is_a_bad_response(bad: str) -> None:
    with pytest.raises(BadResponse, match="unusable ArchiveId"):
        job_from_record(record(ArchiveId=bad))


@pytest.mark.parametrize("field", ["job_id", "archive_id"])
def test_a_saved_job_with_a_bad_id_is_refused(field: str) -> None:
    saved = job_to_record(job_from_record(record()))
    with pytest.raises(BadResponse):
        job_from_saved({**saved, field: ".."})


def test_the_catalog_hides_bad_records_and_logs_each_id_once(
    tmp_path: Path, expect_logs: Any
) -> None:
    expect_logs(r"^job not shown: a job record has an unusable JobId: '\.\.'$", count=1)
    expect_logs(r"^job not shown: a job record has an unusable JobId: 'a\\nb'$", count=1)
    expect_logs(rf"^job not shown: job {REAL_JOB_ID[:-1]}X: unusable ArchiveId '\.'$", count=1)
    records = [
        record(),
        record(JobId=".."),
        record(JobId="a\nb"),
        record(JobId=REAL_JOB_ID[:-1] + "X", ArchiveId="."),
    ]
    with DiskCache(tmp_path / "cache", 1 << 30) as disk:
        catalog = Catalog(lambda: records, AsyncDisk(disk), "arn:vault", RetryPolicy())

        async def refresh_three_times() -> None:
            for _ in range(3):
                await catalog.refresh()

        trio.run(refresh_three_times)
        assert list(catalog.jobs) == [REAL_JOB_ID]
        assert list(disk.list_meta("jobs:arn:vault")) == [REAL_JOB_ID]


RECORD_START = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ")


@needs_fuse
def test_forged_ids_from_the_service_never_reach_a_file_name_or_a_raw_log_line(
    emulator: Emulator, mount_factory: Any
) -> None:
    """The emulator lies on request: its job records take any field we set."""
    client = emulator.client()
    client.create_vault(vaultName="liar")
    archive, _ = emulator.seeded_archive("liar", 1 << 20, 1, "")
    good, *liars = (retrieve(client, "liar", archive) for _ in range(5))
    forged = ["..", ".", "x\n2026-11-25 12:00:00,000 ERROR glacierfs: forged", "\x1b[2Jjob"]
    for job, job_id in zip(liars, forged, strict=True):
        emulator.set_job(job, JobId=job_id)
    other = retrieve(client, "liar", archive)
    emulator.set_job(other, ArchiveId="../../etc/passwd")
    listings = emulator.counters()["operations"].get("ListJobs", {}).get("requests", 0)
    mount: Mount = mount_factory(emulator.url, "liar", {"refresh": "0.2"})
    assert os.listdir(mount.path / "jobs") == [good]
    wait_for(  # a few refreshes: each met the same lies
        lambda: emulator.counters()["operations"]["ListJobs"]["requests"] >= listings + 4,
        "the job list to be refreshed",
    )
    assert os.listdir(mount.path / "jobs") == [good]
    log = mount.log()
    assert "\x1b" not in log
    assert all(RECORD_START.match(line) for line in log.splitlines()), log
    refused = [line for line in log.splitlines() if "job not shown" in line]
    assert len(refused) == 5, log  # one line per id, not one per refresh
    assert any(r"'x\n2026-11-25 12:00:00,000 ERROR glacierfs: forged'" in line for line in refused)
    assert any(r"'\x1b[2Jjob'" in line for line in refused)
    assert any("unusable ArchiveId '../../etc/passwd'" in line for line in refused)
