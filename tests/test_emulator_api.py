"""The emulator's vault API, checked through botocore against the spec (GLACIER-NOTES.md
and the Get Job Output reference), not against the emulator's own code.

Only botocore (``emulator.client()``) and the admin helpers are used; the CSV inventory
is read by a small parser written here from the spec, independent of glacierfs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.emulator import Emulator
from tests.support.glacier import ISO_DATE, MIB, VAULT, failure, output, seeded, tree, with_vault
from tests.support.mount import wait_for
from tests.support.vault import inventory, job_output, retrieve, sample, upload

# vaults and archives


def test_create_vault_and_describe_vault_count_live_archives(emulator: Emulator) -> None:
    client = emulator.client()
    created = client.create_vault(vaultName=VAULT)
    assert created["location"].endswith(f"/vaults/{VAULT}")
    first = upload(client, VAULT, sample(1000, 1), "one")
    upload(client, VAULT, sample(3 * MIB // 2, 2), "two")
    described = client.describe_vault(vaultName=VAULT)
    assert described["VaultName"] == VAULT
    assert described["VaultARN"] == f"arn:aws:glacier:us-east-1:123456789012:vaults/{VAULT}"
    assert ISO_DATE.match(described["CreationDate"])
    assert (described["NumberOfArchives"], described["SizeInBytes"]) == (2, 1000 + 3 * MIB // 2)
    client.delete_archive(vaultName=VAULT, archiveId=first)
    described = client.describe_vault(vaultName=VAULT)
    assert (described["NumberOfArchives"], described["SizeInBytes"]) == (1, 3 * MIB // 2)
    assert failure(lambda: client.describe_vault(vaultName="nothing"))[:2] == (
        404,
        "ResourceNotFoundException",
    )


def test_list_vaults_follows_the_marker_across_pages(emulator_factory: Any) -> None:
    emulator = emulator_factory("--max-page-size", "3")
    client = emulator.client()
    names = [f"vault-{i}" for i in range(7)]
    for name in names:
        client.create_vault(vaultName=name)

    def pages(**kwargs: Any) -> list[list[str]]:
        found, marker = [], None
        while True:
            page = client.list_vaults(**kwargs, **({"marker": marker} if marker else {}))
            found.append([v["VaultName"] for v in page["VaultList"]])
            marker = page.get("Marker")
            if not marker:
                return found

    assert pages() == [names[0:3], names[3:6], names[6:]]
    assert pages(limit="2") == [names[0:2], names[2:4], names[4:6], names[6:]]


def test_upload_archive_answers_the_tree_hash_and_keeps_the_bytes(emulator: Emulator) -> None:
    client = with_vault(emulator)
    data = sample(2 * MIB + 77, 5)
    response = client.upload_archive(vaultName=VAULT, body=data, archiveDescription="mine")
    assert response["checksum"] == tree(data)
    assert response["location"].endswith(f"/archives/{response['archiveId']}")
    assert emulator.content(VAULT, response["archiveId"]) == data


def test_upload_archive_with_a_wrong_tree_hash_is_refused(emulator: Emulator) -> None:
    client = with_vault(emulator)

    def wrong_checksum(params: dict[str, Any], **kwargs: Any) -> None:
        params["headers"]["x-amz-sha256-tree-hash"] = "0" * 64

    client.meta.events.register_last("before-call.glacier.UploadArchive", wrong_checksum)
    status, code, _ = failure(lambda: upload(client, VAULT, sample(1000, 1)))
    assert (status, code) == (400, "InvalidParameterValueException")
    assert client.describe_vault(vaultName=VAULT)["NumberOfArchives"] == 0


def test_delete_archive_removes_it_and_a_second_delete_is_not_found(emulator: Emulator) -> None:
    client = with_vault(emulator)
    archive_id = upload(client, VAULT, sample(100, 1))
    client.delete_archive(vaultName=VAULT, archiveId=archive_id)
    assert failure(lambda: client.delete_archive(vaultName=VAULT, archiveId=archive_id))[:2] == (
        404,
        "ResourceNotFoundException",
    )
    assert failure(lambda: retrieve(client, VAULT, archive_id))[0] == 404
    listed = json.loads(job_output(client, VAULT, inventory(client, VAULT)))
    assert listed["ArchiveList"] == []


# jobs


def test_describe_job_of_a_whole_archive_retrieval_has_every_field(emulator: Emulator) -> None:
    client = with_vault(emulator)
    size = 3 * MIB + 5
    archive_id, checksum = emulator.seeded_archive(VAULT, size, 4, "whole")
    job_id = client.initiate_job(
        vaultName=VAULT,
        jobParameters={"Type": "archive-retrieval", "ArchiveId": archive_id, "Description": "x"},
    )["jobId"]
    job = client.describe_job(vaultName=VAULT, jobId=job_id)
    assert job["JobId"] == job_id
    assert job["Action"] == "ArchiveRetrieval"
    assert job["JobDescription"] == "x"
    assert job["ArchiveId"] == archive_id
    assert job["ArchiveSizeInBytes"] == size
    assert job["ArchiveSHA256TreeHash"] == job["SHA256TreeHash"] == checksum
    assert job["RetrievalByteRange"] == f"0-{size - 1}"
    assert job["VaultARN"].endswith(f":vaults/{VAULT}")
    assert (job["Completed"], job["StatusCode"]) == (True, "Succeeded")
    assert ISO_DATE.match(job["CreationDate"]) and ISO_DATE.match(job["CompletionDate"])
    assert job.get("InventorySizeInBytes") is None
    assert job["Tier"] == "Standard"
    listed = client.list_jobs(vaultName=VAULT)["JobList"]
    assert [{k: v for k, v in job.items() if k != "ResponseMetadata"}] == listed


def test_range_job_reports_the_whole_archive_size_and_the_range_tree_hash(
    shared: Shared,
) -> None:
    client, (archive_id, _, content) = shared.client, shared.archives[EIGHT]
    job_id = retrieve(client, VAULT, archive_id, f"{2 * MIB}-{4 * MIB - 1}")
    job = client.describe_job(vaultName=VAULT, jobId=job_id)
    assert job["ArchiveSizeInBytes"] == 8 * MIB
    assert job["RetrievalByteRange"] == f"{2 * MIB}-{4 * MIB - 1}"
    assert job["ArchiveSHA256TreeHash"] == tree(content)
    assert job["SHA256TreeHash"] == tree(content[2 * MIB : 4 * MIB])
    response, body = output(client, job_id)
    assert (response["status"], body) == (200, content[2 * MIB : 4 * MIB])
    assert response["checksum"] == job["SHA256TreeHash"]
    response, body = output(client, job_id, f"bytes={MIB}-{2 * MIB - 1}")
    assert response["contentRange"] == f"bytes {MIB}-{2 * MIB - 1}/{2 * MIB}"
    assert body == content[3 * MIB : 4 * MIB]
    assert response["checksum"] == tree(body)


def test_range_job_not_tree_hash_aligned_has_no_tree_hash_anywhere(shared: Shared) -> None:
    client, (archive_id, _, content) = shared.client, shared.archives[EIGHT]
    job_id = retrieve(client, VAULT, archive_id, f"{MIB}-{3 * MIB - 1}")
    job = client.describe_job(vaultName=VAULT, jobId=job_id)
    assert job.get("SHA256TreeHash") is None
    assert job["ArchiveSHA256TreeHash"] == tree(content)
    assert job["ArchiveSizeInBytes"] == 8 * MIB
    for byte_range in (None, f"bytes=0-{MIB - 1}", f"bytes={MIB}-"):
        response, body = output(client, job_id, byte_range)
        assert "checksum" not in response, byte_range
        start = 0 if byte_range is None else int(byte_range[6:].split("-")[0])
        assert body == content[MIB + start : 3 * MIB][: len(body)]


def test_range_job_running_to_the_archive_end_is_accepted_and_hashed(shared: Shared) -> None:
    client, (archive_id, _, content) = shared.client, shared.archives[ODD]
    job_id = retrieve(client, VAULT, archive_id, f"{4 * MIB}-{ODD - 1}")
    job = client.describe_job(vaultName=VAULT, jobId=job_id)
    assert job["SHA256TreeHash"] == tree(content[4 * MIB :])
    response, body = output(client, job_id)
    assert body == content[4 * MIB :] and response["checksum"] == tree(body)


def test_job_in_progress_refuses_output_until_completed(emulator_factory: Any) -> None:
    emulator = emulator_factory("--job-delay", "1000")
    client, archive_id = seeded(emulator, MIB + 3)
    job_id = retrieve(client, VAULT, archive_id)
    job = client.describe_job(vaultName=VAULT, jobId=job_id)
    assert (job["Completed"], job["StatusCode"]) == (False, "InProgress")
    assert job.get("CompletionDate") is None
    status, code, message = failure(lambda: output(client, job_id))
    assert status == 400 and code and message
    emulator.complete(job_id)
    job = client.describe_job(vaultName=VAULT, jobId=job_id)
    assert (job["Completed"], job["StatusCode"]) == (True, "Succeeded")
    assert ISO_DATE.match(job["CompletionDate"])
    assert output(client, job_id)[1] == emulator.content(VAULT, archive_id)


def test_failed_job_is_completed_with_status_failed_and_no_output(emulator_factory: Any) -> None:
    emulator = emulator_factory("--job-delay", "1000")
    client, archive_id = seeded(emulator, 100)
    job_id = retrieve(client, VAULT, archive_id)
    emulator.fail(job_id, "tape ate it")
    job = client.describe_job(vaultName=VAULT, jobId=job_id)
    assert (job["Completed"], job["StatusCode"], job["StatusMessage"]) == (
        True,
        "Failed",
        "tape ate it",
    )
    assert failure(lambda: output(client, job_id))[0] == 400


def test_list_jobs_filters_by_completed_and_statuscode(emulator_factory: Any) -> None:
    emulator = emulator_factory("--job-delay", "1000")
    client, archive_id = seeded(emulator, 100)
    running, done, failed = (retrieve(client, VAULT, archive_id) for _ in range(3))
    emulator.complete(done)
    emulator.fail(failed)

    def listed(**filters: str) -> set[str]:
        return {j["JobId"] for j in client.list_jobs(vaultName=VAULT, **filters)["JobList"]}

    assert listed() == {running, done, failed}
    assert listed(completed="true") == {done, failed}
    assert listed(completed="false") == {running}
    assert listed(statuscode="Succeeded") == {done}
    assert listed(statuscode="Failed") == {failed}
    assert listed(statuscode="InProgress") == {running}
    assert listed(completed="true", statuscode="Succeeded") == {done}


@pytest.mark.parametrize(
    ("flags", "limit", "sizes"),
    [(("--max-page-size", "3"), None, [3, 3, 1]), ((), "2", [2, 2, 2, 1])],
)
def test_list_jobs_follows_the_marker_across_pages(
    emulator_factory: Any, flags: tuple[str, ...], limit: str | None, sizes: list[int]
) -> None:
    emulator = emulator_factory(*flags)
    client, archive_id = seeded(emulator, 100)
    jobs = [retrieve(client, VAULT, archive_id) for _ in range(7)]
    pages, marker = [], None
    while True:
        kwargs = {"limit": limit} if limit else {}
        page = client.list_jobs(vaultName=VAULT, **kwargs, **({"marker": marker} if marker else {}))
        pages.append([j["JobId"] for j in page["JobList"]])
        marker = page.get("Marker")
        if not marker:
            break
    assert [len(p) for p in pages] == sizes
    assert sorted(job for page in pages for job in page) == sorted(jobs)


def test_expired_job_is_not_found_and_not_listed(emulator: Emulator) -> None:
    client, archive_id = seeded(emulator, 100)
    expired, kept = retrieve(client, VAULT, archive_id), retrieve(client, VAULT, archive_id)
    emulator.expire(expired)
    for call in (
        lambda: client.describe_job(vaultName=VAULT, jobId=expired),
        lambda: output(client, expired),
    ):
        assert failure(call)[:2] == (404, "ResourceNotFoundException")
    assert [j["JobId"] for j in client.list_jobs(vaultName=VAULT)["JobList"]] == [kept]
    assert output(client, kept)[1] == emulator.content(VAULT, archive_id)


def test_job_expiry_makes_output_not_found_once_it_passes(emulator_factory: Any) -> None:
    emulator = emulator_factory("--job-expiry", "0.5")
    client, archive_id = seeded(emulator, 100)
    job_id = retrieve(client, VAULT, archive_id)

    def gone() -> bool:
        try:
            client.describe_job(vaultName=VAULT, jobId=job_id)
        except ClientError as error:
            assert error.response["Error"]["Code"] == "ResourceNotFoundException"
            return True
        return False

    wait_for(gone, "the job output to expire", deadline=20)
    assert failure(lambda: output(client, job_id))[:2] == (404, "ResourceNotFoundException")
    assert client.list_jobs(vaultName=VAULT)["JobList"] == []


# Get Job Output, read-only, from one emulator shared by the module

EIGHT, ODD, SEVEN = 8 * MIB, 5 * MIB + 123, 7 * MIB - 5


class Shared:
    """Seeded archives of 8, 6 and 7 leaves (the last two ragged), each with a whole job."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator, self.client = emulator, with_vault(emulator)
        self.archives: dict[int, tuple[str, str, bytes]] = {}
        for size in (EIGHT, ODD, SEVEN):
            archive_id, _ = emulator.seeded_archive(VAULT, size, 7, "ranged")
            job_id = retrieve(self.client, VAULT, archive_id)
            self.archives[size] = archive_id, job_id, emulator.content(VAULT, archive_id)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shared]:
    emulator = Emulator(tmp_path_factory.mktemp("shared-emulator")).start()
    try:
        yield Shared(emulator)
    finally:
        emulator.stop()


