"""Scenario 2: reading bytes already in the disk cache, beside the ceiling and rclone.

"Warm after a remount" is the first ``dd`` of a fresh mount whose cache holds the
whole output: the kernel's page cache of the mount is gone, the page cache of the
cache files is not (the same holds for rclone's cache files and the local file).
Beside glacierfs: the pyfuse3-from-memory ceiling (best of fresh mounts, as glacierfs
is counted here too), ``rclone mount --vfs-cache-mode full`` of the same bytes, cold
(empty VFS cache) and warm (after a remount), as shipped (the READ sizes it gets
counted: its FUSE layer keeps them at 128 KiB whatever the bdi read-ahead says), and a
local file.
"""

from __future__ import annotations

import os
import random
import shutil
import statistics
from collections.abc import Callable
from pathlib import Path

from tests.bench import peers
from tests.bench.harness import MIB, Bench, dd, fetched_bytes, timed

LABEL = "2 warm sequential after remount"
READ_AHEAD_KB = 1024
"""What glacierfs sets on its own mount (1 MiB READs); the ceiling gets the same."""


def _speed(size: int, path: Path) -> float:
    return size / timed(lambda: dd(path)) / 1e6


def _fresh_mounts(
    bench: Bench, size: int, make: Callable[[], peers.Served], kb: int | None = None
) -> list[float]:
    """MB/s of the first dd of each of ``bench.runs`` fresh mounts."""
    speeds = []
    for _ in range(bench.runs):
        with make().start(kb) as served:
            speeds.append(_speed(size, served.file))
    return speeds


def _glacierfs_remounted(bench: Bench, job: str, cache: Path, size: int) -> list[float]:
    speeds = []
    for _ in range(bench.runs):
        mount = bench.mount("loopback", cache)
        try:
            speeds.append(_speed(size, mount.job_file(job)))
            kb = peers.read_ahead(mount.path)
        finally:
            mount.stop()
    print(f"   (glacierfs mount: read_ahead_kb {kb})", flush=True)
    return speeds


def _ceiling(bench: Bench, plain: Path, size: int) -> list[float]:
    made: list[peers.Served] = []

    def make() -> peers.Served:
        made.append(peers.ceiling(plain, bench.fresh_dir("ceiling")))
        return made[-1]

    speeds = _fresh_mounts(bench, size, make, READ_AHEAD_KB)
    sizes = peers.ceiling_read_sizes(made[-1])
    bench.note("ceiling.read_sizes", sizes)
    print(f"   (ceiling: {peers.read_sizes_label(sizes)})", flush=True)
    return speeds


def warm_sequential(bench: Bench, size_mib: int) -> None:
    size = size_mib * MIB
    job = bench.job("loopback", size)
    cache = bench.root / "warm-cache"
    plain = bench.hydrate(job, cache, "warm")
    before = fetched_bytes(bench, "loopback", job)
    ours = _glacierfs_remounted(bench, job, cache, size)
    made = float(fetched_bytes(bench, "loopback", job) - before)
    local, _ = bench.median(lambda: _speed(size, plain))
    ceiling = _ceiling(bench, plain, size)
    bench.note("warm", ours)
    bench.note("ceiling", ceiling)
    median = statistics.median(ours)
    fresh = f"median of {bench.runs} fresh mounts"
    bench.row(
        LABEL,
        f"dd bs=1M, {fresh}",
        median,
        "MB/s",
        f"pyfuse3 ceiling, {fresh}",
        statistics.median(ceiling),
        ">= 0.8x",
    )
    bench.row(
        LABEL, "dd bs=1M (disk cache)", median, "MB/s", "dd of a local file", local, ">= 0.4x"
    )
    bench.row(LABEL, "requests made", made, "bytes", target="0")
    _rclone(bench, plain, size, median, local)
    _page_cache(bench, job, cache, size, local)
    random_reads(bench, job, cache, plain, size)
    shutil.rmtree(plain.parent)


def _rclone(bench: Bench, plain: Path, size: int, ours: float, local: float) -> None:
    if not peers.rclone_available():
        print("   rclone is not installed (make bench-deps): its rows are left out", flush=True)
        return
    try:
        _rclone_runs(bench, plain, size, ours, local)
    except AssertionError as error:
        print(f"   rclone did not mount, its rows are left out: {error}", flush=True)


def _rclone_runs(bench: Bench, plain: Path, size: int, ours: float, local: float) -> None:
    """One rclone baseline, as shipped (its READ sizes counted on a run of their own with
    ``--debug-fuse -vv``, which slows it: they are what the timed runs got too)."""
    cache = bench.fresh_dir("rclone-cache")
    cold = []
    for _ in range(bench.runs):
        shutil.rmtree(cache, ignore_errors=True)
        with peers.rclone(plain, bench.fresh_dir("rclone"), cache).start() as served:
            cold.append(_speed(size, served.file))

    def make() -> peers.Served:
        return peers.rclone(plain, bench.fresh_dir("rclone"), cache)

    warm = _fresh_mounts(bench, size, make)
    counting = peers.rclone(plain, bench.fresh_dir("rclone"), cache, "--debug-fuse", "-vv")
    with counting.start() as served:
        dd(served.file)
    sizes = peers.rclone_read_sizes(counting)
    shutil.rmtree(cache, ignore_errors=True)
    bench.note("rclone.cold", cold)
    bench.note("rclone.warm", warm)
    bench.note("rclone.read_sizes", sizes)
    counted = peers.read_sizes_label(sizes)
    bench.row(
        LABEL,
        "dd bs=1M (disk cache)",
        ours,
        "MB/s",
        f"rclone --vfs-cache-mode full, warm, as shipped ({counted})",
        statistics.median(warm),
    )
    bench.row(
        "2 rclone, empty VFS cache (local source)",
        "dd bs=1M",
        statistics.median(cold),
        "MB/s",
        "dd of a local file",
        local,
    )


def _page_cache(bench: Bench, job: str, cache: Path, size: int, local: float) -> None:
    mount = bench.mount("loopback", cache)
    try:
        dd(mount.job_file(job))
        again, _ = bench.median(lambda: _speed(size, mount.job_file(job)))
    finally:
        mount.stop()
    bench.row(
        "2 re-read while mounted",
        "dd bs=1M (page cache)",
        again,
        "MB/s",
        "dd of a local file",
        local,
        ">= 0.8x",
    )


def _preads(path: Path, size: int, block: int, count: int = 2000) -> float:
    rng = random.Random(42)
    offsets = [rng.randrange(0, size - block) for _ in range(count)]
    fd = os.open(path, os.O_RDONLY)
    try:
        seconds = timed(lambda: [os.pread(fd, block, offset) for offset in offsets])
    finally:
        os.close(fd)
    return count / seconds


def random_reads(bench: Bench, job: str, cache: Path, plain: Path, size: int) -> None:
    """Buffered preads in one mount (the kernel's page cache helps); fio's direct
    reads, after a remount, are scenario 8 (tests/bench/random4k.py)."""
    mount = bench.mount("loopback", cache)
    try:
        for block in (4096, 65536):
            ours, _ = bench.median(lambda b=block: _preads(mount.job_file(job), size, b))  # type: ignore[misc]
            local, _ = bench.median(lambda b=block: _preads(plain, size, b))  # type: ignore[misc]
            bench.row(
                "3 random reads, warm",
                f"{block // 1024} KiB preads",
                ours,
                "reads/s",
                "local file",
                local,
                "",
            )
    finally:
        mount.stop()
