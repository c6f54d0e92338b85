"""`glacierfs retrieve --follow` carries a vault out unattended, through the emulator's
clock: paced under the daily cap, every output saved and verified, expired outputs
requested again exactly once, a `kill -9` survived without paying twice, big archives in
aligned ranges, and the result read back through a real mount."""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.emulator import Emulator
from tests.support.mount import Mount, cmp, isolated_env, needs_fuse, wait_for
from tests.support.retrieve import (
    DAY,
    FLAGS,
    HOUR,
    MIB,
    Retrieve,
    advance,
    drive,
    history,
    seed,
    take_inventory,
)

VAULT = "carry-out"


def sizes_of(job: dict[str, Any], sizes: dict[str, int]) -> int:
    if job["RetrievalByteRange"]:
        start, end = (int(x) for x in job["RetrievalByteRange"].split("-"))
        return end - start + 1
    return sizes[job["ArchiveId"]]


def assert_never_requested_while_live(jobs: list[dict[str, Any]]) -> None:
    """No job of an archive (of an overlapping range) started while another was live."""
    by_archive: dict[str, list[dict[str, Any]]] = {}
    for job in jobs:
        by_archive.setdefault(job["ArchiveId"], []).append(job)
    for archive_id, started in by_archive.items():
        started.sort(key=lambda j: j["created"])
        for n, later in enumerate(started):
            for earlier in started[:n]:
                if earlier["RetrievalByteRange"] != later["RetrievalByteRange"]:
                    continue
                assert earlier["StatusCode"] == "Failed" or (
                    earlier["expired"] is not None and earlier["expired"] <= later["created"]
                ), f"archive {archive_id} requested again while job {earlier['JobId']} was live"


def assert_within_cap(jobs: list[dict[str, Any]], sizes: dict[str, int], cap: int) -> None:
    """In any 24 hours of the service's clock, at most ``cap`` bytes were requested."""
    for first in jobs:
        window = [j for j in jobs if first["created"] <= j["created"] < first["created"] + DAY]
        assert sum(sizes_of(j, sizes) for j in window) <= cap


def saved_files(tmp_path: Path, made: dict[str, tuple[str, bytes]]) -> dict[str, Path]:
    """Each archive's bytes in a file of its own, to cmp the mount's files with."""
    directory = tmp_path / "expected"
    directory.mkdir()
    files = {}
    for n, (path, (_, data)) in enumerate(made.items()):
        files[path] = directory / str(n)
        files[path].write_bytes(data)
    return files


def summary(follower: Retrieve) -> str:
    lines = [line for line in follower.output().splitlines() if line.startswith("done:")]
    assert lines, follower.output()
    return lines[-1]


def two_hundred() -> dict[str, int]:
    """200 files of mixed sizes: mostly small, a few of a few MiB (about 26 MiB)."""
    chance = random.Random(12)
    files = {
        f"photos/{2010 + n % 10}/img_{n:04d}.jpg": chance.randint(1, 80_000) for n in range(180)
    }
    files.update(
        {f"video/clip_{n:02d}.mp4": chance.randint(MIB, 2 * MIB + 500_000) for n in range(10)}
    )
    files.update({f"docs/{n:02d} notes.txt": chance.randint(1, 3000) for n in range(10)})
    return files


