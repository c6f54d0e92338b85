"""Custody through a real mount (issue 21, case 1): outputs paid for whose jobs expired
stay in a small cache while live ones are read through it, and cache_size holds."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.emulator import Emulator
from tests.support.mount import Mount, needs_fuse, wait_for
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
