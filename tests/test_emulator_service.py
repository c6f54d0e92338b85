"""The emulator's inventories, seeded archives, and what it asks of requests (accounts,
keys, headers, error bodies, restarts), checked through botocore against the spec.

The CSV inventory is read by a small parser written here from the spec, independent
of glacierfs.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.support.emulator import ACCESS_KEY, SECRET_KEY, Emulator
from tests.support.glacier import ISO_DATE, MIB, VAULT, failure, output, seeded, tree, with_vault
from tests.support.vault import inventory, retrieve, sample, upload

# inventories


def parse_glacier_csv_line(line: str) -> list[str]:
    """One CSV line as the spec describes it: quoted fields, \\" is a quote inside one,
    any other backslash is itself."""
    fields, i = [], 0
    while True:
        if line.startswith('"', i):
            i, text = i + 1, []
            while line[i] != '"':
                if line.startswith('\\"', i):
                    text.append('"')
                    i += 2
                else:
                    text.append(line[i])
                    i += 1
            fields.append("".join(text))
            i += 1
        else:
            comma = line.find(",", i)
            comma = len(line) if comma < 0 else comma
            fields.append(line[i:comma])
            i = comma
        if i == len(line):
            return fields
        assert line[i] == ",", line
        i += 1


DESCRIPTIONS = [
    "holiday photos",
    'my archive description,1"2',
    'my archive description,1\\"2',
    "a,b",
    "",
    "back\\slash",
]


def archives_with_descriptions(emulator: Emulator) -> tuple[Any, dict[str, tuple[str, int, str]]]:
    """Archives (id -> description, size, tree hash), uploaded and seeded."""
    client = with_vault(emulator)
    archives = {}
    for i, description in enumerate(DESCRIPTIONS):
        if i % 2:
            archive_id, checksum = emulator.seeded_archive(VAULT, i * 1000, i, description)
            archives[archive_id] = (description, i * 1000, checksum)
        else:
            data = sample(i * 1000 + 1, i)
            archives[upload(client, VAULT, data, description)] = (
                description,
                len(data),
                tree(data),
            )
    return client, archives


def test_inventory_json_lists_every_archive_with_its_fields(emulator: Emulator) -> None:
    client, archives = archives_with_descriptions(emulator)
    job_id = inventory(client, VAULT)
    job = client.describe_job(vaultName=VAULT, jobId=job_id)
    response, body = output(client, job_id)
    assert response["status"] == 200 and response["contentType"] == "application/json"
    assert "checksum" not in response and "archiveDescription" not in response
    assert job["Action"] == "InventoryRetrieval"
    assert job["InventorySizeInBytes"] == len(body)
    assert job["InventoryRetrievalParameters"]["Format"] == "JSON"
    assert job.get("SHA256TreeHash") is None
    document = json.loads(body)
    assert document["VaultARN"] == client.describe_vault(vaultName=VAULT)["VaultARN"]
    assert ISO_DATE.match(document["InventoryDate"])
    listed = {}
    for entry in document["ArchiveList"]:
        assert ISO_DATE.match(entry["CreationDate"])
        listed[entry["ArchiveId"]] = (
            entry["ArchiveDescription"],
            entry["Size"],
            entry["SHA256TreeHash"],
        )
    assert listed == archives


def test_inventory_csv_is_quoted_as_the_spec_says(emulator: Emulator) -> None:
    client, archives = archives_with_descriptions(emulator)
    job_id = inventory(client, VAULT, "CSV")
    job = client.describe_job(vaultName=VAULT, jobId=job_id)
    assert job["InventoryRetrievalParameters"]["Format"] == "CSV"
    response, body = output(client, job_id)
    assert response["contentType"] == "text/csv" and "checksum" not in response
    assert job["InventorySizeInBytes"] == len(body)
    text = body.decode("ascii")
    assert '"my archive description,1\\"2"' in text
    assert '"my archive description,1\\\\"2"' in text
    assert ",holiday photos," in text and '"holiday photos"' not in text
    lines = text.splitlines()
    assert lines[0] == "ArchiveId,ArchiveDescription,CreationDate,Size,SHA256TreeHash"
    listed = {}
    for line in lines[1:]:
        archive_id, description, created, size, checksum = parse_glacier_csv_line(line)
        assert ISO_DATE.match(created)
        listed[archive_id] = (description, int(size), checksum)
    assert listed == archives


def test_inventory_output_never_carries_a_tree_hash(emulator: Emulator) -> None:
    client, _ = seeded(emulator, 100, description="x")
    for fmt in ("JSON", "CSV"):
        job_id = inventory(client, VAULT, fmt)
        whole = output(client, job_id)[1]
        for byte_range in ("bytes=0-9", f"bytes=0-{len(whole) - 1}", "bytes=10-"):
            response, body = output(client, job_id, byte_range)
            assert response["status"] == 206 and "checksum" not in response
            start, _, end = byte_range[6:].partition("-")
            last = int(end) if end else len(whole) - 1
            assert response["contentRange"] == f"bytes {start}-{last}/{len(whole)}"
            assert body == whole[int(start) : last + 1]


# seeded archives


def test_seeded_archive_reads_back_as_its_content_and_checksum(emulator: Emulator) -> None:
    client = with_vault(emulator)
    size = 3 * MIB + 17
    first, checksum = emulator.seeded_archive(VAULT, size, 11)
    second, other = emulator.seeded_archive(VAULT, size, 12)
    body = output(client, retrieve(client, VAULT, first))[1]
    assert body == emulator.content(VAULT, first)
    assert tree(body) == checksum
    assert other != checksum
    assert emulator.content(VAULT, second) != body


def test_seeded_archive_has_no_two_equal_leaves(emulator: Emulator) -> None:
    client, archive_id = seeded(emulator, 8 * MIB, 7)
    content = output(client, retrieve(client, VAULT, archive_id))[1]
    assert content == emulator.content(VAULT, archive_id)
    leaves = {content[i : i + MIB] for i in range(0, len(content), MIB)}
    assert len(leaves) == 8


# requests: accounts, credentials, headers, error bodies


def test_account_id_dash_and_own_id_work_and_another_is_refused(emulator: Emulator) -> None:
    client = with_vault(emulator)
    for account in ("-", "123456789012"):
        assert client.describe_vault(accountId=account, vaultName=VAULT)["VaultName"] == VAULT
    status, code, _ = failure(
        lambda: client.describe_vault(accountId="210987654321", vaultName=VAULT)
    )
    assert status == 403 and code


def test_another_access_key_is_refused(emulator_factory: Any) -> None:
    emulator = emulator_factory("--access-key", "AKIDOTHER")
    status, code, _ = failure(lambda: emulator.client().list_vaults())
    assert (status, code) == (403, "UnrecognizedClientException")
    assert emulator.client(access_key="AKIDOTHER").list_vaults()["VaultList"] == []


def signed(emulator: Emulator, path: str, *, version: bool) -> urllib.request.Request:
    headers = {"x-amz-glacier-version": "2012-06-01"} if version else {}
    request = AWSRequest(method="GET", url=f"{emulator.url}{path}", headers=headers)
    SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "glacier", "us-east-1").add_auth(request)
    return urllib.request.Request(request.url, headers=dict(request.headers.items()))


def test_missing_glacier_version_header_is_refused(emulator: Emulator) -> None:
    with urllib.request.urlopen(signed(emulator, "/-/vaults", version=True), timeout=30) as answer:
        assert answer.status == 200
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(signed(emulator, "/-/vaults", version=False), timeout=30)
    assert caught.value.code == 400
    body = json.loads(caught.value.read())
    assert body["code"] == "MissingParameterValueException"


def test_error_bodies_are_json_with_code_message_and_type(emulator: Emulator) -> None:
    with_vault(emulator)
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(signed(emulator, f"/-/vaults/{VAULT}/jobs/nope", version=True))
    assert caught.value.code == 404
    assert caught.value.headers["Content-Type"] == "application/json"
    body = json.loads(caught.value.read())
    assert body["code"] == "ResourceNotFoundException" and body["message"]
    assert body["type"] == "Client"
    status, code, message = failure(
        lambda: emulator.client().describe_job(vaultName=VAULT, jobId="nope")
    )
    assert (status, code, message) == (404, body["code"], body["message"])


def test_state_survives_a_restart(emulator: Emulator) -> None:
    client = with_vault(emulator)
    data = sample(MIB + 5, 9)
    uploaded = upload(client, VAULT, data, "kept")
    seeded_id, checksum = emulator.seeded_archive(VAULT, 2 * MIB + 1, 4)
    jobs = [retrieve(client, VAULT, uploaded), retrieve(client, VAULT, seeded_id)]
    jobs.append(inventory(client, VAULT, "CSV"))
    before = {
        j: (client.describe_job(vaultName=VAULT, jobId=j), output(client, j)[1]) for j in jobs
    }
    port = emulator.port
    emulator.restart()
    assert emulator.port == port
    client = emulator.client()
    assert [v["VaultName"] for v in client.list_vaults()["VaultList"]] == [VAULT]
    for job_id, (described, body) in before.items():
        again = client.describe_job(vaultName=VAULT, jobId=job_id)
        described.pop("ResponseMetadata")
        again.pop("ResponseMetadata")
        assert again == described
        assert output(client, job_id)[1] == body
    assert before[jobs[0]][1] == data
    assert tree(before[jobs[1]][1]) == checksum
