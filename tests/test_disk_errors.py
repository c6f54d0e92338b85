"""Disks that refuse, answers that cannot be parsed, durations out of bounds: one line
and a non-zero exit.

Issue 20, items 9 and 10: a full disk (ENOSPC), a read-only filesystem (EROFS) and an
inventory output that cannot be parsed end every command in one line and a non-zero
exit, never a traceback; a filesystem that cannot punch holes (ramfs) is refused at
mount, as `cache_size` could not hold there; so are durations below their bounds. Real
filesystems, mounted for the test (tmpfs with a size, ramfs), real `retrieve` runs and
real mounts against the emulator.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from glacierfs.cache.disk import DiskCache
from tests.support.emulator import Emulator
from tests.support.mount import needs_fuse, unmount
from tests.support.retrieve import FLAGS, history, seed, take_inventory
from tests.support.users import one_line, run_glacierfs

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("mount") is None, reason="needs root to mount a tmpfs"
)

VAULT = "disks"
FILES = {"a/one.dat": 300_000, "a/two.dat": 200_000}
MIB = 1 << 20

Disk = Callable[..., Path]

FULL = ("No space left on device", "database or disk is full", "disk I/O error")
"""What the kernel and SQLite say of a full disk (SQLite: its WAL index cannot grow)."""


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Disk]:
    """``disk(kind, size)``: a filesystem of that kind mounted under ``tmp_path``
    (0700), unmounted at the end."""
    mounted: list[Path] = []

    def make(kind: str = "tmpfs", size: str = "4m", name: str = "disk") -> Path:
        path = tmp_path / name
        path.mkdir()
        options = f"mode=0700,size={size}" if kind == "tmpfs" else "mode=0700"
        subprocess.run(["mount", "-t", kind, "-o", options, kind, str(path)], check=True)
        mounted.append(path)
        return path

    yield make
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path: Path) -> None:
    """Write a file under ``path`` until its filesystem is full."""
    block = b"\0" * (64 << 10)
    with (path / "filler").open("wb", buffering=0) as out:
        try:
            while True:
                out.write(block)
        except OSError as error:
            assert error.errno == errno.ENOSPC
    with (path / "filler-small").open("wb", buffering=0) as out:  # the last pages too
        try:
            while True:
                out.write(b"\0" * 512)
        except OSError as error:
            assert error.errno == errno.ENOSPC


def read_only(path: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)


@pytest.fixture
def vault(emulator_factory: Callable[..., Emulator]) -> tuple[Emulator, str]:
    """Two archives and a completed inventory job (its id)."""
    emulator = emulator_factory(*FLAGS)
    seed(emulator, VAULT, FILES)
    return emulator, take_inventory(emulator, VAULT)


def retrieve(emulator: Emulator, cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    opts = f"endpoint_url={emulator.url},cache_dir={cache}"
    return run_glacierfs("retrieve", "-o", opts, VAULT, "--all", *args)


@pytest.mark.parametrize("when", ["before the first run", "after a run"])
def test_retrieve_on_a_full_disk_is_one_line(
    vault: tuple[Emulator, str], disk: Disk, when: str
) -> None:
    emulator, _ = vault
    cache = disk() / "cache"
    if when == "after a run":
        assert retrieve(emulator, cache, "--dry-run").returncode == 0
    fill(cache.parent)
    line = one_line(retrieve(emulator, cache, "--yes", "--follow"))
    assert str(cache) in line and any(said in line for said in FULL), line
    assert history(emulator) == []


def test_retrieve_on_a_read_only_filesystem_is_one_line(
    vault: tuple[Emulator, str], disk: Disk
) -> None:
    emulator, _ = vault
    place = disk()
    cache = place / "cache"
    cache.mkdir(mode=0o700)
    read_only(place)
    line = one_line(retrieve(emulator, cache, "--yes"))
    assert "Read-only file system" in line, line
    assert history(emulator) == []


def test_an_inventory_output_that_cannot_be_parsed_is_one_line(
    vault: tuple[Emulator, str], tmp_path: Path
) -> None:
    """No mount holds the cache, so retrieve reads the inventory job's output itself:
    bytes of the right length that are not an inventory."""
    emulator, job = vault
    emulator.client().describe_job(vaultName=VAULT, jobId=job)  # the clock ran: made now
    output = emulator.state_dir / "state" / "outputs" / job
    output.write_bytes(b"{not json" + b"!" * (output.stat().st_size - 9))
    line = one_line(retrieve(emulator, tmp_path / "cache", "--dry-run"))
    assert "inventory" in line, line


@needs_fuse
def test_a_mount_whose_cache_disk_fills_reads_from_the_network(
    vault: tuple[Emulator, str], disk: Disk, mount_factory: Any
) -> None:
    emulator, _ = vault
    place = disk(size="2m")
    client = emulator.client()
    data = os.urandom(3 * MIB + 5)
    archive = client.upload_archive(vaultName=VAULT, body=data)["archiveId"]
    params = {"Type": "archive-retrieval", "ArchiveId": archive}
    job = client.initiate_job(vaultName=VAULT, jobParameters=params)["jobId"]
    emulator.complete(job)
    mount = mount_factory(emulator.url, VAULT, {"cache_size": "64M"}, cache_dir=place / "cache")
    assert mount.job_file(job).read_bytes() == data
    assert mount.stop() == 0
    assert "unexpected error" not in mount.log(), mount.log()


@needs_fuse
@pytest.mark.parametrize("how", ["full", "full after use", "read-only"])
def test_a_mount_on_a_full_or_read_only_cache_disk_is_refused_in_one_line(
    vault: tuple[Emulator, str], disk: Disk, tmp_path: Path, how: str
) -> None:
    emulator, _ = vault
    place = disk()
    cache = place / "cache"
    cache.mkdir(mode=0o700)
    if how == "full after use":
        DiskCache(cache, MIB).close()
    if how.startswith("full"):
        fill(place)
    else:
        read_only(place)
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    result = run_glacierfs(
        VAULT, str(mountpoint), "-o", f"endpoint_url={emulator.url},cache_dir={cache}"
    )
    mounted = os.path.ismount(mountpoint)
    unmount(mountpoint)
    line = one_line(result)
    assert not mounted and str(cache) in line, line
    assert any(said in line for said in (*FULL, "Read-only file system")), line


def test_retrieve_whose_disk_fills_while_saving_ends_in_one_line_not_saved(
    emulator_factory: Callable[..., Emulator], disk: Disk
) -> None:
    """Outputs larger than the disk: read and verified, but not kept; not "saved"."""
    emulator = emulator_factory(*FLAGS)
    seed(emulator, VAULT, {"big/one.dat": 3 * MIB, "big/two.dat": 3 * MIB})
    take_inventory(emulator, VAULT)
    cache = disk(size="2m") / "cache"
    assert retrieve(emulator, cache, "--yes").returncode == 0
    for job in history(emulator):
        emulator.complete(job["JobId"])
    result = retrieve(emulator, cache, "--yes", "--follow")
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    last = result.stderr.splitlines()[-1]
    assert str(cache) in last and any(said in last for said in FULL), result.stderr
    assert "saved:" not in result.stderr


@needs_fuse
def test_a_cache_on_a_filesystem_that_cannot_punch_holes_is_refused_in_one_line(
    vault: tuple[Emulator, str], disk: Disk, tmp_path: Path
) -> None:
    """ramfs: evicted leaves would keep their bytes, and cache_size would not hold (26 MiB
    for cache_size=16M, issue 20). Refused at mount, and by retrieve, which saves into it."""
    emulator, _ = vault
    cache = disk("ramfs") / "cache"
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    options = f"endpoint_url={emulator.url},cache_dir={cache},cache_size=16M"
    result = run_glacierfs(VAULT, str(mountpoint), "-o", options)
    mounted = os.path.ismount(mountpoint)
    unmount(mountpoint)
    assert not mounted and "cannot punch holes" in one_line(result)
    assert "cannot punch holes" in one_line(retrieve(emulator, cache, "--dry-run"))


@pytest.mark.parametrize("option", ["timeout=1e-9", "refresh=1e-9", "names_wait=0"])
def test_durations_below_their_bounds_are_refused_in_one_line(
    vault: tuple[Emulator, str], tmp_path: Path, option: str
) -> None:
    """Issue 20, item 10: `timeout=1e-9` was accepted, and the mount missed files."""
    emulator, _ = vault
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    options = f"endpoint_url={emulator.url},cache_dir={tmp_path / 'cache'},{option}"
    line = one_line(run_glacierfs(VAULT, str(mountpoint), "-o", options))
    name = option.split("=")[0]
    assert f"option {name}: must be a number of seconds from" in line, line
    assert not os.path.ismount(mountpoint) and not (tmp_path / "cache").exists()
