"""The fault matrix: what glacierfs promises when the service, the link or the disk fail.

Each case mounts through the kernel against the emulator with one fault turned on,
and checks the promise in README's "When things go wrong" table: right bytes or a
clear error, never wrong bytes, never a dead daemon, nothing corrupt kept.
"""

from __future__ import annotations

import errno
import hashlib
import os
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from glacierfs.control import mount_stats
from tests.support.emulator import SECRET_KEY, Emulator
from tests.support.mount import Mount, cmp, isolated_env, needs_fuse, wait_for
from tests.support.vault import inventory, job_output, retrieve

pytestmark = needs_fuse

MIB = 1 << 20
VAULT = "faults"
RSS_BOUND = 100 * MIB
"""The daemon's peak resident set with 32 readers: README promises about 80 MiB."""


@pytest.fixture
def job(emulator: Emulator, tmp_path: Path) -> Any:
    """A seeded archive, a full retrieval of it, and its bytes in a file: (job, archive, path)."""
    emulator.client().create_vault(vaultName=VAULT)

    def make(size: int = 16 * MIB + 321, seed: int = 1) -> tuple[str, str, Path]:
        archive, _ = emulator.seeded_archive(VAULT, size, seed, "")
        expected = emulator.save_content(VAULT, archive, tmp_path / f"expected-{seed}")
        return retrieve(emulator.client(), VAULT, archive), archive, expected

    return make


@pytest.mark.parametrize("kind", ["throttle", "error500", "error503", "timeout408"])
def test_error_storms_on_a_share_of_requests_still_give_the_right_bytes(
    emulator: Emulator, job: Any, mount_factory: Any, kind: str
) -> None:
    job_id, _, expected = job()
    emulator.fault(kind, job=job_id, rate=0.4)
    mount: Mount = mount_factory(emulator.url, VAULT, {"max_request": "1M"})
    cmp(mount.job_file(job_id), expected)
    struck = [r for r in emulator.requests() if r.get("fault") == kind]
    assert struck, "the fault never struck"
    assert mount_stats(mount.path)["retries"] >= len(struck)
    warnings = [line for line in mount.log().splitlines() if "retrying" in line]
    assert len(warnings) <= len(struck)  # at most one line per failed request


@pytest.mark.parametrize("kind", ["reset", "short", "bad-content-range"])
def test_cut_or_misplaced_bodies_are_refetched_and_never_cached_short(
    emulator: Emulator, job: Any, mount_factory: Any, kind: str
) -> None:
    job_id, _, expected = job()
    emulator.fault(kind, job=job_id, count=3)
    mount: Mount = mount_factory(emulator.url, VAULT)
    cmp(mount.job_file(job_id), expected)
    assert emulator.admin("GET", "faults") == []
    mount.stop()
    before = emulator.job_requests(job_id)
    again: Mount = mount_factory(emulator.url, VAULT, cache_dir=mount.cache_dir)
    cmp(again.job_file(job_id), expected)
    assert emulator.job_requests(job_id) == before


def flips(emulator: Emulator, job_id: str) -> int:
    """Answers for this job that the emulator sent with a flipped byte."""
    return sum(
        r.get("job") == job_id and "flip" in r.get("faults", []) for r in emulator.requests()
    )


def differing(got: bytes, expected: bytes) -> list[int]:
    return [i for i, (a, b) in enumerate(zip(got, expected, strict=True)) if a != b]


def test_flipped_bytes_without_a_checksum_are_marked_unverified_and_refused_when_strict(
    emulator: Emulator, job: Any, mount_factory: Any, tmp_path: Path
) -> None:
    """A range that is not tree-hash aligned carries no checksum: the limit, documented.

    The flip goes through the mount (the byte is served: nothing can catch it), the file
    says so (``size``, not ``blocks``), and a strict mount refuses the bytes outright.
    """
    archive, _ = emulator.seeded_archive(VAULT, 8 * MIB, 5, "")
    ranged = retrieve(emulator.client(), VAULT, archive, f"{MIB}-{4 * MIB - 1}")
    expected = emulator.save_content(VAULT, archive, tmp_path / "expected", MIB, 4 * MIB)
    emulator.fault("flip", job=ranged, count=1, at=1000)
    mount: Mount = mount_factory(emulator.url, VAULT)
    got = mount.job_file(ranged).read_bytes()
    assert flips(emulator, ranged) == 1
    assert len(differing(got, expected.read_bytes())) == 1  # undetectable: served
    assert os.getxattr(mount.job_file(ranged), "user.glacierfs.verified") == b"size"
    emulator.fault("flip", job=ranged, count=1, at=1000)
    strict: Mount = mount_factory(emulator.url, VAULT, {"verify": "strict"})
    with strict.job_file(ranged).open("rb") as stream, pytest.raises(OSError) as raised:
        stream.read(MIB)
    assert raised.value.errno == errno.EACCES


