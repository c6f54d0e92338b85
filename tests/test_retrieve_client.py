"""The client's retrieval calls against the emulator: jobs started with a tier and a
range, inventories, every job listed whatever its state, errors as domain errors, and
the service's clock read from its answers."""

from __future__ import annotations

from typing import Any

import pytest

from glacierfs.client import ClientSettings, GlacierClient
from glacierfs.errors import InsufficientCapacity, ServiceError, TransientServiceError
from tests.support.emulator import Emulator
from tests.support.glacier import MIB, VAULT, seeded
from tests.support.mount import isolated_env


def connect(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> GlacierClient:
    """glacierfs's client for the emulator, with the test credentials only."""
    for name, value in isolated_env().items():
        if name.startswith("AWS_"):
            monkeypatch.setenv(name, value)
    return GlacierClient(ClientSettings(vault=VAULT, endpoint_url=emulator.url))


@pytest.fixture
def client(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Any:
    made = connect(emulator, monkeypatch)
    yield made
    made.close()


def test_archive_retrieval_starts_with_its_tier_and_aligned_range(
    emulator: Emulator, client: GlacierClient
) -> None:
    _, archive_id = seeded(emulator, 3 * MIB + 5)
    whole = client.initiate_retrieval(archive_id, "Bulk")
    part = client.initiate_retrieval(archive_id, "Standard", (2 * MIB, 3 * MIB + 4), "tail")
    record = client.describe_job(part)
    assert (record["Tier"], record["RetrievalByteRange"], record["JobDescription"]) == (
        "Standard",
        f"{2 * MIB}-{3 * MIB + 4}",
        "tail",
    )
    assert client.describe_job(whole)["Tier"] == "Bulk"
    history = emulator.admin("GET", "jobs")
    assert [(j["ArchiveId"], j["Tier"]) for j in history] == [
        (archive_id, "Bulk"),
        (archive_id, "Standard"),
    ]


def test_unaligned_range_is_a_service_error_not_worth_retrying(
    emulator: Emulator, client: GlacierClient
) -> None:
    _, archive_id = seeded(emulator, 3 * MIB)
    with pytest.raises(ServiceError) as caught:
        client.initiate_retrieval(archive_id, "Bulk", (5, MIB - 1))
    assert not isinstance(caught.value, TransientServiceError)
    assert "InvalidParameterValueException" in str(caught.value)


def test_expedited_without_capacity_is_insufficient_capacity(
    emulator: Emulator, client: GlacierClient
) -> None:
    _, archive_id = seeded(emulator, 10)
    emulator.fault("insufficient-capacity")
    with pytest.raises(InsufficientCapacity) as caught:
        client.initiate_retrieval(archive_id, "Expedited")
    assert "\n" not in str(caught.value) and caught.value.exit_code != 0
    assert client.initiate_retrieval(archive_id, "Bulk")


def test_list_all_jobs_has_jobs_in_progress_and_list_jobs_only_succeeded(
    emulator_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator = emulator_factory("--tier-delay", "Bulk=5h", "--max-page-size", "2")
    client = connect(emulator, monkeypatch)
    try:
        _, archive_id = seeded(emulator, 10)
        slow = [client.initiate_retrieval(archive_id, "Bulk") for _ in range(3)]
        fast = client.initiate_retrieval(archive_id, "Standard")
        inventory = client.initiate_inventory("CSV")
        listed = {j["JobId"]: j["StatusCode"] for j in client.list_all_jobs()}
        assert listed == {
            **dict.fromkeys(slow, "InProgress"),
            fast: "Succeeded",
            inventory: "Succeeded",
        }
        assert {j["JobId"] for j in client.list_jobs()} == {fast, inventory}
    finally:
        client.close()


def test_service_time_is_the_date_of_the_latest_answer(
    emulator: Emulator, client: GlacierClient
) -> None:
    seeded(emulator, 10)
    client.describe_vault()
    before = client.service_time
    assert before is not None
    emulator.admin("POST", "clock", {"advance": 86400 * 2})
    client.list_all_jobs()
    assert client.service_time is not None
    assert 86400 * 2 <= client.service_time - before < 86400 * 2 + 60
