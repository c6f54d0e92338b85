"""Responses streamed into the disk cache, through real mounts and real HTTP: a response
is committed whole once its tree hash matches, or leaves nothing behind, whatever stops
it (a kill -9 half way, a flipped or cut body)."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.emulator import Emulator
from tests.support.files import has_data
from tests.support.mount import Mount, cmp, needs_fuse, wait_for
from tests.support.vault import retrieve

pytestmark = needs_fuse

MIB = 1 << 20
VAULT = "stream"
BLOCK = 16 * MIB  # one random read fetches its whole aligned 16 MiB block in one request
OPTIONS = {"block_size": "16M", "max_request": "16M", "retries": "1"}


@pytest.fixture
def archive(emulator: Emulator, tmp_path: Path) -> tuple[str, Path]:
    """A 32 MiB + 321 bytes archive retrieved whole: (job id, its bytes in a file)."""
    emulator.client().create_vault(vaultName=VAULT)
    archive_id, _ = emulator.seeded_archive(VAULT, 2 * BLOCK + 321, 7, "")
    expected = emulator.save_content(VAULT, archive_id, tmp_path / "expected")
    return retrieve(emulator.client(), VAULT, archive_id), expected


def data_file(cache_dir: Path) -> Path:
    files = list((cache_dir / "v1" / "data").iterdir())
    assert len(files) == 1, files
    return files[0]


def read_at(path: Path, offset: int, size: int = 4096) -> bytes:
    with path.open("rb") as stream:
        return os.pread(stream.fileno(), size, offset)


def ranges(emulator: Emulator) -> list[str]:
    """The ranges of the Get Job Output answers the emulator counted, in order."""
    return [r["range"] for r in emulator.requests() if r.get("operation") == "GetJobOutput"]


def cached(path: Path) -> int:
    return int(os.getxattr(path, "user.glacierfs.cached"))


def test_a_kill_9_half_way_through_a_streamed_response_leaves_its_leaves_absent(
    emulator: Emulator, archive: tuple[str, Path], mount_factory: Any
) -> None:
    job_id, expected = archive
    content = expected.read_bytes()
    mount: Mount = mount_factory(emulator.url, VAULT, OPTIONS)
    target = mount.job_file(job_id)
    assert read_at(target, 0) == content[:4096]  # leaves 0-15, committed
    assert read_at(target, 2 * BLOCK) == content[2 * BLOCK : 2 * BLOCK + 4096]  # leaf 32
    assert cached(target) == BLOCK + 321
    data = data_file(mount.cache_dir)
    assert not has_data(data, BLOCK, 2 * BLOCK)

    emulator.fault("bandwidth", job=job_id, bps=MIB // 2)  # 32 s for the middle block
    reader = subprocess.Popen(
        ["dd", f"if={target}", "bs=4096", f"skip={BLOCK // 4096}", "count=1", "of=/dev/null"],
        stderr=subprocess.DEVNULL,
    )
    try:
        # written, unverified: the first leaves of the response are in the file
        wait_for(lambda: has_data(data, BLOCK + 2 * MIB, 2 * BLOCK), "a response half written")
        assert has_data(data, BLOCK, BLOCK + MIB)
        os.kill(mount.pid, signal.SIGKILL)
        mount.process.wait()  # type: ignore[union-attr]
    finally:
        reader.wait(timeout=60)
    subprocess.run(["fusermount3", "-u", str(mount.path)], check=True)
    emulator.clear_faults()
    middle = f"{BLOCK}-{2 * BLOCK - 1}"
    wait_for(
        lambda: ranges(emulator) == [f"0-{BLOCK - 1}", f"{2 * BLOCK}-{2 * BLOCK + 320}", middle],
        "the emulator to count the cut response",
    )
    emulator.reset_counters()

    again: Mount = mount_factory(emulator.url, VAULT, OPTIONS, cache_dir=mount.cache_dir)
    target = again.job_file(job_id)
    assert cached(target) == BLOCK + 321  # no row of the cut response; the others whole
    assert not has_data(data, BLOCK, 2 * BLOCK)  # and its bytes punched out
    assert has_data(data, 0, MIB) and has_data(data, 2 * BLOCK, 2 * BLOCK + 1)
    cmp(target, expected)
    for asked in ranges(emulator):  # only the cut response's leaves again, each once
        first, last = map(int, asked.split("-"))
        assert BLOCK <= first <= last < 2 * BLOCK, asked
    assert emulator.job_bytes(job_id) == BLOCK
    assert cached(target) == 2 * BLOCK + 321


@pytest.mark.parametrize("kind", ["flip", "short"])
@pytest.mark.expected_logs(
    r"checksum mismatch|received \d+ of \d+ bytes|connection failed|retrying|giving up"
)
def test_a_bad_body_under_a_checksum_is_never_committed_nor_served(
    emulator: Emulator, archive: tuple[str, Path], mount_factory: Any, kind: str
) -> None:
    job_id, expected = archive
    content = expected.read_bytes()
    emulator.fault(kind, job=job_id, at=5 * MIB + 17)  # every response, after 5 leaves
    mount: Mount = mount_factory(emulator.url, VAULT, OPTIONS)
    target = mount.job_file(job_id)
    with pytest.raises(OSError) as raised:
        read_at(target, BLOCK)
    assert raised.value.errno == errno.EIO
    assert cached(target) == 0
    data_dir = mount.cache_dir / "v1" / "data"

    def punched() -> bool:  # read-ahead requests may still be failing: each punches its bytes
        return not any(has_data(path, 0, 3 * BLOCK) for path in data_dir.iterdir())

    wait_for(punched, "the bad responses' bytes to be punched out (deleted, or holes)")
    assert cached(target) == 0
    emulator.clear_faults()
    assert read_at(target, BLOCK, MIB) == content[BLOCK : BLOCK + MIB]
    assert cached(target) in (BLOCK, BLOCK + 321)  # the kernel's readahead may reach the tail
    mount.stop()
    again: Mount = mount_factory(emulator.url, VAULT, OPTIONS, cache_dir=mount.cache_dir)
    cmp(again.job_file(job_id), expected)