@pytest.mark.parametrize(
    "byte_range",
    [
        f"0-{MIB - 2}",  # end + 1 neither a MiB multiple nor the archive's size
        f"512-{MIB - 1}",  # start not a MiB multiple
        f"{MIB}-{ODD - 2}",  # ends one byte before the last
        f"0-{ODD}",  # one byte past the end
        f"{6 * MIB}-{7 * MIB - 1}",  # wholly past the end
        "nonsense",
    ],
)
def test_initiate_job_refuses_a_bad_retrieval_byte_range(shared: Shared, byte_range: str) -> None:
    archive_id = shared.archives[ODD][0]
    status, code, _ = failure(lambda: retrieve(shared.client, VAULT, archive_id, byte_range))
    assert (status, code) == (400, "InvalidParameterValueException")


@pytest.mark.parametrize(
    ("size", "byte_range", "aligned"),
    [
        (EIGHT, (0, MIB - 1), True),
        (EIGHT, (MIB, 2 * MIB - 1), True),
        (EIGHT, (2 * MIB, 4 * MIB - 1), True),
        (EIGHT, (0, 4 * MIB - 1), True),
        (EIGHT, (4 * MIB, 8 * MIB - 1), True),
        (EIGHT, (0, EIGHT - 1), True),
        (ODD, (5 * MIB, ODD - 1), True),  # the last, partial leaf
        (ODD, (4 * MIB, ODD - 1), True),  # runs to the end; 1 MiB + 123 rounds up to 2 MiB
        (ODD, (4 * MIB, None), True),  # open-ended "bytes=a-"
        (ODD, (0, ODD - 1), True),
        (EIGHT, (MIB, 3 * MIB - 1), False),
        (EIGHT, (0, 3 * MIB - 1), False),
        (EIGHT, (MIB // 2, MIB // 2 + MIB - 1), False),
        (EIGHT, (0, 1023), False),
        (EIGHT, (6 * MIB, 8 * MIB - 2), False),
        (ODD, (3 * MIB, ODD - 1), False),  # 2 MiB + 123 rounds up to 4 MiB
        (ODD, (2 * MIB, ODD - 1), False),
    ],
)
def test_get_job_output_range_has_tree_hash_exactly_when_tree_hash_aligned(
    shared: Shared, size: int, byte_range: tuple[int, int | None], aligned: bool
) -> None:
    _, job_id, content = shared.archives[size]
    start, end = byte_range
    response, body = output(shared.client, job_id, f"bytes={start}-{'' if end is None else end}")
    last = size - 1 if end is None else end
    assert response["status"] == 206
    assert response["contentRange"] == f"bytes {start}-{last}/{size}"
    assert body == content[start : last + 1]
    assert int(response["ResponseMetadata"]["HTTPHeaders"]["content-length"]) == len(body)
    assert ("checksum" in response) == aligned
    if aligned:
        assert response["checksum"] == tree(body)
    assert response["contentType"] == "application/octet-stream"
    assert response["archiveDescription"] == "ranged"


def tree_nodes(leaves: int) -> set[tuple[int, int]]:
    """(first, last) leaf of every node of a tree over ``leaves`` leaves, from the spec's
    definition: pair adjacent nodes level by level, carrying an odd one up unchanged."""
    level = [(i, i) for i in range(leaves)]
    nodes = set(level)
    while len(level) > 1:
        paired = [(level[i][0], level[i + 1][1]) for i in range(0, len(level) - 1, 2)]
        level = paired + level[len(paired) * 2 :]
        nodes.update(level)
    return nodes


@pytest.mark.parametrize("size", [ODD, SEVEN])
def test_get_job_output_has_tree_hash_for_every_node_of_the_tree_and_no_other_range(
    shared: Shared, size: int
) -> None:
    _, job_id, content = shared.archives[size]
    leaves = -(-size // MIB)
    nodes = tree_nodes(leaves)
    for first in range(leaves):
        for last in range(first, leaves):
            start, end = first * MIB, min((last + 1) * MIB, size) - 1
            response, body = output(shared.client, job_id, f"bytes={start}-{end}")
            assert body == content[start : end + 1]
            assert ("checksum" in response) == ((first, last) in nodes), (first, last)
            if (first, last) in nodes:
                assert response["checksum"] == tree(body)


def test_get_job_output_whole_is_200_with_the_archive_tree_hash(emulator: Emulator) -> None:
    client, archive_id = seeded(emulator, 3 * MIB + 9, 2, "all of it")
    response, body = output(client, retrieve(client, VAULT, archive_id))
    assert response["status"] == 200
    assert "contentRange" not in response
    assert body == emulator.content(VAULT, archive_id)
    assert response["checksum"] == tree(body)
    assert response["contentType"] == "application/octet-stream"
    assert response["archiveDescription"] == "all of it"


@pytest.mark.parametrize("byte_range", ["bytes=0-{size}", "bytes={size}-", "bytes=5-4"])
def test_get_job_output_range_past_the_end_is_refused(shared: Shared, byte_range: str) -> None:
    job_id = shared.archives[ODD][1]
    status, code, message = failure(
        lambda: output(shared.client, job_id, byte_range.format(size=ODD))
    )
    assert (status, code) == (400, "InvalidParameterValueException") and message


def test_get_job_output_of_an_unknown_job_or_vault_is_not_found(emulator: Emulator) -> None:
    client = with_vault(emulator)
    assert failure(lambda: output(client, "no-such-job"))[:2] == (404, "ResourceNotFoundException")
    assert failure(lambda: client.describe_job(vaultName=VAULT, jobId="no-such-job"))[0] == 404
    assert failure(lambda: client.list_jobs(vaultName="no-such-vault"))[0] == 404
