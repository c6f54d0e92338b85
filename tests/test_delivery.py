"""`retrieve --follow --deliver-to DIR | --deliver-exec CMD` carries a vault larger than the
cache through it: each archive requested once, saved, verified, delivered, and the cache
never above its size; the account's retrieval policy is read, paced within and, when it
refuses, reported in one line."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.support.delivery import BLOCK, DiskSampler, seeded_vault
from tests.support.emulator import Emulator
from tests.support.mount import Mount, cmp, isolated_env, needs_fuse
from tests.support.objectstore import ObjectStore
from tests.support.retrieve import DAY, FLAGS, MIB, Retrieve, drive, history, take_inventory

VAULT = "through-the-cache"

pytestmark = pytest.mark.timeout(300)


def follow(
    emulator: Emulator, tmp_path: Path, cache_size: str, *args: str
) -> tuple[Retrieve, DiskSampler]:
    """Run `retrieve --all --yes --follow ARGS` to its end with a cache of ``cache_size``,
    sampling the cache's disk use all along."""
    cache = tmp_path / "cache"
    follower = Retrieve(emulator, VAULT, cache, tmp_path / "follow.log")
    follower.options += f",cache_size={cache_size}"
    with DiskSampler(cache) as sampler:
        follower.start("--all", "--yes", "--follow", "--poll", "0.05", *args)
        try:
            drive(emulator, follower)
        finally:
            follower.stop()
    return follower, sampler


def sixteen(emulator: Emulator) -> dict[str, str]:
    made = seeded_vault(emulator, VAULT, {f"photos/{n:02d}.raw": 8 * MIB for n in range(16)})
    take_inventory(emulator, VAULT)
    return made


def assert_each_requested_once(emulator: Emulator, made: dict[str, str], total: int) -> None:
    """Each archive requested once, and its output downloaded once (no byte twice)."""
    jobs = history(emulator)
    counts = Counter(j["ArchiveId"] for j in jobs)
    assert counts == Counter(made.values()), counts
    served = emulator.counters()["jobs"]
    downloaded = sum(served.get(j["JobId"], {}).get("bytes", 0) for j in jobs)
    assert downloaded == total


def test_sixteen_archives_through_a_cache_of_four_are_delivered_to_a_directory(
    emulator_factory: Callable[..., Emulator], tmp_path: Path
) -> None:
    emulator = emulator_factory(*FLAGS)
    made = sixteen(emulator)
    out = tmp_path / "out"
    follower, sampler = follow(emulator, tmp_path, "64M", "--deliver-to", str(out))
    assert follower.process is not None and follower.process.returncode == 0, follower.output()
    assert "16 delivered" in follower.output()
    for path, archive_id in made.items():
        expected = emulator.save_content(VAULT, archive_id, tmp_path / "expected")
        cmp(out / path, expected)
    assert_each_requested_once(emulator, made, 16 * 8 * MIB)
    assert sampler.samples > 10 and sampler.high <= 64 * MIB, sampler.high
    assert "limited by the cache" in follower.output()


def test_sixteen_archives_through_a_cache_of_four_go_to_an_object_store_by_command(
    emulator_factory: Callable[..., Emulator], tmp_path: Path
) -> None:
    emulator = emulator_factory(*FLAGS)
    made = sixteen(emulator)
    with ObjectStore() as store:
        upload = [sys.executable, "-m", "tests.support.objectstore", f"{store.url}/bucket/{{}}"]
        follower, sampler = follow(emulator, tmp_path, "64M", "--deliver-exec", *upload)
        assert follower.process is not None
        assert follower.process.returncode == 0, follower.output()
        for path, archive_id in made.items():
            assert store.objects[f"bucket/{path}"] == emulator.content(VAULT, archive_id)
        assert set(store.puts.values()) == {1}
    assert_each_requested_once(emulator, made, 16 * 8 * MIB)
    assert sampler.samples > 10 and sampler.high <= 64 * MIB, sampler.high


def four_times_the_cache() -> dict[str, int]:
    """72 archives, 68 MiB, for a cache of 16 MiB: 68 small ones, three larger than a
    quarter of the cache, one larger than the whole cache."""
    chance = random.Random(21)
    sizes = {f"mail/{n:03d}.eml": chance.randint(200_000, 700_000) for n in range(68)}
    sizes.update({f"video/{n}.mp4": 5 * MIB + chance.randint(1, MIB) for n in range(3)})
    sizes["disk.img"] = 20 * MIB + 12_345
    return sizes


def assert_within(jobs: list[dict[str, Any]], sizes: dict[str, int], cap: int) -> None:
    """No 24 hours of the service's clock with more than ``cap`` bytes requested."""

    def nbytes(job: dict[str, Any]) -> int:
        if job["RetrievalByteRange"]:
            start, end = (int(x) for x in job["RetrievalByteRange"].split("-"))
            return end - start + 1
        return sizes[job["ArchiveId"]]

    for first in jobs:
        day = [j for j in jobs if first["created"] <= j["created"] < first["created"] + DAY]
        assert sum(nbytes(j) for j in day) <= cap


def grown(follower: Retrieve, lines: int) -> bool:
    return len(follower.output().splitlines()) >= lines


