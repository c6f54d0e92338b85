"""The emulator's tiers and clock, checked through botocore: each tier completes after its
own delay, the clock runs faster or is pushed ahead through the admin endpoint, and
every date the service gives (CreationDate, CompletionDate, the Date header) and every
expiry follows it; Expedited can be refused for capacity."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

import pytest

from tests.support.emulator import Emulator
from tests.support.glacier import VAULT, failure, output, seeded
from tests.support.mount import isolated_env, wait_for
from tests.support.vault import inventory

HOUR = 3600.0


def initiate(client: Any, archive_id: str, tier: str) -> str:
    params = {"Type": "archive-retrieval", "ArchiveId": archive_id, "Tier": tier}
    return str(client.initiate_job(vaultName=VAULT, jobParameters=params)["jobId"])


def when(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def described(client: Any, job_id: str) -> dict[str, Any]:
    return dict(client.describe_job(vaultName=VAULT, jobId=job_id))


def service_time(client: Any) -> float:
    """The Date header of an answer: the service's own time."""
    answer = client.describe_vault(vaultName=VAULT)
    return parsedate_to_datetime(answer["ResponseMetadata"]["HTTPHeaders"]["date"]).timestamp()


def advance(emulator: Emulator, seconds: float) -> float:
    return float(emulator.admin("POST", "clock", {"advance": seconds})["now"])


def test_each_tier_completes_within_its_real_time_as_the_clock_is_advanced(
    emulator_factory: Any,
) -> None:
    emulator = emulator_factory("--real-tier-times")
    client, archive_id = seeded(emulator, 1000)
    jobs = {tier: initiate(client, archive_id, tier) for tier in ("Expedited", "Standard", "Bulk")}
    assert {t: described(client, j)["StatusCode"] for t, j in jobs.items()} == dict.fromkeys(
        jobs, "InProgress"
    )
    steps = {"Expedited": 5 * 60, "Standard": 5 * HOUR, "Bulk": 12 * HOUR}
    spans = {
        "Expedited": (60, 300),
        "Standard": (3 * HOUR, 5 * HOUR),
        "Bulk": (5 * HOUR, 12 * HOUR),
    }
    elapsed = 0.0
    for tier in ("Expedited", "Standard", "Bulk"):
        later = [t for t in steps if steps[t] > steps[tier]]
        assert all(described(client, jobs[t])["StatusCode"] == "InProgress" for t in later)
        advance(emulator, steps[tier] - elapsed + 1)
        elapsed = steps[tier] + 1
        record = described(client, jobs[tier])
        assert (record["StatusCode"], record["Completed"], record["Tier"]) == (
            "Succeeded",
            True,
            tier,
        )
        took = when(record["CompletionDate"]) - when(record["CreationDate"])
        low, high = spans[tier]
        assert low <= took <= high, (tier, took)
        assert output(client, jobs[tier])[1] == emulator.content(VAULT, archive_id)


def test_tier_delay_flag_sets_one_tier_and_job_delay_the_others(emulator_factory: Any) -> None:
    emulator = emulator_factory("--tier-delay", "Bulk=2h", "--job-delay", "600")
    client, archive_id = seeded(emulator, 10)
    bulk, standard = initiate(client, archive_id, "Bulk"), initiate(client, archive_id, "Standard")
    advance(emulator, 601)
    assert described(client, standard)["StatusCode"] == "Succeeded"
    assert described(client, bulk)["StatusCode"] == "InProgress"
    advance(emulator, 2 * HOUR)
    record = described(client, bulk)
    assert when(record["CompletionDate"]) - when(record["CreationDate"]) == pytest.approx(2 * HOUR)


def test_the_date_header_and_dates_follow_the_advanced_clock(emulator: Emulator) -> None:
    client, archive_id = seeded(emulator, 10)
    before = service_time(client)
    advance(emulator, 3 * 86400)
    after = service_time(client)
    assert 3 * 86400 <= after - before < 3 * 86400 + 60
    job_id = initiate(client, archive_id, "Bulk")
    assert abs(when(described(client, job_id)["CreationDate"]) - after) < 60
    clock = emulator.admin("GET", "clock")
    assert abs(clock["now"] - after) < 60 and clock["speed"] == 1.0


