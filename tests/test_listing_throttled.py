"""ListJobs under the service's rate limit: fast listers are throttled, and a listing of
many pages goes on from the page throttled instead of starting over (which, with more
pages than the limit's burst, would never end)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import botocore.exceptions
import pytest

from tests.support.emulator import Emulator
from tests.support.glacier import VAULT, with_vault
from tests.test_retrieve_client import connect

JOBS = 10
PAGE = 2  # five pages, against a limit of two a second


@pytest.fixture
def limited(emulator_factory: Callable[..., Emulator]) -> Emulator:
    emulator = emulator_factory("--list-jobs-rate", "2", "--max-page-size", str(PAGE))
    client = with_vault(emulator)
    for n in range(JOBS):
        archive, _ = emulator.seeded_archive(VAULT, 1000, n + 1, f"f{n}")
        client.initiate_job(
            vaultName=VAULT, jobParameters={"Type": "archive-retrieval", "ArchiveId": archive}
        )
    return emulator


def _listings(emulator: Emulator) -> list[dict[str, Any]]:
    return [r for r in emulator.requests() if r.get("operation") == "ListJobs"]


def test_the_emulator_throttles_fast_listers(limited: Emulator) -> None:
    client = limited.client()
    codes = []
    for _ in range(6):
        try:
            client.list_jobs(vaultName=VAULT)
            codes.append("ok")
        except botocore.exceptions.ClientError as error:
            codes.append(error.response["Error"]["Code"])
    assert codes[:2] == ["ok", "ok"] and "ThrottlingException" in codes


def test_a_throttled_listing_goes_on_from_its_page(
    limited: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Can fail: retrying the whole listing (or none of it) never lists five pages."""
    client = connect(limited, monkeypatch)
    try:
        limited.reset_counters()
        jobs = client.list_all_jobs()
    finally:
        client.close()
    assert len({j["JobId"] for j in jobs}) == JOBS
    asked = _listings(limited)
    assert any(r.get("fault") == "throttle" for r in asked)  # it was throttled
    firsts = [r for r in asked if "marker" not in (r.get("query") or {})]
    assert len(firsts) == 1  # and never started over