def test_a_vault_four_times_the_cache_is_delivered_whole_through_three_kill_9s(
    emulator_factory: Callable[..., Emulator], tmp_path: Path
) -> None:
    emulator = emulator_factory(*FLAGS)
    sizes = four_times_the_cache()
    made = seeded_vault(emulator, VAULT, sizes)
    take_inventory(emulator, VAULT)
    cache, out = tmp_path / "cache", tmp_path / "out"
    args = ("--all", "--yes", "--follow", "--poll", "0.05", "--max-bytes-per-day", "32M")
    args += ("--deliver-to", str(out))
    chance = random.Random(7)
    started = time.monotonic()
    with DiskSampler(cache) as sampler:
        for run in range(4):  # killed three times at random points, then to the end
            follower = Retrieve(emulator, VAULT, cache, tmp_path / f"run{run}.log")
            follower.options += ",cache_size=16M"
            follower.start(*args)
            try:
                if run < 3:
                    lines = len(follower.output().splitlines()) + chance.randint(5, 60)
                    drive(emulator, follower, until=partial(grown, follower, lines))
                    assert follower.alive(), follower.output()
                    assert follower.process is not None
                    follower.process.kill()
                    follower.process.wait(timeout=30)
                else:
                    drive(emulator, follower)
            finally:
                follower.stop()
    wall = time.monotonic() - started
    assert follower.process is not None and follower.process.returncode == 0, follower.output()
    assert "72 delivered" in follower.output() and ", 0 failed" in follower.output()
    for path, archive_id in made.items():
        expected = emulator.save_content(VAULT, archive_id, tmp_path / "expected")
        cmp(out / path, expected)
    jobs = history(emulator)
    asked = Counter((j["ArchiveId"], j["RetrievalByteRange"]) for j in jobs)
    assert set(asked.values()) == {1}, asked  # 0 requested twice
    big = [j for j in jobs if j["ArchiveId"] == made["disk.img"]]
    assert len(big) == 6 and all(j["RetrievalByteRange"] for j in big)  # 4 MiB range jobs
    assert_within(jobs, {made[p]: s for p, s in sizes.items()}, 32 * MIB)
    assert sampler.high_held <= 16 * MIB, sampler.high_held
    print(
        f"\n4x run: disk high-water {sampler.high} bytes allocated ({sampler.high_held} less a"
        f" block per file) of {16 * MIB} ({sampler.samples} samples), {len(jobs)} jobs for"
        f" {len(made)} archives, wall {wall:.1f} s"
    )


def test_deliver_carries_out_what_the_cache_holds_once_and_starts_nothing(
    emulator_factory: Callable[..., Emulator], tmp_path: Path
) -> None:
    emulator = emulator_factory(*FLAGS)
    made = seeded_vault(emulator, VAULT, {"a.txt": 1000, "d/b.bin": 2 * MIB + 3, "c": 0})
    take_inventory(emulator, VAULT)
    follower, _ = follow(emulator, tmp_path, "64M")
    assert follower.process is not None and follower.process.returncode == 0, follower.output()
    jobs = len(history(emulator))
    out = tmp_path / "out"

    def deliver(*args: str) -> subprocess.CompletedProcess[str]:
        options = follower.options
        argv = [sys.executable, "-m", "glacierfs", "deliver", "-o", options, VAULT, *args]
        return subprocess.run(argv, capture_output=True, text=True, env=isolated_env())

    failing = deliver("--exec", sys.executable, "-c", "import sys; sys.exit(5)")
    assert failing.returncode == 1 and "exited with status 5" in failing.stderr
    first = deliver(str(out))
    assert first.returncode == 0 and "delivered 3 archives" in first.stdout, first.stderr
    for path, archive_id in made.items():
        assert (out / path).read_bytes() == emulator.content(VAULT, archive_id)
    second = deliver(str(tmp_path / "elsewhere"))
    assert second.returncode == 0 and "delivered 0 archives" in second.stdout
    assert len(history(emulator)) == jobs  # nothing requested


def test_deliver_exec_refuses_an_archive_larger_than_the_cache_before_requesting(
    emulator_factory: Callable[..., Emulator], tmp_path: Path
) -> None:
    emulator = emulator_factory(*FLAGS)
    seeded_vault(emulator, VAULT, {"small": MIB, "disk.img": 20 * MIB + 1})
    take_inventory(emulator, VAULT)
    run = Retrieve(emulator, VAULT, tmp_path / "cache", tmp_path / "run.log")
    run.options += ",cache_size=16M"
    result = run.run("--all", "--yes", "--follow", "--deliver-exec", "cat")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "disk.img" in lines[0] and "cache_size=21M" in lines[0], lines
    assert history(emulator) == []


@needs_fuse
def test_beside_a_mount_that_holds_the_cache_archives_are_delivered_through_it(
    emulator_factory: Callable[..., Emulator], mount_factory: Callable[..., Mount], tmp_path: Path
) -> None:
    emulator = emulator_factory(*FLAGS)
    made = seeded_vault(emulator, VAULT, {f"docs/{n}.pdf": 2 * MIB + n for n in range(6)})
    take_inventory(emulator, VAULT)
    cache, out = tmp_path / "cache", tmp_path / "out"
    mount = mount_factory(emulator.url, VAULT, {"cache_size": "8M"}, cache_dir=cache)
    follower, sampler = follow(emulator, tmp_path, "8M", "--deliver-to", str(out))
    assert follower.process is not None and follower.process.returncode == 0, follower.output()
    assert "6 delivered" in follower.output()
    for path, archive_id in made.items():
        assert (out / path).read_bytes() == emulator.content(VAULT, archive_id)
    assert Counter(j["ArchiveId"] for j in history(emulator)) == Counter(made.values())
    assert sampler.high <= 8 * MIB + 6 * BLOCK, sampler.high
    assert mount.alive()
