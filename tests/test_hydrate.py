"""Hydration and status: every paid-for output saved before it expires, and shown truly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.emulator import Emulator
from tests.support.mount import Mount, cmp, isolated_env, needs_fuse, stop_process, wait_for
from tests.support.vault import retrieve

pytestmark = needs_fuse

MIB = 1 << 20
VAULT = "hydrate"


def glacierfs(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "glacierfs", *argv],
        capture_output=True,
        text=True,
        env=isolated_env(),
        timeout=600,
    )


@pytest.fixture
def jobs(emulator: Emulator, tmp_path: Path) -> list[tuple[str, Path]]:
    """Four full retrievals of seeded archives, and each archive's bytes in a file."""
    emulator.client().create_vault(vaultName=VAULT)
    made = []
    for seed, size in enumerate([9 * MIB + 1, 3 * MIB, 17 * MIB + 5, 1234], start=1):
        archive, _ = emulator.seeded_archive(VAULT, size, seed, "")
        expected = emulator.save_content(VAULT, archive, tmp_path / f"expected-{seed}")
        made.append((retrieve(emulator.client(), VAULT, archive), expected))
    return made


def test_hydration_under_faults_saves_every_output_before_it_expires(
    emulator: Emulator, jobs: list[tuple[str, Path]], mount_factory: Any
) -> None:
    emulator.fault("throttle", rate=0.3, operation="GetJobOutput")
    emulator.fault("reset", count=2)
    emulator.fault("flip", count=1, job=jobs[2][0])
    mount: Mount = mount_factory(emulator.url, VAULT)
    result = glacierfs("hydrate", str(mount.path))
    assert result.returncode == 0, result.stderr
    assert "to fetch" in result.stderr  # (small files may be cached with their names)
    mount.stop()
    emulator.clear_faults()
    for job_id, _ in jobs:
        emulator.expire(job_id)
    before = emulator.output_totals()["requests"]
    again: Mount = mount_factory(emulator.url, VAULT, cache_dir=mount.cache_dir)
    for job_id, expected in jobs:
        cmp(again.job_file(job_id), expected)
        assert os.getxattr(again.job_file(job_id), "user.glacierfs.verified") == b"tree-hash"
    assert emulator.output_totals()["requests"] == before