@needs_fuse
def test_200_archives_are_carried_out_under_the_cap_and_read_back_through_a_mount(
    emulator_factory: Callable[..., Emulator], mount_factory: Callable[..., Mount], tmp_path: Path
) -> None:
    emulator = emulator_factory(*FLAGS)
    made = seed(emulator, VAULT, two_hundred())
    take_inventory(emulator, VAULT)
    total = sum(len(data) for _, data in made.values())
    cap = 8 * MIB
    cache = tmp_path / "cache"
    follower = Retrieve(emulator, VAULT, cache, tmp_path / "follow.log")
    follower.start("--all", "--yes", "--follow", "--poll", "0.05", "--max-bytes-per-day", "8M")
    try:
        drive(emulator, follower)
    finally:
        follower.stop()
    assert follower.process is not None and follower.process.returncode == 0, follower.output()
    assert "done: 200 archives" in summary(follower)
    assert "200 saved, 200 verified" in summary(follower)
    assert "0 re-requested, 0 failed" in summary(follower)
    jobs = history(emulator)
    sizes = {archive_id: len(data) for archive_id, data in made.values()}
    assert sorted(j["ArchiveId"] for j in jobs) == sorted(sizes)  # each archive once
    assert_within_cap(jobs, sizes, cap)
    assert max(j["created"] for j in jobs) - min(j["created"] for j in jobs) >= (total // cap) * DAY

    again = Retrieve(emulator, VAULT, cache, tmp_path / "again.log").run("--all", "--yes")
    assert again.returncode == 0, again.stderr
    assert "200 wholly cached" in again.stdout
    assert "nothing to request: every selected archive is cached" in again.stdout
    assert len(history(emulator)) == len(jobs)

    mount = mount_factory(emulator.url, VAULT, cache_dir=cache)
    expected = saved_files(tmp_path, made)
    for path, file in expected.items():
        cmp(mount.path / "archives" / path, file)
    status = subprocess.run(
        [sys.executable, "-m", "glacierfs", "status", "--json", str(mount.path)],
        capture_output=True,
        text=True,
        env=isolated_env(),
        timeout=120,
    )
    files = json.loads(status.stdout)["files"]
    archive_files = [f for f in files if f["name"] and f["name"].startswith("archives/")]
    assert len(archive_files) == 200
    assert {f["verified"] for f in archive_files} == {"tree-hash"}


def test_outputs_that_expire_unsaved_are_requested_again_exactly_once(
    emulator_factory: Callable[..., Emulator], tmp_path: Path
) -> None:
    emulator = emulator_factory(*FLAGS)
    made = seed(emulator, VAULT, {"a.txt": 1000, "b/c.bin": 300_000, "d.jpg": 5})
    take_inventory(emulator, VAULT)
    follower = Retrieve(emulator, VAULT, tmp_path / "cache", tmp_path / "follow.log")
    follower.start("--all", "--yes", "--follow", "--poll", "0.05")
    try:
        wait_for(lambda: len(history(emulator)) == 3, "the first three jobs", alive=follower.alive)
        advance(emulator, 37 * HOUR)  # 12 h at most to complete, then 24 h: all gone unread
        drive(emulator, follower)
    finally:
        follower.stop()
    assert follower.process is not None and follower.process.returncode == 0, follower.output()
    jobs = history(emulator)
    per_archive = {
        archive_id: [j for j in jobs if j["ArchiveId"] == archive_id]
        for archive_id, _ in made.values()
    }
    assert {a: len(j) for a, j in per_archive.items()} == dict.fromkeys(per_archive, 2)
    assert_never_requested_while_live(jobs)
    assert follower.output().count("expired: ") == 3
    assert "3 saved, 3 verified" in summary(follower) and "3 re-requested" in summary(follower)


def test_kill_9_of_follow_half_way_then_a_restart_pays_for_nothing_twice(
    emulator_factory: Callable[..., Emulator], tmp_path: Path
) -> None:
    emulator = emulator_factory(*FLAGS)
    files = {f"set/{n:02d}.bin": 200_000 + n for n in range(24)}
    made = seed(emulator, VAULT, files)
    take_inventory(emulator, VAULT)
    cache = tmp_path / "cache"
    args = ("--all", "--yes", "--follow", "--poll", "0.05", "--max-bytes-per-day", "1M")
    first = Retrieve(emulator, VAULT, cache, tmp_path / "first.log")
    first.start(*args)
    try:
        drive(emulator, first, until=lambda: len(history(emulator)) >= 10)
        # Kill it inside a request: the service takes 3 s to answer the next InitiateJob,
        # and the kill comes once the run has written down its intent to send it.
        emulator.fault("latency", operation="InitiateJob", ms=3000, count=1)
        count = len(history(emulator))
        advance(emulator, DAY)
        state = cache / "retrieve" / "state.sqlite3"
        wait_for(lambda: intents(state) > 0, "an intent to request", alive=first.alive)
        assert first.process is not None
        first.process.kill()
        first.process.wait(timeout=30)
        wait_for(lambda: len(history(emulator)) > count, "the job the killed run started")
    finally:
        first.stop()
    second = Retrieve(emulator, VAULT, cache, tmp_path / "second.log")
    second.start(*args)
    try:
        drive(emulator, second)
    finally:
        second.stop()
    assert second.process is not None and second.process.returncode == 0, second.output()
    jobs = history(emulator)
    assert sorted(j["ArchiveId"] for j in jobs) == sorted(a for a, _ in made.values())
    assert_never_requested_while_live(jobs)
    assert "found, started before a stop" in second.output()
    assert "24 saved, 24 verified" in summary(second)


def intents(state: Path) -> int:
    if not state.exists():
        return 0
    db = sqlite3.connect(f"file:{state}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT COUNT(*) FROM intents").fetchone()[0])
    except sqlite3.Error:
        return 0
    finally:
        db.close()


