"""Job records checked one by one, through real mounts: one bad record hides one job.

The emulator answers any field we set in a job's record (its admin API), as a lying or
broken service would; the daemon must show every other job, at mount and after, log
the bad one once (escaped), and stay up.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.emulator import Emulator
from tests.support.mount import Mount, isolated_env, needs_fuse, unmount, wait_for
from tests.support.vault import retrieve

VAULT = "records"


def jobs_of(emulator: Emulator, count: int) -> tuple[Any, str, list[str]]:
    client = emulator.client()
    client.create_vault(vaultName=VAULT)
    archive, _ = emulator.seeded_archive(VAULT, 1 << 20, 1, "")
    return client, archive, [retrieve(client, VAULT, archive) for _ in range(count)]


def listings(emulator: Emulator) -> int:
    return int(emulator.counters()["operations"].get("ListJobs", {}).get("requests", 0))


@needs_fuse
def test_a_record_with_a_size_of_the_wrong_type_hides_that_job_only(
    emulator: Emulator, mount_factory: Any
) -> None:
    """can fail: botocore's parse of the page made it 0 of 6 jobs, and none later."""
    client, archive, jobs = jobs_of(emulator, 6)
    emulator.set_job(jobs[0], ArchiveSizeInBytes="abc")
    mount: Mount = mount_factory(emulator.url, VAULT, {"refresh": "3600"})
    assert sorted(os.listdir(mount.path / "jobs")) == sorted(jobs[1:])
    later = retrieve(client, VAULT, archive)
    before = listings(emulator)
    for step in range(1, 4):  # each refresh meets the same bad record
        os.kill(mount.pid, signal.SIGHUP)
        wait_for(lambda step=step: listings(emulator) >= before + step, "a refresh")
    wait_for(lambda: later in os.listdir(mount.path / "jobs"), "the later job to be shown")
    assert sorted(os.listdir(mount.path / "jobs")) == sorted([*jobs[1:], later])
    assert mount.alive()
    refused = [line for line in mount.log().splitlines() if "job not shown" in line]
    assert refused == [refused[0]] and "ArchiveSizeInBytes is 'abc'" in refused[0], refused


@needs_fuse
def test_a_mount_that_cannot_list_its_jobs_at_start_fails_in_one_line(
    emulator: Emulator, mount_factory: Any, tmp_path: Path
) -> None:
    """can fail: it mounted an empty tree and exited 0."""
    _, _, jobs = jobs_of(emulator, 2)
    emulator.fault("error503", operation="ListJobs")
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    options = f"endpoint_url={emulator.url},cache_dir={tmp_path / 'cache'},timeout=2,retries=2"
    argv = [sys.executable, "-m", "glacierfs", VAULT, str(mountpoint), "-o", options]
    try:
        result = subprocess.run(
            argv, capture_output=True, text=True, env=isolated_env(), timeout=120
        )
        assert result.returncode != 0 and not os.path.ismount(mountpoint)
    finally:
        if os.path.ismount(mountpoint):  # it mounted after all: the daemon ends with it
            unmount(mountpoint)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "could not be listed" in lines[0] and "empty_start" in lines[0]
    empty: Mount = mount_factory(
        emulator.url, VAULT, {"timeout": "2", "retries": "2", "empty_start": ""}
    )
    assert os.listdir(empty.path / "jobs") == []
    emulator.clear_faults()
    os.kill(empty.pid, signal.SIGHUP)
    wait_for(lambda: sorted(os.listdir(empty.path / "jobs")) == sorted(jobs), "the jobs")
