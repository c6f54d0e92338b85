"""Random reads of a cached output, through a real mount, cost what they ask for.

A warm 4 KiB read reads from the cache's data file the granule it touches (64 KiB, to
check its XXH3 sum) the first time, and only its 4 KiB after: never the whole 1 MiB
leaf. The daemon counts the bytes it reads from its data files (``disk_bytes_read`` in
the root's stats xattr); these tests read that count through the mount.
"""

from __future__ import annotations

import json
import mmap
import os
import random
from pathlib import Path
from typing import Any

from tests.support.emulator import Emulator
from tests.support.files import flip_byte
from tests.support.mount import Mount, cmp, needs_fuse, wait_for
from tests.support.vault import retrieve

pytestmark = needs_fuse

KIB, MIB = 1 << 10, 1 << 20
GRANULE = 64 * KIB
VAULT = "random"
READS = 100


def disk_bytes_read(mount: Mount) -> int:
    stats = json.loads(os.getxattr(mount.path, "user.glacierfs.stats"))
    return int(stats["disk_bytes_read"])


def scattered_offsets(size: int, count: int, seed: int) -> list[int]:
    """4 KiB-aligned offsets, each more than 2 MiB from where the last read ended, so
    that no two reads look sequential to the daemon's read-ahead."""
    rng, offsets = random.Random(seed), []
    while len(offsets) < count:
        offset = rng.randrange(0, size // (4 * KIB)) * 4 * KIB
        if not offsets or abs(offset - (offsets[-1] + 4 * KIB)) > 2 * MIB + 4 * KIB:
            offsets.append(offset)
    return offsets


def read_direct(path: Path, offsets: list[int]) -> list[bytes]:
    """4 KiB at each offset with O_DIRECT, so that each is one FUSE read of 4 KiB."""
    buffer = mmap.mmap(-1, 4 * KIB)  # page-aligned, as O_DIRECT needs
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    try:
        found = []
        for offset in offsets:
            assert os.preadv(fd, [buffer], offset) == 4 * KIB
            found.append(bytes(buffer))
        return found
    finally:
        os.close(fd)
        buffer.close()


def refetched(emulator: Emulator, job: str, before: int) -> None:
    """The damaged leaf was fetched again, and only it. The emulator counts a response
    once it is written, maybe after the daemon has it: wait for the count first."""
    wait_for(lambda: emulator.job_bytes(job) - before >= MIB, "the damaged leaf fetched")
    assert emulator.job_bytes(job) - before == MIB


def hydrated(emulator: Emulator, mount_factory: Any, tmp_path: Path, size: int) -> Any:
    """A job of a seeded archive of ``size`` bytes, read whole through a first mount
    (so cached), that mount stopped: (job, expected file, cache dir)."""
    emulator.client().create_vault(vaultName=VAULT)
    archive, _ = emulator.seeded_archive(VAULT, size, 7, "")
    job = retrieve(emulator.client(), VAULT, archive)
    expected = emulator.save_content(VAULT, archive, tmp_path / "expected")
    first: Mount = mount_factory(emulator.url, VAULT)
    cmp(first.job_file(job), expected)
    first.stop()
    return job, expected, first.cache_dir


def test_warm_random_4k_reads_read_a_granule_each_from_disk_not_a_leaf(
    emulator: Emulator, mount_factory: Any, tmp_path: Path
) -> None:
    size = 64 * MIB
    job, expected, cache_dir = hydrated(emulator, mount_factory, tmp_path, size)
    fetched = emulator.output_totals()["bytes"]
    second: Mount = mount_factory(emulator.url, VAULT, cache_dir=cache_dir)
    offsets = scattered_offsets(size, READS, seed=3)
    before = disk_bytes_read(second)
    found = read_direct(second.job_file(job), offsets)
    read = disk_bytes_read(second) - before
    with expected.open("rb") as original:
        for offset, data in zip(offsets, found, strict=True):
            original.seek(offset)
            assert data == original.read(4 * KIB), f"4 KiB at {offset}"
    assert emulator.output_totals()["bytes"] == fetched  # all from the cache
    assert 0 < read <= READS * GRANULE + MIB  # a whole leaf each would be 100 MiB
    again = disk_bytes_read(second)
    assert read_direct(second.job_file(job), offsets) == found
    assert disk_bytes_read(second) - again <= READS * 4 * KIB + MIB  # checked: just the bytes


def test_a_damaged_granule_is_never_served_by_a_random_read(
    emulator: Emulator, mount_factory: Any, tmp_path: Path
) -> None:
    job, expected, cache_dir = hydrated(emulator, mount_factory, tmp_path, 8 * MIB)
    (data_file,) = (cache_dir / "v1" / "data").iterdir()
    at = 5 * MIB + 3 * GRANULE + 123
    flip_byte(data_file, at, 0x01)
    fetched = emulator.job_bytes(job)
    second: Mount = mount_factory(emulator.url, VAULT, cache_dir=cache_dir)
    offset = at - at % (4 * KIB)
    (found,) = read_direct(second.job_file(job), [offset])
    with expected.open("rb") as original:
        original.seek(offset)
        assert found == original.read(4 * KIB)
    refetched(emulator, job, fetched)
    cmp(second.job_file(job), expected)


def stats(mount: Mount) -> dict[str, Any]:
    return dict(json.loads(os.getxattr(mount.path, "user.glacierfs.stats")))


def bdi_read_ahead_kb(mount: Mount) -> int:
    device = os.stat(mount.path).st_dev
    bdi = Path(f"/sys/class/bdi/{os.major(device)}:{os.minor(device)}/read_ahead_kb")
    return int(bdi.read_text())


def test_a_hydrated_file_reads_back_after_a_remount_each_byte_read_from_disk_once(
    emulator: Emulator, mount_factory: Any, tmp_path: Path
) -> None:
    size = 24 * MIB + 12345
    job, expected, cache_dir = hydrated(emulator, mount_factory, tmp_path, size)
    fetched = emulator.output_totals()["bytes"]
    second: Mount = mount_factory(emulator.url, VAULT, cache_dir=cache_dir)
    before = stats(second)
    cmp(second.job_file(job), expected)
    after = stats(second)
    assert emulator.output_totals()["bytes"] == fetched  # all from the cache
    # Each byte once, granules checked in place: no whole leaf loaded ahead, none twice.
    assert size <= after["disk_bytes_read"] - before["disk_bytes_read"] <= size + GRANULE
    assert after["disk_reads_inline"] + after["disk_reads_threaded"] > 0
    if os.geteuid() == 0:  # the daemon asks for 1 MiB READs where it may
        wait_for(lambda: bdi_read_ahead_kb(second) == 1024, "read_ahead_kb raised")


def test_a_damaged_granule_is_never_served_by_a_sequential_read(
    emulator: Emulator, mount_factory: Any, tmp_path: Path
) -> None:
    job, expected, cache_dir = hydrated(emulator, mount_factory, tmp_path, 8 * MIB)
    (data_file,) = (cache_dir / "v1" / "data").iterdir()
    at = 3 * MIB + 9 * GRANULE + 7
    flip_byte(data_file, at, 0x80)
    fetched = emulator.job_bytes(job)
    second: Mount = mount_factory(emulator.url, VAULT, cache_dir=cache_dir)
    cmp(second.job_file(job), expected)
    refetched(emulator, job, fetched)
    assert "leaf 3 of" in second.log() and "damaged on disk" in second.log()