def test_a_hydration_killed_half_way_fetches_only_what_was_missing(
    emulator: Emulator, jobs: list[tuple[str, Path]], mount_factory: Any
) -> None:
    total = sum(expected.stat().st_size for _, expected in jobs)
    emulator.fault("bandwidth", bps=8 * MIB)
    mount: Mount = mount_factory(emulator.url, VAULT)
    hydration = subprocess.Popen(
        [sys.executable, "-m", "glacierfs", "hydrate", str(mount.path)],
        env=isolated_env(),
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: emulator.output_totals()["bytes"] > total // 3, "hydration under way")
    finally:
        stop_process(hydration)
    mount.process.kill()  # type: ignore[union-attr]  # the daemon too, mid-fetch
    mount.stop()
    emulator.clear_faults()
    again: Mount = mount_factory(emulator.url, VAULT, cache_dir=mount.cache_dir)
    cached = sum(int(os.getxattr(again.job_file(j), "user.glacierfs.cached")) for j, _ in jobs)
    assert 0 < cached < total
    emulator.reset_counters()
    result = glacierfs("hydrate", str(again.path))
    assert result.returncode == 0, result.stderr
    assert emulator.output_totals()["bytes"] == total - cached
    for job_id, expected in jobs:
        cmp(again.job_file(job_id), expected)


def test_status_reports_what_the_service_says_was_fetched(
    emulator: Emulator, jobs: list[tuple[str, Path]], mount_factory: Any
) -> None:
    emulator.fault("error503", count=2, operation="GetJobOutput")
    mount: Mount = mount_factory(emulator.url, VAULT, {"read_ahead": "1M"})
    first, _ = jobs[0]
    with mount.job_file(first).open("rb") as stream:
        stream.read(4 * MIB)
    cmp(mount.job_file(jobs[1][0]), jobs[1][1])
    document: dict[str, Any] = {}

    def settled() -> bool:  # prefetches end, and the emulator counts what it served
        result = glacierfs("status", "--json", str(mount.path))
        assert result.returncode == 0, result.stderr
        document.update(json.loads(result.stdout))
        fetched = document["stats"]["bytes_fetched"]
        return not document["stats"]["in_flight"] and emulator.output_totals()["bytes"] == fetched

    wait_for(settled, "the daemon's figures to match the emulator's")
    counters = emulator.output_totals()
    stats = document["stats"]
    failed = sum(1 for r in emulator.requests() if r.get("fault") == "error503")
    assert stats["bytes_fetched"] == counters["bytes"]
    assert stats["requests"] + failed == counters["requests"]
    assert stats["retries"] == failed == 2
    files = {f["job_id"]: f for f in document["files"]}
    assert files[jobs[1][0]]["cached"] == jobs[1][1].stat().st_size
    assert 4 * MIB <= files[first]["cached"] < files[first]["size"]
    assert files[jobs[3][0]]["cached"] in (0, 1234)  # the first leaf may come with its name
    table = glacierfs("status", str(mount.path))
    assert table.returncode == 0, table.stderr
    assert f"in {stats['requests']} requests" in table.stdout
    assert "2 retries" in table.stdout
    assert "100.0%" in table.stdout
    for job_id, _ in jobs:
        assert job_id[:25] in table.stdout
    for line in table.stdout.splitlines()[1:5]:  # each job with its friendly name
        assert line.split()[-1].startswith("archives/")
    assert all(f["name"].startswith("archives/") for f in document["files"])


def test_status_and_hydrate_refuse_a_path_that_is_not_a_mount(tmp_path: Path) -> None:
    for command in ("status", "hydrate"):
        result = glacierfs(command, str(tmp_path))
        assert result.returncode != 0
        assert len(result.stderr.strip().splitlines()) == 1
        assert "not a glacierfs mount" in result.stderr


def test_a_job_expiring_within_the_hour_with_bytes_not_cached_is_logged_once(
    emulator: Emulator, jobs: list[tuple[str, Path]], mount_factory: Any
) -> None:
    soon, _ = jobs[0]
    completed = time.time() - 23.5 * 3600
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(completed))
    emulator.set_job(soon, CompletionDate=stamp)
    mount: Mount = mount_factory(emulator.url, VAULT)
    wait_for(lambda: "expires in" in mount.log(), "the expiry warning")
    warnings = [line for line in mount.log().splitlines() if "expires in" in line]
    assert len(warnings) == 1 and soon in warnings[0] and "hydrate" in warnings[0]
    assert os.getxattr(mount.job_file(soon), "user.glacier.expires").startswith(
        time.strftime("%Y-%m-%dT", time.gmtime(completed + 24 * 3600)).encode()
    )


def test_the_hydrate_option_caches_every_job_in_the_background(
    emulator: Emulator, jobs: list[tuple[str, Path]], mount_factory: Any
) -> None:
    mount: Mount = mount_factory(emulator.url, VAULT, {"hydrate": ""})

    def cached(job_id: str) -> int:
        return int(os.getxattr(mount.job_file(job_id), "user.glacierfs.cached"))

    sizes = {job_id: expected.stat().st_size for job_id, expected in jobs}
    wait_for(lambda: all(cached(j) == size for j, size in sizes.items()), "every job hydrated")
    assert emulator.output_totals()["bytes"] == sum(sizes.values())  # each byte once
    before = emulator.output_totals()["requests"]
    for job_id, expected in jobs:
        cmp(mount.job_file(job_id), expected)
    assert emulator.output_totals()["requests"] == before
