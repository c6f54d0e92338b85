"""Custody through a real mount (issue 21, case 1): outputs paid for whose jobs expired
stay in a small cache while live ones are read through it, and cache_size holds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support.emulator import Emulator
from tests.support.mount import Mount, isolated_env, needs_fuse, wait_for
from tests.support.vault import retrieve

pytestmark = [needs_fuse, pytest.mark.timeout(600)]

MIB = 1 << 20
VAULT = "photos"
CACHE_SIZE = 64 * MIB
HOUR = 3600.0
CUSTODY_XATTR = "user.glacierfs.custody"


class DiskSampler:
    """The bytes the cache's data directory holds on disk, sampled in a thread."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.most = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def held(self) -> int:
        total = 0
        try:
            entries = list(os.scandir(self.data))
        except FileNotFoundError:
            return 0
        for entry in entries:
            try:
                total += entry.stat(follow_symlinks=False).st_blocks * 512
            except FileNotFoundError:  # evicted whole while we looked
                continue
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.most = max(self.most, self.held())
            self.samples += 1
            self._stop.wait(0.005)  # the sampling interval, not synchronisation

    @contextmanager
    def running(self) -> Iterator[DiskSampler]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(timeout=10)


def seeded(emulator: Emulator, count: int, first_seed: int) -> dict[str, bytes]:
    """Archives of 8 MiB: ArchiveId -> bytes."""
    found = {}
    for seed in range(first_seed, first_seed + count):
        archive_id, _ = emulator.seeded_archive(VAULT, 8 * MIB, seed, f"a{seed}.bin")
        found[archive_id] = emulator.content(VAULT, archive_id)
    return found


def read_all(mount: Mount, jobs: dict[str, str], data: dict[str, bytes]) -> None:
    for job_id, archive_id in jobs.items():
        assert mount.job_file(job_id).read_bytes() == data[archive_id], job_id


def output_requests(emulator: Emulator, jobs: dict[str, str]) -> int:
    return sum(
        1 for r in emulator.requests() if r["operation"] == "GetJobOutput" and r["job"] in jobs
    )


def classes(mount: Mount, jobs: dict[str, str]) -> set[str]:
    return {os.getxattr(mount.job_file(j), CUSTODY_XATTR).decode() for j in jobs}


def test_paid_for_outputs_stay_in_a_small_cache_while_live_ones_are_read_through_it(
    emulator: Emulator, mount_factory: Callable[..., Mount], tmp_path: Path
) -> None:
    client = emulator.client()
    client.create_vault(vaultName=VAULT)
    data = seeded(emulator, 6, 1)
    paid = {retrieve(client, VAULT, archive_id): archive_id for archive_id in data}
    cache = tmp_path / "cache"
    options = {"cache_size": str(CACHE_SIZE)}
    sampler = DiskSampler(cache / "v1" / "data")
    with sampler.running():
        mount = mount_factory(emulator.url, VAULT, options, cache_dir=cache, name="first")
        read_all(mount, paid, data)
        assert classes(mount, paid) == {"replaceable"}  # their jobs are live
        emulator.admin("POST", "clock", {"advance": 25 * HOUR})  # now they expire
        later = seeded(emulator, 6, 101)
        data |= later
        live = {retrieve(client, VAULT, archive_id): archive_id for archive_id in later}
        os.kill(mount.pid, signal.SIGHUP)  # list the jobs again
        wait_for(lambda: all(mount.job_file(j).exists() for j in live), "the new jobs")
        assert classes(mount, paid) == {"custody"}
        read_all(mount, live, data)
        assert classes(mount, paid) == {"custody"}
        mount.stop()
        emulator.reset_counters()
        again = mount_factory(emulator.url, VAULT, options, cache_dir=cache, name="again")
        read_all(again, paid, data)
        assert output_requests(emulator, paid) == 0  # every paid-for byte was still cached
        read_all(again, live, data)
        assert output_requests(emulator, live) > 0  # some came from the network again
    assert sampler.samples > 100
    assert 48 * MIB <= sampler.most <= CACHE_SIZE
    assert "WARNING" not in mount.log() + again.log()


def glacierfs(*args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "glacierfs", *args]
    return subprocess.run(argv, capture_output=True, text=True, env=isolated_env(), timeout=120)


def status(mount: Mount) -> dict[str, Any]:
    done = glacierfs("status", "--json", str(mount.path))
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def custody_of(path: Path) -> str:
    return os.getxattr(path, CUSTODY_XATTR).decode()


