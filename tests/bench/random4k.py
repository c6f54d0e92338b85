"""Scenario 8: random 4 KiB reads from the cache, as a database or unzip makes them.

fio (``--direct=1``, randread, 4 KiB, psync, 1 and 4 readers, a fixed run time) reads
a 512 MiB file on glacierfs after a remount (its disk cache holds the whole output),
on the pyfuse3 ceiling (a fresh mount), on rclone's VFS cache (after a remount, the
cache already full) and on the local file; each run starts on a fresh mount. O_DIRECT
keeps the kernel's page cache of the mount out of it: each read reaches the daemon.
Without fio, a Python loop of O_DIRECT preads in threads stands in, and the table says
so (its own overhead makes every figure lower, the ratios less so).
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import random
import shutil
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.bench import peers
from tests.bench.harness import MIB, Bench, dd

SIZE = 512 * MIB
RUNTIME = 3
"""Seconds of each fio run: thousands of reads even at glacierfs's rate today."""

READERS = (1, 4)
LABEL = "8 warm random 4 KiB, O_DIRECT, after remount"

Result = dict[str, float]
"""iops, p50_us, p99_us"""


def fio_available() -> bool:
    return shutil.which("fio") is not None


def fio(path: Path, size: int, readers: int) -> Result:
    argv = ["fio", "--name=randread", f"--filename={path}", "--readonly", "--rw=randread"]
    argv += ["--bs=4k", "--direct=1", "--ioengine=psync", f"--numjobs={readers}"]
    argv += ["--group_reporting", "--time_based", f"--runtime={RUNTIME}", f"--size={size}"]
    argv += ["--output-format=json"]
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    read = json.loads(out[out.index("{") :])["jobs"][0]["read"]
    percentiles = read["clat_ns"]["percentile"]
    return {
        "iops": float(read["iops"]),
        "p50_us": percentiles["50.000000"] / 1000,
        "p99_us": percentiles["99.000000"] / 1000,
    }


def python_reader(path: Path, size: int, readers: int) -> Result:
    """fio's job done by hand: O_DIRECT preads of 4 KiB at random, in threads."""
    latencies: list[list[int]] = [[] for _ in range(readers)]
    end = time.monotonic() + RUNTIME

    def read(mine: list[int], seed: int) -> None:
        rng = random.Random(seed)
        buffer = mmap.mmap(-1, 4096)  # page-aligned, as O_DIRECT needs
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
        try:
            while time.monotonic() < end:
                offset = rng.randrange(size // 4096) * 4096
                started = time.perf_counter_ns()
                os.preadv(fd, [buffer], offset)
                mine.append(time.perf_counter_ns() - started)
        finally:
            os.close(fd)

    threads = [threading.Thread(target=read, args=(latencies[n], n)) for n in range(readers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = sorted(x for mine in latencies for x in mine)
    return {
        "iops": len(every) / RUNTIME,
        "p50_us": every[len(every) // 2] / 1000,
        "p99_us": every[len(every) * 99 // 100] / 1000,
    }


Opener = Callable[[], contextlib.AbstractContextManager[Path]]


def _measure(bench: Bench, opener: Opener, readers: int) -> Result:
    """Medians over ``bench.runs`` runs, each on a fresh mount."""
    reader = fio if fio_available() else python_reader
    results = []
    for _ in range(bench.runs):
        with opener() as path:
            results.append(reader(path, SIZE, readers))
    return {key: statistics.median(r[key] for r in results) for key in results[0]}


def _openers(bench: Bench, job: str, cache: Path, plain: Path) -> dict[str, Opener]:
    @contextlib.contextmanager
    def glacierfs() -> Iterator[Path]:
        mount = bench.mount("loopback", cache)
        try:
            yield mount.job_file(job)
        finally:
            mount.stop()

    @contextlib.contextmanager
    def ceiling() -> Iterator[Path]:
        with peers.ceiling(plain, bench.fresh_dir("ceiling")).start(1024) as served:
            yield served.file

    rclone_cache = bench.fresh_dir("rclone-cache")

    @contextlib.contextmanager
    def rclone() -> Iterator[Path]:
        with peers.rclone(plain, bench.fresh_dir("rclone"), rclone_cache).start(1024) as served:
            yield served.file

    @contextlib.contextmanager
    def local() -> Iterator[Path]:
        yield plain

    openers: dict[str, Opener] = {"glacierfs": glacierfs, "ceiling": ceiling}
    if peers.rclone_available():
        try:
            with rclone() as path:
                dd(path)  # fills rclone's VFS cache: its runs are warm, after a remount
            openers["rclone"] = rclone
        except AssertionError as error:
            print(f"   rclone did not mount, its rows are left out: {error}", flush=True)
    openers["local file"] = local
    return openers


def random_4k(bench: Bench, size_mib: int) -> None:
    job = bench.job("loopback", SIZE, seed=2)
    cache = bench.root / "random-cache"
    plain = bench.hydrate(job, cache, "random")
    tool = "fio" if fio_available() else "Python O_DIRECT preads (fio is not installed)"
    print(f"   (reader: {tool})", flush=True)
    results: dict[tuple[str, int], Result] = {}
    for name, opener in _openers(bench, job, cache, plain).items():
        for readers in READERS:
            results[name, readers] = _measure(bench, opener, readers)
            print(f"   {name}, {readers} readers: {results[name, readers]}", flush=True)
    shutil.rmtree(plain.parent)
    bench.note("random4k", {f"{name}/{readers}": r for (name, readers), r in results.items()})
    _report(bench, results, tool)


def _report(bench: Bench, results: dict[tuple[str, int], Result], tool: str) -> None:
    for readers in READERS:
        ours = results["glacierfs", readers]["iops"]
        for peer, target in (("ceiling", ">= 0.8x"), ("rclone", ">= 1x"), ("local file", "")):
            if (peer, readers) in results:
                base = results[peer, readers]["iops"]
                figure = f"IOPS, {readers} reader{'s' if readers > 1 else ''}"
                label = f"{peer}, 4 KiB READs (O_DIRECT)" if peer != "local file" else peer
                bench.row(LABEL, figure, ours, "IOPS", label, base, target)
    lines = [
        f"Random 4 KiB reads, O_DIRECT, {RUNTIME} s a run, median of {bench.runs} ({tool}):",
        "",
        "| filesystem | readers | IOPS | p50 latency | p99 latency |",
        "|---|---|---|---|---|",
    ]
    for (name, readers), r in results.items():
        lines.append(
            f"| {name} | {readers} | {r['iops']:,.0f} | {r['p50_us']:,.0f} us "
            f"| {r['p99_us']:,.0f} us |"
        )
    bench.tables.append("\n".join(lines))