def test_an_endpoint_that_goes_away_gives_eio_in_bounded_time_and_comes_back(
    emulator: Emulator, job: Any, mount_factory: Any
) -> None:
    job_id, _, expected = job(8 * MIB)
    mount: Mount = mount_factory(emulator.url, VAULT, {"timeout": "3", "read_ahead": "1M"})
    with mount.job_file(job_id).open("rb") as stream:
        first = stream.read(MIB)
    emulator.stop()
    with mount.job_file(job_id).open("rb") as stream:
        assert stream.read(MIB) == first  # cached: still served
        with pytest.raises(OSError) as raised:
            os.pread(stream.fileno(), MIB, 6 * MIB)
    assert raised.value.errno == errno.EIO
    assert mount.alive()
    assert sorted(os.listdir(mount.path / "jobs")) == [job_id]
    emulator.restart()
    cmp(mount.job_file(job_id), expected)


def test_a_job_that_expires_mid_read_serves_what_is_cached_and_says_what_to_do(
    emulator: Emulator, job: Any, mount_factory: Any
) -> None:
    job_id, archive, expected = job(8 * MIB)
    mount: Mount = mount_factory(emulator.url, VAULT, {"read_ahead": "1M"})
    data = expected.read_bytes()
    with mount.job_file(job_id).open("rb") as stream:
        assert stream.read(2 * MIB) == data[: 2 * MIB]
        emulator.expire(job_id)
        assert os.pread(stream.fileno(), MIB, 0) == data[:MIB]
        with pytest.raises(OSError) as raised:
            os.pread(stream.fileno(), MIB, 7 * MIB)
    assert raised.value.errno == errno.EIO
    expired = [line for line in mount.log().splitlines() if "expired" in line]
    assert len(expired) == 1 and job_id in expired[0] and "new retrieval" in expired[0]
    renewed = retrieve(emulator.client(), VAULT, archive)
    os.kill(mount.pid, signal.SIGHUP)
    wait_for(lambda: (mount.path / "jobs" / renewed).exists(), "the new job to appear")
    cmp(mount.job_file(renewed), expected)
    # its own bytes: what the expired job cached was its word only, the archive unproven
    assert emulator.job_bytes(renewed) == 8 * MIB
    assert os.getxattr(mount.job_file(renewed), "user.glacierfs.verified") == b"tree-hash"


def test_kill_9_with_reads_in_flight_leaves_a_cache_that_is_intact_or_dropped(
    emulator: Emulator, job: Any, mount_factory: Any
) -> None:
    jobs = [job(24 * MIB + seed, seed) for seed in (1, 2, 3)]
    emulator.fault("latency", ms=30)
    mount: Mount = mount_factory(emulator.url, VAULT)
    readers = [
        subprocess.Popen(["cat", str(mount.job_file(j))], stdout=subprocess.DEVNULL)
        for j, _, _ in jobs
    ]
    wait_for(lambda: mount_stats(mount.path)["bytes_fetched"] > 8 * MIB, "reads to be under way")
    mount.process.kill()  # type: ignore[union-attr]
    mount.process.wait()  # type: ignore[union-attr]
    for reader in readers:
        reader.wait(timeout=30)
    with pytest.raises(OSError) as raised:
        os.listdir(mount.path)
    assert raised.value.errno == errno.ENOTCONN
    subprocess.run(["fusermount3", "-u", str(mount.path)], check=True)  # the documented recovery
    emulator.clear_faults()
    again: Mount = mount_factory(emulator.url, VAULT, cache_dir=mount.cache_dir)
    for job_id, _, expected in jobs:
        cmp(again.job_file(job_id), expected)


def test_a_full_cache_disk_keeps_reads_working_and_resumes_when_space_returns(
    emulator: Emulator, job: Any, mount_factory: Any, tmp_path: Path
) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs")
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(small)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        first, _, expected_first = job(8 * MIB, 1)
        second, _, expected_second = job(3 * MIB, 2)
        cache = small / "cache"
        mount: Mount = mount_factory(emulator.url, VAULT, cache_dir=cache)
        filler = small / "filler"
        with filler.open("wb") as out, pytest.raises(OSError):
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        cmp(mount.job_file(first), expected_first)  # from the network, not cached
        full = [line for line in mount.log().splitlines() if "cache" in line.lower()]
        assert 1 <= len(full) <= 3
        filler.unlink()
        cmp(mount.job_file(second), expected_second)
        cached = os.getxattr(mount.job_file(second), "user.glacierfs.cached")
        assert int(cached) == 3 * MIB
        mount.stop()
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)