def test_release_marks_archives_delivered_and_status_shows_each_class(
    emulator: Emulator, mount_factory: Callable[..., Mount], tmp_path: Path
) -> None:
    client = emulator.client()
    client.create_vault(vaultName=VAULT)
    names = ["dir/a1.bin", "dir/a2.bin", "dir/b3.bin"]
    for seed, name in enumerate(names, 1):
        archive_id, _ = emulator.seeded_archive(VAULT, 2 * MIB, seed, name)
        retrieve(client, VAULT, archive_id)
    mount = mount_factory(emulator.url, VAULT, {"cache_size": str(CACHE_SIZE)})
    files = [mount.path / "archives" / name for name in names]
    for path in files:
        path.read_bytes()
    assert {custody_of(path) for path in files} == {"replaceable"}
    emulator.admin("POST", "clock", {"advance": 25 * HOUR})
    os.kill(mount.pid, signal.SIGHUP)
    wait_for(lambda: all(custody_of(p) == "custody" for p in files), "the jobs to expire")
    cache = status(mount)["cache"]
    assert cache == {
        "custody": 6 * MIB,
        "replaceable": 0,
        "delivered": 0,
        "free": CACHE_SIZE - 6 * MIB,
        "capacity": CACHE_SIZE,
    }
    done = glacierfs("release", str(files[0]), str(mount.path / "archives" / "dir" / "a2*"))
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines() == [
        "released archives/dir/a1.bin (2.0M)",
        "released archives/dir/a2.bin (2.0M)",
    ]
    wait_for(lambda: custody_of(files[1]) == "delivered", "the mount to read the release")
    assert [custody_of(path) for path in files] == ["delivered", "delivered", "custody"]
    document = status(mount)
    assert (document["cache"]["delivered"], document["cache"]["custody"]) == (4 * MIB, 2 * MIB)
    assert sorted(f["custody"] for f in document["files"]) == ["custody", "delivered", "delivered"]
    table = glacierfs("status", str(mount.path)).stdout
    assert "cache: 2.0M custody, 0B replaceable, 4.0M delivered" in table
    again = glacierfs("release", str(files[0]))
    assert again.returncode == 0 and again.stdout.startswith("already delivered: archives/dir/a1")
    (tmp_path / "elsewhere").write_bytes(b"x")
    job_file = next((mount.path / "jobs").iterdir())
    bad = glacierfs(
        "release", str(tmp_path / "nothing*"), str(tmp_path / "elsewhere"), str(job_file)
    )
    assert bad.returncode == 1 and bad.stdout == ""
    assert [line.split(": ", 2)[-1] for line in bad.stderr.splitlines()] == [
        "no such file or directory",
        "not a file of a glacierfs mount",
        "not an archive file (release the files under archives/)",
    ]


def test_a_cache_full_of_custody_serves_reads_uncached_and_keeps_custody_over_a_lower_size(
    emulator: Emulator, mount_factory: Callable[..., Mount], tmp_path: Path
) -> None:
    client = emulator.client()
    client.create_vault(vaultName=VAULT)
    data = seeded(emulator, 2, 1)
    paid = {retrieve(client, VAULT, archive_id): archive_id for archive_id in data}
    cache = tmp_path / "cache"
    mount = mount_factory(emulator.url, VAULT, {"cache_size": "16M"}, cache_dir=cache, name="a")
    read_all(mount, paid, data)
    emulator.admin("POST", "clock", {"advance": 25 * HOUR})
    later = seeded(emulator, 1, 101)
    data |= later
    live = {retrieve(client, VAULT, archive_id): archive_id for archive_id in later}
    os.kill(mount.pid, signal.SIGHUP)
    wait_for(lambda: all(mount.job_file(j).exists() for j in live), "the new job")
    wait_for(lambda: classes(mount, paid) == {"custody"}, "the old jobs to expire")
    read_all(mount, live, data)  # served from memory: the cache keeps what it holds
    assert DiskSampler(cache / "v1" / "data").held() == 16 * MIB
    full = [line for line in mount.log().splitlines() if "full of outputs in custody" in line]
    assert len(full) == 1 and f"({16 * MIB} bytes" in full[0], mount.log()
    mount.stop()
    emulator.reset_counters()
    smaller = mount_factory(emulator.url, VAULT, {"cache_size": "8M"}, cache_dir=cache, name="b")
    wait_for(lambda: "more than cache_size" in smaller.log(), "the line about custody")
    read_all(smaller, paid, data)
    assert output_requests(emulator, paid) == 0
    over = [line for line in smaller.log().splitlines() if "WARNING" in line]
    assert len(over) == 1 and f"holds {16 * MIB} bytes in custody" in over[0], over
