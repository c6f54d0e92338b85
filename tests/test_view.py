"""What a mount shows is final when `mount` returns, and one archive is one file.

Real mounts through the kernel against the emulator: names learnt before the mount is
announced (so `mount && rsync` copies the user's tree, under a WAN shape), archives
assembled from range jobs read through the jobs that cover them with no byte fetched
twice, a job whose output fails its check not fetched again at every mount, and an
archive wholly cached kept under its path after its jobs expired.
"""

from __future__ import annotations

import base64
import calendar
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.emulator import Emulator
from tests.support.mount import Mount, cmp, isolated_env, needs_fuse, unmount, wait_for
from tests.support.vault import retrieve, sample, upload

pytestmark = needs_fuse

MIB = 1 << 20
VAULT = "view"
RSYNC = shutil.which("rsync")


def mt2(path: str, mtime: str) -> str:
    """A description as mt-aws-glacier writes it."""
    text = json.dumps({"filename": path, "mtime": mtime}).encode()
    return "mt2 " + base64.urlsafe_b64encode(text).decode().rstrip("=")


def fastglacier(path: str) -> str:
    """A description as FastGlacier 4 writes it."""
    encoded = base64.b64encode(path.encode()).decode()
    return f"<m><v>4</v><p>{encoded}</p><lm>20210115T093000Z</lm></m>"


def epoch(text: str) -> float:
    return float(calendar.timegm(time.strptime(text, "%Y%m%dT%H%M%SZ")))