def test_bad_records_from_the_service_hide_one_job_and_never_crash(
    emulator: Emulator, job: Any, mount_factory: Any
) -> None:
    good, _, expected = job(2 * MIB, 1)
    bad, _, _ = job(2 * MIB, 2)
    absurd, _, _ = job(2 * MIB, 3)
    emulator.set_job(bad, SHA256TreeHash="not a tree hash", JobDescription=None)
    emulator.set_job(absurd, ArchiveSizeInBytes=-5)
    mount: Mount = mount_factory(emulator.url, VAULT)
    assert sorted(os.listdir(mount.path / "jobs")) == [good]
    cmp(mount.job_file(good), expected)
    emulator.fault("bad-json", operation="ListJobs", count=1)
    os.kill(mount.pid, signal.SIGHUP)
    wait_for(lambda: emulator.admin("GET", "faults") == [], "the refresh to meet the fault")
    assert mount.alive()
    assert sorted(os.listdir(mount.path / "jobs")) == [good]  # the last good listing stays


def test_inventory_output_with_flipped_bytes_is_documented_as_unverifiable(
    emulator: Emulator, job: Any, mount_factory: Any
) -> None:
    """An inventory's answer carries no checksum: a flipped byte in it is served, and the
    file says ``size``; a strict mount refuses its bytes."""
    job(MIB, 1)
    listing = inventory(emulator.client(), VAULT, "JSON")
    expected = job_output(emulator.client(), VAULT, listing)
    at = expected.index(b'"InventoryDate"') + 3  # a key's letter: the JSON stays JSON
    emulator.fault("flip", job=listing, count=1, at=at)
    mount: Mount = mount_factory(emulator.url, VAULT)
    got = mount.job_file(listing).read_bytes()
    assert flips(emulator, listing) == 1
    assert differing(got, expected) == [at]
    assert os.getxattr(mount.job_file(listing), "user.glacierfs.verified") == b"size"
    strict: Mount = mount_factory(emulator.url, VAULT, {"verify": "strict"})
    with strict.job_file(listing).open("rb") as stream, pytest.raises(OSError) as raised:
        stream.read()
    assert raised.value.errno == errno.EACCES


def test_thirty_two_readers_over_eight_files_get_every_byte_right_in_bounded_memory(
    emulator: Emulator, job: Any, mount_factory: Any
) -> None:
    files = [job(12 * MIB + seed * 1000, seed) for seed in range(1, 9)]
    digests = {j: hashlib.sha256(path.read_bytes()).hexdigest() for j, _, path in files}
    datas = {j: path.read_bytes() for j, _, path in files}
    mount: Mount = mount_factory(emulator.url, VAULT, {"memory_budget": "32M"})
    errors: list[str] = []

    def sequential(job_id: str) -> None:
        digest = hashlib.sha256(mount.job_file(job_id).read_bytes()).hexdigest()
        if digest != digests[job_id]:
            errors.append(f"{job_id}: wrong digest")

    def scattered(job_id: str, seed: int) -> None:
        chosen = random.Random(seed)
        data = datas[job_id]
        with mount.job_file(job_id).open("rb") as stream:
            for _ in range(60):
                offset, size = chosen.randrange(len(data)), chosen.choice([4096, 65536, MIB])
                if os.pread(stream.fileno(), size, offset) != data[offset : offset + size]:
                    errors.append(f"{job_id}: wrong bytes at {offset}")

    threads = []
    for number in range(32):
        job_id = files[number % 8][0]
        target = sequential if number % 2 else scattered
        args = (job_id,) if number % 2 else (job_id, number)
        threads.append(threading.Thread(target=target, args=args))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)
    assert not any(thread.is_alive() for thread in threads), "a reader hung"
    assert errors == []
    status = Path(f"/proc/{mount.pid}/status").read_text()
    peak = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM"))
    assert peak * 1024 < RSS_BOUND, f"peak RSS {peak // 1024} MiB"  # README: about 80 MiB


def test_no_credentials_or_signatures_reach_the_log_even_with_debug(
    emulator: Emulator, job: Any, mount_factory: Any
) -> None:
    job_id, _, expected = job(2 * MIB)
    mount: Mount = mount_factory(emulator.url, VAULT, {"debug": ""})
    cmp(mount.job_file(job_id), expected)
    mount.stop()
    log = mount.log()
    assert "read" in log.lower()  # -d did log the FUSE calls
    for secret in (SECRET_KEY, "Signature=", "Authorization", "AWS4-HMAC-SHA256"):
        assert secret not in log


def test_a_cache_directory_others_can_write_is_refused(
    emulator: Emulator, job: Any, tmp_path: Path
) -> None:
    job()
    cache = tmp_path / "shared-cache"
    cache.mkdir()
    os.chmod(cache, 0o777)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    options = f"endpoint_url={emulator.url},cache_dir={cache}"
    result = subprocess.run(
        [sys.executable, "-m", "glacierfs", VAULT, str(mnt), "-o", options],
        capture_output=True,
        text=True,
        env=isolated_env(),
        timeout=60,
    )
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1 and "cache" in result.stderr
    assert not os.path.ismount(mnt)
