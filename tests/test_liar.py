"""The lying proxy of the test suite: honest unless told, and lying exactly as told."""

from __future__ import annotations

from typing import Any

import botocore.config
import botocore.session
import pytest
from botocore.exceptions import BotoCoreError

from tests.support.emulator import ACCESS_KEY, SECRET_KEY, Emulator
from tests.support.glacier import VAULT, output, tree, with_vault
from tests.support.liar import Liar
from tests.support.vault import retrieve, sample, upload

MIB = 1 << 20


def client_of(liar: Liar) -> Any:
    return botocore.session.get_session().create_client(
        "glacier",
        region_name="us-east-1",
        endpoint_url=liar.url,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=botocore.config.Config(retries={"total_max_attempts": 1}),
    )


def record(client: Any, job: str) -> dict[str, Any]:
    described = client.describe_job(vaultName=VAULT, jobId=job)
    described.pop("ResponseMetadata")
    return dict(described)


def listed(client: Any) -> dict[str, dict[str, Any]]:
    return {j["JobId"]: j for j in client.list_jobs(vaultName=VAULT)["JobList"]}


@pytest.fixture
def two_jobs(emulator: Emulator) -> tuple[Any, list[str], list[bytes]]:
    direct = with_vault(emulator)
    data = [sample(2 * MIB + 5, 1), sample(3 * MIB, 2)]
    jobs = [
        retrieve(direct, VAULT, upload(direct, VAULT, d, f"file{n}")) for n, d in enumerate(data)
    ]
    return direct, jobs, data


def test_an_honest_liar_passes_every_call_through_unchanged(
    liar: Liar, two_jobs: tuple[Any, list[str], list[bytes]]
) -> None:
    direct, jobs, data = two_jobs
    proxied = client_of(liar)
    archive = upload(proxied, VAULT, b"through the proxy", "uploaded through it")
    assert listed(proxied) == listed(direct)
    assert record(proxied, jobs[0]) == record(direct, jobs[0])
    response, body = output(proxied, jobs[1], f"bytes={MIB}-{2 * MIB - 1}")
    assert body == data[1][MIB : 2 * MIB]
    assert response["checksum"] == tree(data[1][MIB : 2 * MIB])
    assert response["archiveDescription"] == "file1"
    assert retrieve(proxied, VAULT, archive)
    assert liar.rewritten == 0


def test_a_lie_changes_one_job_in_describe_job_and_list_jobs(
    liar: Liar, two_jobs: tuple[Any, list[str], list[bytes]]
) -> None:
    direct, jobs, data = two_jobs
    proxied = client_of(liar)
    other = record(direct, jobs[1])
    liar.lie(
        jobs[0],
        ArchiveSHA256TreeHash=other["ArchiveSHA256TreeHash"],
        ArchiveSizeInBytes=other["ArchiveSizeInBytes"],
    )
    for told in (record(proxied, jobs[0]), listed(proxied)[jobs[0]]):
        assert told["ArchiveSHA256TreeHash"] == tree(data[1])
        assert told["ArchiveSizeInBytes"] == len(data[1])
        assert told["ArchiveId"] == record(direct, jobs[0])["ArchiveId"]
    assert record(proxied, jobs[1]) == other
    assert record(direct, jobs[0])["ArchiveSHA256TreeHash"] == tree(data[0])
    assert output(proxied, jobs[0])[1] == data[0]  # the bytes stay the truth


@pytest.mark.parametrize("forged", ["a\nb", ".", "..", "forged-id"])
def test_a_forged_job_id_is_listed_and_maps_back_to_the_real_job(
    liar: Liar, two_jobs: tuple[Any, list[str], list[bytes]], forged: str
) -> None:
    _, jobs, data = two_jobs
    proxied = client_of(liar)
    liar.lie(jobs[0], JobId=forged)
    assert forged in listed(proxied) and jobs[0] not in listed(proxied)
    assert record(proxied, forged)["JobId"] == forged
    assert output(proxied, forged)[1] == data[0]


def test_a_dropped_header_is_missing_from_that_job_only(
    liar: Liar, two_jobs: tuple[Any, list[str], list[bytes]]
) -> None:
    _, jobs, data = two_jobs
    proxied = client_of(liar)
    liar.drop_header(jobs[0], "x-amz-sha256-tree-hash")
    response, body = output(proxied, jobs[0], f"bytes=0-{MIB - 1}")
    assert body == data[0][:MIB] and "checksum" not in response
    assert output(proxied, jobs[1])[0]["checksum"] == tree(data[1])
    liar.truth()
    assert output(proxied, jobs[0])[0]["checksum"] == tree(data[0])


def test_a_body_cut_short_upstream_is_cut_short_through_the_liar(
    emulator: Emulator, liar: Liar, two_jobs: tuple[Any, list[str], list[bytes]]
) -> None:
    _, jobs, _ = two_jobs
    emulator.fault("short", job=jobs[0], count=1)
    with pytest.raises(BotoCoreError):
        output(client_of(liar), jobs[0])