def tree_of(root: Path) -> dict[str, bytes]:
    """Every file under ``root``, by relative path, with its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def xattr(path: Path, name: str) -> str:
    return os.getxattr(path, name).decode()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def background(tmp_path: Path) -> Iterator[Callable[[str, str, Path], Path]]:
    """Mount as a user does (``glacierfs VAULT MNT``: returns once announced); clean up."""
    started: list[tuple[Path, int]] = []

    def mount(endpoint: str, options: str, mnt: Path) -> Path:
        mnt.mkdir(parents=True)
        log = mnt.parent / f"{mnt.name}.log"
        opts = f"endpoint_url={endpoint},refresh=3600,log={log},{options}"
        result = subprocess.run(
            [sys.executable, "-m", "glacierfs", VAULT, str(mnt), "-o", opts],
            capture_output=True,
            text=True,
            env=isolated_env(),
            timeout=300,
        )
        if os.path.ismount(mnt):
            started.append((mnt, json.loads(os.getxattr(mnt, "user.glacierfs.stats"))["pid"]))
        assert result.returncode == 0, result.stderr + log.read_text()
        return mnt

    yield mount
    for mnt, pid in started:
        unmount(mnt)
        try:
            wait_for(lambda pid=pid: not _alive(pid), "the daemon to exit")  # type: ignore[misc]
        except AssertionError:
            os.kill(pid, signal.SIGKILL)  # a daemon this test started
            raise


# --- names are final when the mount returns ------------------------------------------


@pytest.fixture
def named_vault(emulator: Emulator) -> dict[str, bytes]:
    """30 archives whose paths are only in their descriptions (no inventory), a job each."""
    client = emulator.client()
    client.create_vault(vaultName=VAULT)
    expected: dict[str, bytes] = {}
    for n in range(30):
        if n % 2:
            path = f"photos/{2010 + n % 4}/img_{n:03}.jpg"
            description = mt2(path, f"2019070{n % 9 + 1}T120000Z")
        else:
            path = f"documents/batch {n % 3}/report-{n}.txt"
            description = fastglacier(path)
        data = sample(500 + 997 * n, n)
        retrieve(client, VAULT, upload(client, VAULT, data, description))
        expected[path] = data
    return expected


@pytest.mark.skipif(RSYNC is None, reason="needs rsync")
def test_mount_then_rsync_at_once_copies_the_named_tree_every_time_over_a_wan(
    emulator: Emulator, named_vault: dict[str, bytes], background: Any, tmp_path: Path
) -> None:
    emulator.fault("latency", ms=40)
    emulator.fault("bandwidth", bps=4 * MIB)
    for run in range(20):
        mnt = background(
            emulator.url, f"cache_dir={tmp_path / f'cache{run}'}", tmp_path / f"m{run}"
        )
        dest = tmp_path / f"dest{run}"
        copy = subprocess.run(
            [str(RSYNC), "-a", f"{mnt}/archives/", f"{dest}/"], capture_output=True, text=True
        )
        assert copy.returncode == 0, copy.stderr
        copied = tree_of(dest)
        assert sorted(copied) == sorted(named_vault), f"run {run}"
        assert copied == named_vault, f"run {run}"
        unmount(mnt)
    photo = dest / "photos" / "2011" / "img_001.jpg"
    assert photo.stat().st_mtime == epoch("20190702T120000Z")  # the tool's mtime, kept


def test_a_name_not_learnt_in_time_keeps_its_archive_out_of_archives_until_it_is_known(
    emulator: Emulator, mount_factory: Any
) -> None:
    client = emulator.client()
    client.create_vault(vaultName=VAULT)
    late = upload(client, VAULT, sample(2000, 3), "late/n.txt")
    job = retrieve(client, VAULT, late)
    emulator.fault("latency", operation="GetJobOutput", count=1, ms=5000)
    mount: Mount = mount_factory(emulator.url, VAULT, {"names_wait": "1"})
    assert os.listdir(mount.path / "jobs") == [job]
    assert os.listdir(mount.path / "archives") == []  # not under its ArchiveId
    assert "gave up after names_wait=1s" in mount.log()
    wait_for(lambda: tree_of(mount.path / "archives") == {"late/n.txt": sample(2000, 3)}, "name")
    newer = upload(client, VAULT, sample(3000, 4), "new/m.txt")
    added = retrieve(client, VAULT, newer)
    emulator.fault("latency", operation="GetJobOutput", count=1, ms=500)
    os.kill(mount.pid, signal.SIGHUP)  # refresh: the new job appears

    def shown() -> bool:
        names = os.listdir(mount.path / "archives")
        assert newer not in names and late not in names  # never under an ArchiveId
        return added in os.listdir(mount.path / "jobs") and "new" in names

    wait_for(shown, "the new archive under its name")
    assert tree_of(mount.path / "archives") == {
        "late/n.txt": sample(2000, 3),
        "new/m.txt": sample(3000, 4),
    }


# --- one archive, one file ----------------------------------------------------------


@pytest.fixture
def covered(emulator: Emulator, tmp_path: Path) -> dict[str, Any]:
    """Archive A read through three range jobs; B through a full job beside a range job."""
    emulator.client().create_vault(vaultName=VAULT)
    client = emulator.client()
    a, _ = emulator.seeded_archive(VAULT, 5 * MIB + 1000, 1, mt2("big/a.bin", "20200101T000000Z"))
    b, _ = emulator.seeded_archive(VAULT, 3 * MIB + 7, 2, mt2("big/b.bin", "20200101T000000Z"))
    ranges = [f"0-{2 * MIB - 1}", f"{2 * MIB}-{4 * MIB - 1}", f"{4 * MIB}-{5 * MIB + 999}"]
    return {
        "a": a,
        "b": b,
        "a_jobs": [retrieve(client, VAULT, a, r) for r in ranges],
        "b_full": retrieve(client, VAULT, b),
        "b_range": retrieve(client, VAULT, b, f"{MIB}-{2 * MIB - 1}"),
        "a_bytes": emulator.save_content(VAULT, a, tmp_path / "a"),
        "b_bytes": emulator.save_content(VAULT, b, tmp_path / "b"),
    }


def test_an_archive_covered_by_several_jobs_is_one_file_read_through_them_once(
    emulator: Emulator, covered: dict[str, Any], mount_factory: Any
) -> None:
    mount: Mount = mount_factory(emulator.url, VAULT)
    root = mount.path / "archives" / "big"
    assert sorted(os.listdir(mount.path / "archives")) == ["big"]
    assert sorted(os.listdir(root)) == ["a.bin", "b.bin"]  # no .range files
    a, b = root / "a.bin", root / "b.bin"
    assert sorted(xattr(a, "user.glacier.jobs").split()) == sorted(covered["a_jobs"])
    assert xattr(b, "user.glacier.jobs").split() == [covered["b_full"], covered["b_range"]]
    assert xattr(a, "user.glacierfs.state") == "partly-cached"  # the first leaf, with the name
    assert a.stat().st_size == 5 * MIB + 1000 and a.stat().st_ino != b.stat().st_ino
    cmp(a, covered["a_bytes"])
    cmp(b, covered["b_bytes"])
    data = covered["b_bytes"].read_bytes()
    assert mount.job_file(covered["b_range"]).read_bytes() == data[MIB : 2 * MIB]  # cached
    for path in (a, b):
        assert xattr(path, "user.glacierfs.state") == "cached"
        assert xattr(path, "user.glacierfs.verified") == "tree-hash"
    served = {job: emulator.job_bytes(job) for job in [*covered["a_jobs"], covered["b_full"]]}
    assert list(served.values()) == [2 * MIB, 2 * MIB, MIB + 1000, 3 * MIB + 7]
    assert emulator.job_bytes(covered["b_range"]) == 0
    assert emulator.output_totals()["bytes"] == 8 * MIB + 1007  # no byte fetched twice


# --- a job that fails its check ------------------------------------------------------


def test_a_job_that_fails_its_check_is_not_fetched_again_at_each_mount(
    emulator: Emulator, mount_factory: Any, tmp_path: Path
) -> None:
    client = emulator.client()
    client.create_vault(vaultName=VAULT)
    healthy = retrieve(client, VAULT, upload(client, VAULT, sample(3000, 1), "ok/h.txt"))
    damaged = retrieve(client, VAULT, upload(client, VAULT, sample(MIB + 5, 2), "bad/d.txt"))
    emulator.fault("flip", job=damaged)  # every answer for it has a byte flipped
    options = {"retries": "2"}
    first: Mount = mount_factory(emulator.url, VAULT, options)
    assert tree_of(first.path / "archives") == {"ok/h.txt": sample(3000, 1)}
    assert sorted(os.listdir(first.path / "jobs")) == sorted([healthy, damaged])
    status = subprocess.run(
        [sys.executable, "-m", "glacierfs", "status", "--json", str(first.path)],
        capture_output=True,
        text=True,
        env=isolated_env(),
        check=True,
    )
    files = {f["job_id"]: f for f in json.loads(status.stdout)["files"]}
    assert "fail their check" in files[damaged]["damaged"] and files[healthy]["damaged"] is None
    first.stop()
    for _ in range(2):
        before = emulator.job_requests(damaged)
        again: Mount = mount_factory(emulator.url, VAULT, options, cache_dir=first.cache_dir)
        assert os.listdir(again.path / "archives") == ["ok"]
        assert emulator.job_requests(damaged) == before  # not probed at mount
        with pytest.raises(OSError) as failed:
            again.job_file(damaged).read_bytes()
        assert failed.value.errno == errno.EIO
        assert emulator.job_requests(damaged) > before  # a read still asks
        table = subprocess.run(
            [sys.executable, "-m", "glacierfs", "status", str(again.path)],
            capture_output=True,
            text=True,
            env=isolated_env(),
            check=True,
        )
        assert f"damaged: {damaged}" in table.stdout
        again.stop()
    emulator.set_job(damaged, JobDescription="the service says something new")
    before = emulator.job_requests(damaged)
    changed: Mount = mount_factory(emulator.url, VAULT, options, cache_dir=first.cache_dir)
    assert emulator.job_requests(damaged) > before  # a new answer earns a new try
    assert changed.alive()


# --- an archive wholly cached outlives its jobs --------------------------------------


def test_an_archive_wholly_cached_stays_after_its_jobs_expired_and_reads_with_no_request(
    emulator: Emulator, mount_factory: Any, tmp_path: Path
) -> None:
    client = emulator.client()
    client.create_vault(vaultName=VAULT)
    kept, kept_hash = emulator.seeded_archive(VAULT, 3 * MIB + 5, 7)
    lost, lost_hash = emulator.seeded_archive(VAULT, 2 * MIB, 8)
    halves = (f"0-{2 * MIB - 1}", f"{2 * MIB}-{3 * MIB + 4}")
    jobs = [retrieve(client, VAULT, kept, r) for r in halves]
    jobs.append(retrieve(client, VAULT, lost))
    expected = emulator.save_content(VAULT, kept, tmp_path / "kept")
    inventory = tmp_path / "inventory.json"
    entries = [
        {
            "ArchiveId": archive,
            "ArchiveDescription": description,
            "CreationDate": "2026-01-01T00:00:00Z",
            "Size": size,
            "SHA256TreeHash": tree_hash,  # the service's word twice: else a mismatch
        }
        for archive, description, size, tree_hash in [
            (kept, "keep/k.bin", 3 * MIB + 5, kept_hash),
            (lost, "lose/l.bin", 2 * MIB, lost_hash),
        ]
    ]
    inventory.write_text(
        json.dumps({"InventoryDate": "2026-01-01T00:00:00Z", "ArchiveList": entries})
    )
    mount: Mount = mount_factory(emulator.url, VAULT, {"inventory": str(inventory)})
    path = mount.path / "archives" / "keep" / "k.bin"
    assert xattr(path, "user.glacierfs.state") == "remote"  # named by the inventory: no fetch
    cmp(path, expected)
    assert xattr(path, "user.glacierfs.state") == "cached"
    before = path.stat()
    mount.stop()
    for job in jobs:
        emulator.expire(job)
    assert emulator.client().list_jobs(vaultName=VAULT)["JobList"] == []
    emulator.reset_counters()
    again: Mount = mount_factory(emulator.url, VAULT, cache_dir=mount.cache_dir)
    path = again.path / "archives" / "keep" / "k.bin"
    after = path.stat()
    assert (after.st_ino, after.st_size, after.st_mtime) == (
        before.st_ino,
        before.st_size,
        before.st_mtime,
    )
    assert sorted(tree_of(again.path / "archives")) == ["keep/k.bin"]  # the other is gone
    cmp(path, expected)
    assert xattr(path, "user.glacierfs.state") == "cached"
    assert emulator.output_totals()["requests"] == 0
    assert all(emulator.job_requests(job) == 0 for job in jobs)
