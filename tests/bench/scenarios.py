"""The scenarios of `make bench`, each beside its baselines."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from glacierfs.config import DEFAULT_CONNECTIONS
from glacierfs.treehash import combine
from tests.bench.harness import (
    GIB,
    MIB,
    NIC_RATE,
    VAULT,
    WAN_RATE,
    Bench,
    cp,
    cpu_seconds,
    dd,
    fetched_bytes,
    peak_rss,
    timed,
)
from tests.bench.inventory import inventory_scale
from tests.bench.random4k import random_4k
from tests.bench.warm import warm_sequential


def botocore_stream(client: Any, job: str, sink: Path | None = None) -> float:
    """The best a single botocore stream does: GET everything, tree-hash as it reads,
    and with ``sink``, ``pwrite`` each MiB to that file (the work a cache must do).

    Returns the CPU seconds this process spent on it (time.process_time: user + system),
    the client's creation left out, as the daemon's figure leaves out its start.
    """
    started = time.process_time()
    body = client.get_job_output(vaultName=VAULT, jobId=job)["body"]
    fd = os.open(sink, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600) if sink else None
    try:
        digests, offset = [], 0
        while chunk := body.read(MIB):
            digests.append(hashlib.sha256(chunk).digest())
            if fd is not None:
                os.pwrite(fd, chunk, offset)
            offset += len(chunk)
        combine(digests)
    finally:
        if fd is not None:
            os.close(fd)
    return time.process_time() - started


def cold_sequential(bench: Bench, size_mib: int) -> None:
    for shape in ("loopback", "wan"):
        _cold_sequential(bench, size_mib, shape)


def cold_wan_small(bench: Bench, size_mib: int) -> None:
    """A 128 MiB output copied as a new user would: fresh mount, empty cache, defaults,
    ``cp`` to a file as the CLI writes one, each side timed from its first request."""
    _cold_sequential(bench, 128, "wan", key="wan128")


def cold_capped(bench: Bench, size_mib: int) -> None:
    """The WAN behind a 1 Gbit/s NIC: the cap, not the connections, is the limit."""
    size = min(size_mib, 512) * MIB
    job = bench.job("cap", size)
    speeds, _, amplification = _glacierfs_cold(bench, "cap", job, size, copy=False)
    cap = NIC_RATE / 1e6
    bench.note("cold.cap", speeds)
    bench.note("link.cap", cap)
    label = f"1 cold sequential {size // MIB} MiB (WAN behind a 1 Gbit/s NIC)"
    ours = statistics.median(speeds)
    bench.row(label, "dd bs=1M", ours, "MB/s", "the NIC's cap", cap, ">= 0.9x")
    bench.note("amplification.cap", max(amplification))


def _glacierfs_cold(
    bench: Bench, shape: str, job: str, size: int, copy: bool
) -> tuple[list[float], list[float], list[float]]:
    """Per run: MB/s, daemon CPU s per GiB while reading, bytes fetched / bytes read.

    Each run is a fresh mount given the inventory (so it fetches nothing for names: no
    head start; the bytes it fetched before the read are noted, and should be 0), then
    ``cp`` to a file (``copy``) or ``dd`` to /dev/null, timed alone."""
    speeds: list[float] = []
    cpu: list[float] = []
    amplification: list[float] = []
    head: list[int] = []
    out = bench.root / "cp-output"
    for _ in range(bench.runs):
        cache = bench.root / f"cold-{shape}-{os.urandom(4).hex()}"
        before = fetched_bytes(bench, shape, job)
        mount = bench.mount(shape, cache, named=True)
        try:
            head.append(fetched_bytes(bench, shape, job) - before)
            cpu_before = cpu_seconds(mount.pid)
            path = mount.job_file(job)
            speeds.append(size / timed(lambda p=path: cp(p, out) if copy else dd(p)) / 1e6)  # type: ignore[misc]
            cpu.append((cpu_seconds(mount.pid) - cpu_before) / (size / GIB))
        finally:
            mount.stop()
            out.unlink(missing_ok=True)
            amplification.append((fetched_bytes(bench, shape, job) - before) / size)
            shutil.rmtree(cache, ignore_errors=True)
    bench.note(f"head.{shape}.{size // MIB}", head)
    return speeds, cpu, amplification


def _cold_sequential(bench: Bench, size_mib: int, shape: str, key: str = "") -> None:
    size = size_mib * MIB
    key = key or shape
    job = bench.job(shape, size)
    copy = key == "wan128"
    speeds, cpu, amplification = _glacierfs_cold(bench, shape, job, size, copy)
    ours = statistics.median(speeds)
    label = f"1 cold sequential {size_mib} MiB ({shape})"
    bench.note(f"cold.{key}", speeds)
    bench.note(f"cpu.{key}", cpu)
    out = bench.root / "cli-output"
    # Over the WAN shape the CLI's one stream runs at the per-connection rate, minutes a
    # GiB: one run of it tells as much as three.
    cli_runs = 1 if shape == "wan" and size > 256 * MIB else None
    fixed = statistics.median(bench.cli_fixed(shape))
    bench.note(f"cli_fixed.{shape}", fixed)
    cli, cli_values = bench.median(
        lambda: size / (timed(lambda: bench.aws_cli(shape, job, out)) - fixed) / 1e6, cli_runs
    )
    bench.note(f"cli.{key}", cli_values)
    target = ">= 10x" if key == "wan128" else ">= 8x" if shape == "wan" else ">= 1.5x"
    cli_name = f"aws glacier get-job-output, less its {fixed:.2f} s on a 1-byte output"
    cli_name += " (1 run)" if cli_runs == 1 else ""
    reader = "cp to a file" if copy else "dd bs=1M"
    bench.row(label, reader, ours, "MB/s", cli_name, cli, target)
    if shape == "wan":
        link = DEFAULT_CONNECTIONS * WAN_RATE / 1e6
        bench.note(f"link.{key}", link)
        bench.row(label, reader, ours, "MB/s", "link limit (connections x rate)", link)
    if shape == "loopback":
        _beside_bare_stream(bench, job, size, label, ours, statistics.median(cpu))
    else:
        bench.row(label, "daemon CPU s per GiB", statistics.median(cpu), "s/GiB")
    bench.note(f"amplification.{key}", max(amplification))
    bench.row(
        f"5 amplification ({key})",
        "bytes fetched / bytes read",
        max(amplification),
        "x",
        target="1.00",
    )


def _beside_bare_stream(
    bench: Bench, job: str, size: int, label: str, ours: float, cpu: float
) -> None:
    """glacierfs's speed and daemon CPU per GiB beside one botocore stream's, in-process:
    bare (GET and tree hash), and writing each MiB to a file as a cache must."""
    client = bench.emulator("loopback").client()
    stream_cpu: list[float] = []
    written_cpu: list[float] = []
    sink = bench.root / "stream-output"

    def stream() -> float:
        seconds = timed(lambda: stream_cpu.append(botocore_stream(client, job)))
        return size / seconds / 1e6

    bare, bare_values = bench.median(stream)
    for _ in range(bench.runs):
        written_cpu.append(botocore_stream(client, job, sink) / (size / GIB))
        sink.unlink()
    bare_cpu = [seconds / (size / GIB) for seconds in stream_cpu]
    bench.note("bare", bare_values)
    bench.note("cpu.bare", bare_cpu)
    bench.note("cpu.pwrite", written_cpu)
    baseline = "botocore stream + tree hash"
    bench.row(label, "dd bs=1M", ours, "MB/s", baseline, bare, ">= 0.5x")
    bench.row(
        label, "daemon CPU s per GiB", cpu, "s/GiB", f"{baseline} (its CPU)",
        statistics.median(bare_cpu),
    )  # fmt: skip
    bench.row(
        label,
        "daemon CPU s per GiB",
        cpu,
        "s/GiB",
        f"{baseline} + pwrite to a file (its CPU)",
        statistics.median(written_cpu),
        "<= 1.5x",
    )


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
    bench.note("amplification.random", fetched / (blocks * MIB))
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
    bench.note("rss.wan4", rss / MIB)
    bench.row("4 four readers x 256 MiB (wan)", "daemon peak RSS", rss / MIB, "MiB", target="< 100")


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
    bench.note("rss.load32", rss / MIB)
    bench.row(label, "daemon peak RSS", rss / MIB, "MiB", target="< 100")


ALL: list[tuple[str, Callable[[Bench, int], None]]] = [
    ("cold", cold_sequential),
    ("wan128", cold_wan_small),
    ("cap", cold_capped),
    ("warm", warm_sequential),
    ("coldrandom", cold_random_wan),
    ("random", random_4k),
    ("concurrent", concurrent_wan),
    ("load", load_loopback),
    ("inventory", inventory_scale),
]
