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
import unicodedata
from pathlib import Path
from typing import Any

import pytest

from glacierfs.client import ClientSettings, GlacierClient
from tests.support.emulator import Emulator
from tests.support.liar import Liar
from tests.support.mount import Mount, isolated_env, needs_fuse, unmount, wait_for
from tests.support.retrieve import mt2
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


@needs_fuse
def test_bidi_and_format_characters_in_a_description_are_underscores_in_names_and_status(
    emulator: Emulator, mount_factory: Any
) -> None:
    """can fail: `invoice\\u202efdp.exe` showed as a PDF, in the tree and in `status`."""
    client = emulator.client()
    client.create_vault(vaultName=VAULT)
    hostile = "invoice\u202efdp.exe\u2066\u200b\ufeff\u2028x"
    archive, _ = emulator.seeded_archive(VAULT, 1000, 1, mt2(hostile))
    job = retrieve(client, VAULT, archive)
    mount: Mount = mount_factory(emulator.url, VAULT)
    assert os.listdir(mount.path / "archives") == ["invoice_fdp.exe____x"]
    status = subprocess.run(
        [sys.executable, "-m", "glacierfs", "status", str(mount.path)],
        capture_output=True,
        text=True,
        env=isolated_env(),
        timeout=60,
    )
    assert status.returncode == 0, status.stderr
    line = next(line for line in status.stdout.splitlines() if line.startswith(job[:25]))
    assert line.endswith("archives/invoice_fdp.exe____x"), status.stdout
    shown = status.stdout.replace("\n", "")
    assert not any(unicodedata.category(c) in ("Cf", "Zl", "Zp", "Cc") for c in shown)


def test_the_client_hands_out_each_record_as_the_service_sent_it(
    emulator: Emulator, liar: Liar, monkeypatch: pytest.MonkeyPatch
) -> None:
    """can fail: botocore failed the page on "abc", and made 1.5 into 1 and "x" into False."""
    for name in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(name)
    for name, value in isolated_env().items():
        if name.startswith("AWS_"):
            monkeypatch.setenv(name, value)
    _, _, jobs = jobs_of(emulator, 3)
    liar.lie(jobs[0], ArchiveSizeInBytes="abc", Completed="x", Extra=[1])
    liar.lie(jobs[1], ArchiveSizeInBytes=1.5, CreationDate=None)
    client = GlacierClient(ClientSettings(vault=VAULT, endpoint_url=liar.url))
    try:
        listed = {r["JobId"]: r for r in client.list_jobs()}
        described = [client.describe_job(job) for job in jobs]
    finally:
        client.close()
    assert sorted(listed) == sorted(jobs)
    for records in (listed, {r["JobId"]: r for r in described}):
        assert records[jobs[0]]["ArchiveSizeInBytes"] == "abc"
        assert records[jobs[0]]["Completed"] == "x" and records[jobs[0]]["Extra"] == [1]
        assert records[jobs[1]]["ArchiveSizeInBytes"] == 1.5
        assert records[jobs[1]]["CreationDate"] is None
        assert records[jobs[2]]["ArchiveSizeInBytes"] == 1 << 20