@needs_fuse
def test_an_archive_larger_than_the_cap_comes_as_aligned_ranges_and_reads_back_whole(
    emulator_factory: Callable[..., Emulator], mount_factory: Callable[..., Mount], tmp_path: Path
) -> None:
    emulator = emulator_factory(*FLAGS)
    made = seed(emulator, VAULT, {"big/video.mp4": 9 * MIB + 5, "small.txt": 10})
    take_inventory(emulator, VAULT)
    cache = tmp_path / "cache"
    follower = Retrieve(emulator, VAULT, cache, tmp_path / "follow.log")
    follower.start("--all", "--yes", "--follow", "--poll", "0.05", "--max-bytes-per-day", "4M")
    try:
        drive(emulator, follower)
    finally:
        follower.stop()
    assert follower.process is not None and follower.process.returncode == 0, follower.output()
    big_id, data = made["big/video.mp4"]
    pieces = sorted(
        (j for j in history(emulator) if j["ArchiveId"] == big_id),
        key=lambda j: int(j["RetrievalByteRange"].split("-")[0]),
    )
    assert [j["RetrievalByteRange"] for j in pieces] == [
        f"0-{4 * MIB - 1}",
        f"{4 * MIB}-{8 * MIB - 1}",
        f"{8 * MIB}-{9 * MIB + 4}",
    ]
    mount = mount_factory(emulator.url, VAULT, cache_dir=cache)
    expected = tmp_path / "expected"
    expected.write_bytes(data)
    # The three range jobs make one file under the archive's name, read back whole.
    whole = mount.path / "archives" / "big" / "video.mp4"
    cmp(whole, expected)
    assert set(os.getxattr(whole, "user.glacier.jobs").split()) == {
        j["JobId"].encode() for j in pieces
    }
    assert os.getxattr(whole, "user.glacierfs.verified") == b"tree-hash"
    offset = 0
    for job in pieces:  # and each range, as its own job's file, is what it covers
        path = mount.path / "jobs" / job["JobId"]
        piece = path.read_bytes()
        assert piece == data[offset : offset + len(piece)]
        offset += len(piece)
        assert os.getxattr(path, "user.glacierfs.verified") == b"tree-hash"
    assert offset == len(data)


@needs_fuse
def test_follow_saves_through_a_mount_that_holds_the_cache(
    emulator_factory: Callable[..., Emulator], mount_factory: Callable[..., Mount], tmp_path: Path
) -> None:
    emulator = emulator_factory(*FLAGS)
    made = seed(emulator, VAULT, {"x/one.txt": 70_000, "x/two.txt": MIB + 3})
    take_inventory(emulator, VAULT)
    cache = tmp_path / "cache"
    mount = mount_factory(emulator.url, VAULT, cache_dir=cache)  # refreshes hourly: SIGHUP
    follower = Retrieve(emulator, VAULT, cache, tmp_path / "follow.log")
    follower.start("x/**", "--yes", "--follow", "--poll", "0.05")
    try:
        drive(emulator, follower)
    finally:
        follower.stop()
    assert follower.process is not None and follower.process.returncode == 0, follower.output()
    assert "2 saved, 2 verified" in summary(follower)
    expected = saved_files(tmp_path, made)
    for path, file in expected.items():
        cmp(mount.path / "archives" / path, file)
    assert mount.alive()


pytestmark = pytest.mark.timeout(300)


