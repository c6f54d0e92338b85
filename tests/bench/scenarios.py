"""The scenarios of `make bench`, each beside its baselines."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

from glacierfs.treehash import combine
from tests.bench.harness import MIB, VAULT, Bench, dd, peak_rss, timed
from tests.bench.inventory import inventory_scale


def botocore_stream(bench: Bench, shape: str, job: str) -> None:
    """The best a single botocore stream does: GET everything, tree-hash as it reads."""
    client = bench.emulator(shape).client()
    body = client.get_job_output(vaultName=VAULT, jobId=job)["body"]
    digests = []
    while chunk := body.read(MIB):
        digests.append(hashlib.sha256(chunk).digest())
    combine(digests)


def fetched_bytes(bench: Bench, shape: str, job: str) -> int:
    counters = bench.emulator(shape).counters()
    return int(counters.get("jobs", {}).get(job, {}).get("bytes", 0))


def cold_sequential(bench: Bench, size_mib: int) -> None:
    for shape in ("loopback", "wan"):
        _cold_sequential(bench, size_mib, shape)


def _cold_sequential(bench: Bench, size_mib: int, shape: str) -> None:
    size = size_mib * MIB
    job = bench.job(shape, size)
    amplification: list[float] = []

    def glacierfs_cold() -> float:
        cache = bench.root / f"cold-{shape}-{os.urandom(4).hex()}"
        before = fetched_bytes(bench, shape, job)  # before the mount: it may name the job
        mount = bench.mount(shape, cache)
        try:
            seconds = timed(lambda: dd(mount.job_file(job)))
        finally:
            mount.stop()
            amplification.append((fetched_bytes(bench, shape, job) - before) / size)
            shutil.rmtree(cache, ignore_errors=True)
        return size / seconds / 1e6

    ours, _ = bench.median(glacierfs_cold)
    out = bench.root / "cli-output"
    cli, _ = bench.median(lambda: size / timed(lambda: bench.aws_cli(shape, job, out)) / 1e6)
    target = ">= 8x" if shape == "wan" else ">= 1.5x"
    bench.row(
        f"1 cold sequential {size_mib} MiB ({shape})",
        "dd bs=1M",
        ours,
        "MB/s",
        "aws glacier get-job-output",
        cli,
        target,
    )
    if shape == "loopback":
        stream, _ = bench.median(
            lambda: size / timed(lambda: botocore_stream(bench, shape, job)) / 1e6
        )
        bench.row(
            f"1 cold sequential {size_mib} MiB ({shape})",
            "dd bs=1M",
            ours,
            "MB/s",
            "botocore stream + tree hash",
            stream,
            ">= 0.5x",
        )
    bench.row(
        f"5 amplification ({shape})",
        "bytes fetched / bytes read",
        max(amplification),
        "x",
        target="1.00",
    )


def warm_sequential(bench: Bench, size_mib: int) -> None:
    size = size_mib * MIB
    job = bench.job("loopback", size)
    cache = bench.root / "warm-cache"
    plain = bench.root / "plain-copy"
    mount = bench.mount("loopback", cache)
    shutil.copyfile(mount.job_file(job), plain)
    mount.stop()
    before = fetched_bytes(bench, "loopback", job)

    def remounted() -> float:
        fresh = bench.mount("loopback", cache)
        try:
            return size / timed(lambda: dd(fresh.job_file(job))) / 1e6
        finally:
            fresh.stop()

    ours, _ = bench.median(remounted)
    local, _ = bench.median(lambda: size / timed(lambda: dd(plain)) / 1e6)
    bench.row(
        "2 warm sequential after remount",
        "dd bs=1M (disk cache)",
        ours,
        "MB/s",
        "dd of a local file",
        local,
        ">= 0.4x",
    )
    bench.row(
        "2 warm sequential after remount",
        "requests made",
        float(fetched_bytes(bench, "loopback", job) - before),
        "bytes",
        target="0",
    )
    mount = bench.mount("loopback", cache)
    try:
        dd(mount.job_file(job))
        again, _ = bench.median(lambda: size / timed(lambda: dd(mount.job_file(job))) / 1e6)
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
    random_reads(bench, job, cache, plain, size)
    plain.unlink()


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


def cold_random_wan(bench: Bench, size_mib: int) -> None:
    size = size_mib * MIB
    job = bench.job("wan", size)
    cache = bench.root / "cold-random"
    before = fetched_bytes(bench, "wan", job)  # counts the first leaf the mount reads for the name
    mount = bench.mount("wan", cache)
    rng = random.Random(7)
    offsets = [rng.randrange(0, size - 4096) for _ in range(200)]
    try:
        fd = os.open(mount.job_file(job), os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
        seconds = timed(lambda: [os.pread(fd, 4096, o) for o in offsets])
        os.close(fd)
    finally:
        mount.stop()
    blocks = len({o // MIB for o in offsets} | {(o + 4095) // MIB for o in offsets})
    fetched = fetched_bytes(bench, "wan", job) - before
    bench.row("3 cold random 4 KiB (wan)", "reads/s", 200 / seconds, "reads/s")
    bench.row(
        "3 cold random 4 KiB (wan)",
        "bytes fetched / (blocks touched x 1 MiB)",
        fetched / (blocks * MIB),
        "x",
        target="<= 1.1",
    )


def concurrent_wan(bench: Bench, size_mib: int) -> None:
    size = 256 * MIB
    jobs = [bench.job("wan", size, seed) for seed in (11, 12, 13, 14)]
    cache = bench.root / "concurrent"
    mount = bench.mount("wan", cache)
    try:
        threads = [threading.Thread(target=dd, args=(mount.job_file(j),)) for j in jobs]
        seconds = timed(lambda: [t.start() for t in threads] + [t.join() for t in threads])
        rss = peak_rss(mount.pid)
    finally:
        mount.stop()
    bench.row("4 four readers x 256 MiB (wan)", "aggregate", 4 * size / seconds / 1e6, "MB/s")
    bench.row("4 four readers x 256 MiB (wan)", "daemon peak RSS", rss / MIB, "MiB", target="< 300")


def load_loopback(bench: Bench, size_mib: int) -> None:
    """32 readers over 8 files of 64 MiB, half sequential, half random: the daemon's RSS."""
    size = 64 * MIB
    jobs = [bench.job("loopback", size, seed) for seed in range(21, 29)]
    mount = bench.mount("loopback", bench.root / "load")

    def scattered(path: Path, seed: int) -> None:
        chosen = random.Random(seed)
        with path.open("rb") as stream:
            for _ in range(200):
                os.pread(stream.fileno(), 65536, chosen.randrange(size - 65536))

    try:
        threads = []
        for number in range(32):
            path = mount.job_file(jobs[number % 8])
            args = (path,) if number % 2 else (path, number)
            threads.append(threading.Thread(target=dd if number % 2 else scattered, args=args))
        seconds = timed(lambda: [t.start() for t in threads] + [t.join() for t in threads])
        rss = peak_rss(mount.pid)
    finally:
        mount.stop()
    label = "7 load: 32 readers over 8 files (loopback)"
    bench.row(label, "wall time", seconds, "s")
    bench.row(label, "daemon peak RSS", rss / MIB, "MiB", target="< 300")


ALL: list[tuple[str, Callable[[Bench, int], None]]] = [
    ("cold", cold_sequential),
    ("warm", warm_sequential),
    ("random", cold_random_wan),
    ("concurrent", concurrent_wan),
    ("load", load_loopback),
    ("inventory", inventory_scale),
]
