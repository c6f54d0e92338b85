"""The read path through real mounts: exact bytes, verification, the cache, no byte twice.

Every check compares what the kernel hands a reader with what the emulator holds,
and counts what the emulator served: a cached read makes no request, a sequential
read fetches each byte once, and a flipped byte under a checksum is never served.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import random
import subprocess
import tarfile
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.support.emulator import Emulator
from tests.support.files import flip_byte
from tests.support.mount import Mount, cmp, needs_fuse
from tests.support.vault import inventory, job_output, retrieve, sample, upload

pytestmark = needs_fuse

MIB = 1 << 20
VAULT = "reads"


def read_xattr(path: Path, name: str) -> str:
    return os.getxattr(path, name).decode()


@pytest.fixture
def seeded(emulator: Emulator) -> Any:
    """Make a seeded archive and a full retrieval job of it: (archive, job)."""
    emulator.client().create_vault(vaultName=VAULT)

    def make(size: int, seed: int = 1, byte_range: str | None = None) -> tuple[str, str]:
        archive, _ = emulator.seeded_archive(VAULT, size, seed, "")
        return archive, retrieve(emulator.client(), VAULT, archive, byte_range)

    return make


SIZES = [0, 1, MIB - 1, MIB, MIB + 1, int(7.3 * MIB), 129 * MIB]


def test_outputs_of_every_awkward_size_read_back_exactly(
    emulator: Emulator, seeded: Any, mount_factory: Any, tmp_path: Path
) -> None:
    made = {size: seeded(size, seed=size + 1) for size in SIZES}
    mount: Mount = mount_factory(emulator.url, VAULT)
    for size, (archive, job) in made.items():
        path = mount.job_file(job)
        assert path.stat().st_size == size
        cmp(path, emulator.save_content(VAULT, archive, tmp_path / f"expected-{size}"))
        assert emulator.job_bytes(job) == size  # each byte fetched once
        if size:
            assert read_xattr(path, "user.glacierfs.verified") == "tree-hash"


@pytest.mark.parametrize(
    ("archive_size", "first", "last", "header"),
    [
        (20 * MIB, 4 * MIB, 8 * MIB - 1, True),  # tree-hash aligned
        (20 * MIB, MIB, 4 * MIB - 1, False),  # megabyte aligned only
        (10 * MIB + 12345, 8 * MIB, 10 * MIB + 12344, True),  # to the archive's end
        (10 * MIB + 12345, 3 * MIB, 10 * MIB + 12344, False),  # to the end, unaligned
    ],
)
def test_range_jobs_read_back_exactly(
    emulator: Emulator,
    seeded: Any,
    mount_factory: Any,
    tmp_path: Path,
    archive_size: int,
    first: int,
    last: int,
    header: bool,
) -> None:
    archive, job = seeded(archive_size, 3, f"{first}-{last}")
    described = emulator.client().describe_job(vaultName=VAULT, jobId=job)
    assert (described.get("SHA256TreeHash") is not None) == header
    mount: Mount = mount_factory(emulator.url, VAULT)
    expected = emulator.save_content(VAULT, archive, tmp_path / "expected", first, last + 1)
    cmp(mount.job_file(job), expected)
    verified = read_xattr(mount.job_file(job), "user.glacierfs.verified")
    assert verified == ("tree-hash" if header else "size")


@pytest.mark.parametrize("fmt", ["JSON", "CSV"])
def test_inventories_read_back_exactly(
    emulator: Emulator, seeded: Any, mount_factory: Any, fmt: str
) -> None:
    client = emulator.client()
    seeded(MIB, 5)
    upload(client, VAULT, b"x" * 100, 'a "quoted", described archive')
    job = inventory(client, VAULT, fmt)
    mount: Mount = mount_factory(emulator.url, VAULT)
    assert mount.job_file(job).read_bytes() == job_output(client, VAULT, job)


def test_random_reads_dd_tar_and_sha256sum_return_the_original_bytes(
    emulator: Emulator, mount_factory: Any, tmp_path: Path
) -> None:
    client = emulator.client()
    client.create_vault(vaultName=VAULT)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for number in range(40):
            member = sample(random.Random(number).randrange(1, 600_000), number)
            info = tarfile.TarInfo(f"dir{number % 4}/file{number}.bin")
            info.size = len(member)
            tar.addfile(info, io.BytesIO(member))
    data = buffer.getvalue()
    job = retrieve(client, VAULT, upload(client, VAULT, data, "backup.tar"))
    mount: Mount = mount_factory(emulator.url, VAULT)
    path = mount.job_file(job)
    listed = subprocess.run(["tar", "-tf", str(path)], capture_output=True, text=True, check=True)
    assert len(listed.stdout.split()) == 40
    chosen = random.Random(7)
    with path.open("rb") as stream:
        for _ in range(300):
            offset = chosen.randrange(len(data))
            size = chosen.choice([1, 17, 4096, 65536, 200_000, MIB + 3])
            assert os.pread(stream.fileno(), size, offset) == data[offset : offset + size]
    skipped = subprocess.run(
        ["dd", f"if={path}", "bs=4096", "skip=333", "count=5", "status=none"],
        capture_output=True,
        check=True,
    ).stdout
    assert skipped == data[333 * 4096 : 338 * 4096]
    summed = subprocess.run(["sha256sum", str(path)], capture_output=True, text=True, check=True)
    assert summed.stdout.split()[0] == hashlib.sha256(data).hexdigest()


def test_a_flipped_byte_under_a_checksum_is_refetched_never_served(
    emulator: Emulator, seeded: Any, mount_factory: Any, tmp_path: Path
) -> None:
    archive, job = seeded(8 * MIB, 9)
    expected = emulator.save_content(VAULT, archive, tmp_path / "expected")
    emulator.fault("flip", job=job, count=1, at=12345)
    mount: Mount = mount_factory(emulator.url, VAULT)
    cmp(mount.job_file(job), expected)
    assert emulator.admin("GET", "faults") == []  # the flip was served, and not believed
    assert "checksum" in mount.log().lower()


def test_a_persistent_flip_gives_eio_and_leaves_nothing_corrupt_in_the_cache(
    emulator: Emulator, seeded: Any, mount_factory: Any, tmp_path: Path
) -> None:
    archive, job = seeded(4 * MIB, 10)
    expected = emulator.save_content(VAULT, archive, tmp_path / "expected")
    emulator.fault("flip", job=job, at=100)
    mount: Mount = mount_factory(emulator.url, VAULT, {"retries": "2"})
    with mount.job_file(job).open("rb") as stream, pytest.raises(OSError) as raised:
        stream.read(MIB)
    assert raised.value.errno == errno.EIO
    emulator.clear_faults()
    cmp(mount.job_file(job), expected)  # nothing corrupt was kept; the next read is right
    mount.stop()
    again: Mount = mount_factory(emulator.url, VAULT, cache_dir=mount.cache_dir)
    before = emulator.output_totals()["requests"]
    cmp(again.job_file(job), expected)
    assert emulator.output_totals()["requests"] == before


def test_a_second_mount_and_an_expired_job_read_from_the_cache_with_no_request(
    emulator: Emulator, seeded: Any, mount_factory: Any, tmp_path: Path
) -> None:
    archive, job = seeded(12 * MIB + 7, 11)
    expected = emulator.save_content(VAULT, archive, tmp_path / "expected")
    first: Mount = mount_factory(emulator.url, VAULT)
    cmp(first.job_file(job), expected)
    assert read_xattr(first.job_file(job), "user.glacierfs.verified") == "tree-hash"
    first.stop()
    before = emulator.output_totals()["requests"]
    second: Mount = mount_factory(emulator.url, VAULT, cache_dir=first.cache_dir)
    cmp(second.job_file(job), expected)
    assert emulator.output_totals()["requests"] == before
    second.stop()
    emulator.expire(job)
    third: Mount = mount_factory(emulator.url, VAULT, cache_dir=first.cache_dir)
    cmp(third.job_file(job), expected)
    assert emulator.output_totals()["requests"] == before
    assert read_xattr(third.job_file(job), "user.glacierfs.verified") == "tree-hash"


def test_a_damaged_block_file_in_the_cache_is_detected_and_refetched(
    emulator: Emulator, seeded: Any, mount_factory: Any, tmp_path: Path
) -> None:
    archive, job = seeded(6 * MIB, 12)
    expected = emulator.save_content(VAULT, archive, tmp_path / "expected")
    first: Mount = mount_factory(emulator.url, VAULT)
    cmp(first.job_file(job), expected)
    first.stop()
    data_files = list((first.cache_dir / "v1" / "data").iterdir())
    assert len(data_files) == 1
    flip_byte(data_files[0], 3 * MIB + 99, 0x55)
    fetched = emulator.job_bytes(job)
    second: Mount = mount_factory(emulator.url, VAULT, cache_dir=first.cache_dir)
    cmp(second.job_file(job), expected)
    assert emulator.job_bytes(job) - fetched == MIB  # just the damaged leaf


def test_eight_concurrent_readers_fetch_each_block_once(
    emulator: Emulator, seeded: Any, mount_factory: Any
) -> None:
    archive, job = seeded(48 * MIB + 5, 13)
    digest = hashlib.sha256(emulator.content(VAULT, archive)).hexdigest()
    mount: Mount = mount_factory(emulator.url, VAULT)
    results: list[str] = []

    def reader() -> None:
        results.append(hashlib.sha256(mount.job_file(job).read_bytes()).hexdigest())

    threads = [threading.Thread(target=reader) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert results == [digest] * 8
    assert emulator.job_bytes(job) == 48 * MIB + 5