def test_a_cache_full_of_outputs_not_delivered_stops_the_requests_until_they_are(
    emulator_factory: Callable[..., Emulator], tmp_path: Path
) -> None:
    emulator = emulator_factory(*FLAGS)
    made = seed(emulator, VAULT, {"a": MIB + MIB // 2, "b": MIB + MIB // 2, "c": MIB + MIB // 2})
    take_inventory(emulator, VAULT)
    cache = tmp_path / "cache"
    follower = Retrieve(emulator, VAULT, cache, tmp_path / "follow.log")
    follower.options += ",cache_size=3200K"  # room for two of the three, and the inventory
    follower.start("--all", "--yes", "--follow", "--poll", "0.05", "--max-jobs", "1")
    try:
        drive(emulator, follower, until=lambda: "waiting: the cache" in follower.output())
        assert follower.alive(), follower.output()
    finally:
        follower.stop()
    assert len(history(emulator)) == 2  # the third would push a paid-for output out
    assert "the cache (3.1 MiB) is full of outputs not yet delivered" in follower.output()
    out = tmp_path / "out"
    second = Retrieve(emulator, VAULT, cache, tmp_path / "second.log")
    second.options += ",cache_size=3200K"
    second.start("--all", "--yes", "--follow", "--poll", "0.05", "--deliver-to", str(out))
    try:
        drive(emulator, second)
    finally:
        second.stop()
    assert second.process is not None and second.process.returncode == 0, second.output()
    assert "3 delivered" in summary(second), second.output()
    assert sorted(j["ArchiveId"] for j in history(emulator)) == sorted(a for a, _ in made.values())
    for path, (_, data) in made.items():
        assert (out / path).read_bytes() == data


def test_beside_a_running_follow_a_dry_run_plans_and_a_second_run_is_refused(
    emulator_factory: Callable[..., Emulator], tmp_path: Path
) -> None:
    emulator = emulator_factory(*FLAGS)
    seed(emulator, VAULT, {"a": 100, "b": 200})
    take_inventory(emulator, VAULT)
    cache = tmp_path / "cache"
    follower = Retrieve(emulator, VAULT, cache, tmp_path / "follow.log")
    follower.start("--all", "--yes", "--follow", "--poll", "0.05")
    try:
        wait_for(lambda: len(history(emulator)) == 2, "the jobs", alive=follower.alive)
        beside = Retrieve(emulator, VAULT, cache, tmp_path / "beside.log")
        plan = beside.run("--all", "--dry-run")
        assert plan.returncode == 0, plan.stderr
        assert "2 covered by jobs in progress" in plan.stdout
        second = beside.run("--all", "--yes")
        assert second.returncode == 1 and "another glacierfs retrieve" in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
        drive(emulator, follower)
    finally:
        follower.stop()
    assert follower.process is not None and follower.process.returncode == 0, follower.output()
    assert len(history(emulator)) == 2


def test_under_a_pipe_follow_writes_a_heartbeat_while_outputs_are_hours_away(
    emulator_factory: Callable[..., Emulator], tmp_path: Path
) -> None:
    """A journal sees the run alive while Bulk jobs take hours: status lines that say what
    is pending, when the first output is expected, what is saved and to go, and when the
    next request may be made."""
    emulator = emulator_factory(*FLAGS)
    seed(emulator, VAULT, {"a.txt": 1000, "b.bin": 300_000})
    take_inventory(emulator, VAULT)
    follower = Retrieve(emulator, VAULT, tmp_path / "cache", tmp_path / "follow.log")
    follower.start(
        "--all", "--yes", "--follow", "--poll", "0.05", "--heartbeat", "0.2", "--max-jobs", "1"
    )
    try:
        wait_for(
            lambda: follower.output().count("status: ") >= 4,
            "four heartbeat lines",
            alive=follower.alive,
        )
    finally:
        follower.stop()
    beats = [line for line in follower.output().splitlines() if "status: " in line]
    assert all(line.startswith("glacierfs retrieve: status: saved 0/2 archives") for line in beats)
    last = beats[-1]
    assert "1.3 KiB" not in last and "to go" in last and "1 archive pending" in last
    assert "first expected" in last and "next once an output is saved (--max-jobs)" in last
    assert "\r" not in follower.output() and "\033" not in follower.output()