def test_a_fast_clock_completes_a_12_hour_bulk_job_in_seconds(emulator_factory: Any) -> None:
    emulator = emulator_factory("--tier-delay", "Bulk=12h", "--clock-speed", "36000")
    client, archive_id = seeded(emulator, 10)
    job_id = initiate(client, archive_id, "Bulk")
    wait_for(
        lambda: described(client, job_id)["StatusCode"] == "Succeeded", "the Bulk job to complete"
    )
    record = described(client, job_id)
    assert when(record["CompletionDate"]) - when(record["CreationDate"]) == pytest.approx(12 * HOUR)


def test_outputs_expire_24_hours_after_completion_by_the_clock(emulator: Emulator) -> None:
    client, archive_id = seeded(emulator, 10)
    job_id = initiate(client, archive_id, "Bulk")
    inventory_job = inventory(client, VAULT)
    completed = when(described(client, job_id)["CompletionDate"])
    advance(emulator, 23 * HOUR)
    assert output(client, job_id)[1] == emulator.content(VAULT, archive_id)
    advance(emulator, 1 * HOUR + 1)
    for job in (job_id, inventory_job):
        assert failure(lambda job=job: described(client, job))[:2] == (  # type: ignore[misc]
            404,
            "ResourceNotFoundException",
        )
    assert client.list_jobs(vaultName=VAULT)["JobList"] == []
    history = {j["JobId"]: j for j in emulator.admin("GET", "jobs")}
    assert history[job_id]["expired"] == pytest.approx(completed + 24 * HOUR, abs=0.01)
    assert history[job_id]["ArchiveId"] == archive_id and history[job_id]["Tier"] == "Bulk"


def test_job_expiry_flag_is_reckoned_on_the_clock(emulator_factory: Any) -> None:
    emulator = emulator_factory("--job-expiry", "7200")
    client, archive_id = seeded(emulator, 10)
    job_id = initiate(client, archive_id, "Standard")
    advance(emulator, 7100)
    assert described(client, job_id)["StatusCode"] == "Succeeded"
    advance(emulator, 200)
    assert failure(lambda: described(client, job_id))[0] == 404


def test_expedited_is_refused_for_capacity_while_bulk_and_standard_go_through(
    emulator: Emulator,
) -> None:
    client, archive_id = seeded(emulator, 10)
    emulator.fault("insufficient-capacity", count=2)
    assert initiate(client, archive_id, "Bulk")
    assert initiate(client, archive_id, "Standard")
    assert emulator.admin("GET", "faults")[0]["count"] == 2  # not spent on other tiers
    for _ in range(2):
        status, code, _ = failure(lambda: initiate(client, archive_id, "Expedited"))
        assert (status, code) == (503, "InsufficientCapacityException")
    assert initiate(client, archive_id, "Expedited")
    tiers = [j["Tier"] for j in emulator.admin("GET", "jobs")]
    assert tiers == ["Bulk", "Standard", "Expedited"]


def test_initiate_job_requests_are_logged_with_archive_tier_and_job(emulator: Emulator) -> None:
    client, archive_id = seeded(emulator, 10)
    job_id = initiate(client, archive_id, "Bulk")
    entries = [e for e in emulator.requests() if e["operation"] == "InitiateJob"]
    assert [(e["archive"], e["tier"], e["initiated"]) for e in entries] == [
        (archive_id, "Bulk", job_id)
    ]


def test_the_clock_never_goes_back_across_a_restart(emulator: Emulator) -> None:
    seeded(emulator, 10)
    ahead = advance(emulator, 10 * 86400)
    emulator.restart()
    assert emulator.admin("GET", "clock")["now"] >= ahead
    assert service_time(emulator.client()) >= ahead - 1


@pytest.mark.parametrize(
    "flags",
    [("--tier-delay", "Glacial=1h"), ("--tier-delay", "Bulk=12h-5h"), ("--clock-speed", "0")],
)
def test_bad_tier_or_clock_flags_are_refused_in_one_line(flags: tuple[str, ...]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "glacierfs.emulator", *flags],
        capture_output=True,
        text=True,
        env=isolated_env(),
        timeout=60,
    )
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_clock_admin_refuses_moving_back(emulator: Emulator) -> None:
    with pytest.raises(AssertionError, match="forward"):
        emulator.admin("POST", "clock", {"advance": -5})
