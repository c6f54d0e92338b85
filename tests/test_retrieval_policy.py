"""The account's data retrieval policy: the emulator's Get/Set Data Retrieval Policy and
its PolicyEnforcedException, and `retrieve` reading it, pacing within BytesPerHour,
and reporting a refusal in one line without asking again."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest

from glacierfs.retrieve.policy import FREE_TIER_PER_DAY, RetrievalPolicy
from tests.support.delivery import seeded_vault
from tests.support.emulator import Emulator
from tests.support.retrieve import FLAGS, HOUR, MIB, Retrieve, drive, history, take_inventory

VAULT = "policed"

pytestmark = pytest.mark.timeout(300)


def set_policy(emulator: Emulator, **rule: Any) -> None:
    emulator.client().set_data_retrieval_policy(Policy={"Rules": [rule]})


def initiate(client: Any, archive_id: str, tier: str = "Standard") -> str:
    params = {"Type": "archive-retrieval", "ArchiveId": archive_id, "Tier": tier}
    return str(client.initiate_job(vaultName=VAULT, jobParameters=params)["jobId"])


def error_code(call: Callable[[], object]) -> str:
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        call()
    return str(caught.value.response["Error"]["Code"])


def test_the_emulator_keeps_the_policy_and_refuses_what_breaks_it(emulator: Emulator) -> None:
    client = emulator.client()
    assert client.get_data_retrieval_policy()["Policy"] == {"Rules": [{"Strategy": "None"}]}
    made = seeded_vault(emulator, VAULT, {"a": 3 * MIB, "b": 3 * MIB, "c": 3 * MIB})
    set_policy(emulator, Strategy="BytesPerHour", BytesPerHour=2 * MIB)
    rule = client.get_data_retrieval_policy()["Policy"]["Rules"][0]
    assert rule == {"Strategy": "BytesPerHour", "BytesPerHour": 2 * MIB}
    # A job's bytes count as spread over 4 hours: 3 MiB is 0.75 MiB an hour, two are 1.5.
    initiate(client, made["a"])
    initiate(client, made["b"])
    assert error_code(lambda: initiate(client, made["c"])) == "PolicyEnforcedException"
    initiate(client, made["c"], tier="Bulk")  # a policy applies to Standard only
    emulator.admin("POST", "clock", {"advance": 4 * HOUR + 1})
    initiate(client, made["c"])  # the first two no longer count
    bad = {"Rules": [{"Strategy": "FreeTier", "BytesPerHour": 5}]}
    assert error_code(lambda: client.set_data_retrieval_policy(Policy=bad)) == (
        "InvalidParameterValueException"
    )
    set_policy(emulator, Strategy="FreeTier")
    assert client.get_data_retrieval_policy()["Policy"]["Rules"] == [{"Strategy": "FreeTier"}]


def test_the_policy_in_words_and_as_limits() -> None:
    rate = RetrievalPolicy.from_rule({"Strategy": "BytesPerHour", "BytesPerHour": 4 * MIB})
    assert rate.per_hour("Standard") == 4 * MIB and rate.per_hour("Bulk") is None
    assert "4.0 MiB an hour" in rate.words()
    free = RetrievalPolicy.from_rule({"Strategy": "FreeTier"})
    assert free.per_day("Standard") == FREE_TIER_PER_DAY and free.per_hour("Standard") is None
    assert "FreeTier" in free.words() and "a day" in free.words()
    assert RetrievalPolicy.from_rule(None).words().startswith("not readable")
    refusal = rate.refusal("a.txt")
    assert "BytesPerHour" in refusal and "set-data-retrieval-policy" in refusal


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if "requested:" not in line]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_a_refusal_by_the_policy_is_one_line_and_ends_the_run_without_asking_again(
    emulator_factory: Callable[..., Emulator], tmp_path: Path
) -> None:
    emulator = emulator_factory(*FLAGS)
    seeded_vault(emulator, VAULT, {f"f{n}": 3 * MIB for n in range(4)})
    take_inventory(emulator, VAULT)
    set_policy(emulator, Strategy="BytesPerHour", BytesPerHour=MIB)
    # These credentials may not read the policy: retrieve cannot pace within it.
    emulator.fault("access-denied", operation="GetDataRetrievalPolicy")
    run = Retrieve(emulator, VAULT, tmp_path / "cache", tmp_path / "run.log")
    result = run.run("--all", "--yes", "--follow", "--poll", "0.05", "--tier", "Standard")
    line = one_line_error(result)
    assert result.returncode == 3
    assert "refused by the account's data retrieval policy" in line and "run again" in line
    assert "retrieval policy: not readable" in result.stdout
    asked = [e for e in emulator.requests() if e["operation"] == "InitiateJob" and e["archive"]]
    # 3 MiB spread over 4 hours fits under 1 MiB an hour; a second does not: refused once,
    # and nothing asked after that.
    assert [e["status"] for e in asked] == [202, 400] and len(history(emulator)) == 1


def test_a_bytes_per_hour_policy_is_read_and_no_hour_goes_over_it(
    emulator_factory: Callable[..., Emulator], tmp_path: Path
) -> None:
    emulator = emulator_factory(*FLAGS)
    made = seeded_vault(emulator, VAULT, {f"f{n:02d}": MIB + 1000 * n for n in range(10)})
    take_inventory(emulator, VAULT)
    set_policy(emulator, Strategy="BytesPerHour", BytesPerHour=3 * MIB)
    follower = Retrieve(emulator, VAULT, tmp_path / "cache", tmp_path / "follow.log")
    follower.start("--all", "--yes", "--follow", "--poll", "0.05", "--tier", "Standard")
    try:
        drive(emulator, follower, seconds=HOUR)
    finally:
        follower.stop()
    assert follower.process is not None and follower.process.returncode == 0, follower.output()
    assert "retrieval policy: BytesPerHour: at most 3.0 MiB an hour" in follower.output()
    assert "10 saved, 10 verified" in follower.output()
    jobs = history(emulator)
    assert sorted(j["ArchiveId"] for j in jobs) == sorted(made.values())
    sizes = {archive_id: MIB + 1000 * n for n, archive_id in enumerate(made.values())}
    for first in jobs:
        hour = [j for j in jobs if first["created"] <= j["created"] < first["created"] + HOUR]
        assert sum(sizes[j["ArchiveId"]] for j in hour) <= 3 * MIB
    refused = [e for e in emulator.requests() if e.get("error") == "PolicyEnforcedException"]
    assert refused == []
