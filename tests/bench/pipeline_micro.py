"""Micro-benchmarks of the pieces of a streaming read path (issue 14), in one process.

Usage: python -m tests.bench.pipeline_micro [disk] [http] [--repeats N]

``disk``: what one read from a cached leaf costs, the leaf in the page cache: a 4 KiB
pread; a 1 MiB pread into a new buffer, as the daemon does today (glibc told to mmap
every 1 MiB allocation, so each is fresh pages that fault in and are unmapped again);
the same with SHA-256; a 1 MiB preadv into a buffer used
again; 64 KiB and 4 KiB reads with a fast checksum of what they read; and the
copies of today's read path (``bytes(piece)`` of a leaf, ``b"".join`` of two).

``http``: one connection to the loopback emulator fetching a seeded 64 MiB output in
4 MiB ranged requests, each leaf hashed and written to a file with pwrite, in three
ways: today's (``body.read()`` of the whole response, then hashes, then the memory
cache copy), ``body.read(1 MiB)`` per leaf, and ``readinto`` a reusable 1 MiB buffer
straight from http.client's response under urllib3. Wall MB/s, this process's CPU
seconds per GiB (the emulator's CPU not counted) and minor page faults per MiB, with
glibc set up as the daemon sets it (every allocation of 1 MiB or more mmapped).

Medians of ``--repeats`` runs. Not part of `make bench`: these inform the design.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import hashlib
import importlib
import os
import random
import resource
import statistics
import sys
import tempfile
import time
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

MIB = 1 << 20
SIZE = 64 * MIB


def fast_checksum() -> tuple[str, Callable[[Any], object]]:
    """The fastest checksum installed: xxh3, else crc32c, else zlib's crc32."""
    for module, attribute in (("xxhash", "xxh3_64_intdigest"), ("crc32c", "crc32c")):
        try:
            return f"{module}.{attribute}", getattr(importlib.import_module(module), attribute)
        except ImportError:
            continue
    import zlib

    return "zlib.crc32", zlib.crc32


def per_op(action: Callable[[], object], repeats: int, number: int) -> tuple[float, float]:
    """Median CPU microseconds per call (this thread's CPU time: on a shared machine, time
    waiting for a core is not the call's cost), and minor page faults per call."""
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    times = timeit.repeat(action, number=number, repeat=repeats, timer=time.thread_time)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    return statistics.median(times) / number * 1e6, faults / (number * repeats)


def mmap_every_mib() -> None:
    """What the daemon does at start (daemon._return_freed_buffers)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    libc.mallopt(-3, MIB)  # M_MMAP_THRESHOLD


def disk(repeats: int) -> None:
    mmap_every_mib()  # as the daemon does at start, before any large allocation
    name, check = fast_checksum()
    rng = random.Random(1)
    with tempfile.TemporaryDirectory(prefix="glacierfs-micro-") as tmp:
        path = Path(tmp) / "object"
        with path.open("wb") as stream:
            for _ in range(SIZE // MIB):
                stream.write(os.urandom(MIB))
        fd = os.open(path, os.O_RDONLY)
        try:
            while os.read(fd, MIB):  # into the page cache
                pass
            leaves = [rng.randrange(SIZE // MIB) * MIB for _ in range(4096)]
            small = [rng.randrange(SIZE // 4096) * 4096 for _ in range(4096)]
            buffer = bytearray(MIB)
            view = memoryview(buffer)
            it = iter(range(1 << 62))

            def leaf() -> int:
                return leaves[next(it) % len(leaves)]

            def page() -> int:
                return small[next(it) % len(small)]

            one = os.pread(fd, MIB, 0)
            two = [memoryview(one), memoryview(os.pread(fd, MIB, MIB))]
            rows: list[tuple[str, tuple[float, float]]] = [
                ("pread 4 KiB", per_op(lambda: os.pread(fd, 4096, page()), repeats, 2000)),
                (
                    f"pread 4 KiB + {name} of it",
                    per_op(lambda: check(os.pread(fd, 4096, page())), repeats, 2000),
                ),
                (
                    f"pread 64 KiB + {name} of it",
                    per_op(lambda: check(os.pread(fd, 65536, leaf())), repeats, 500),
                ),
                (
                    "preadv 1 MiB into a reused buffer",
                    per_op(lambda: os.preadv(fd, [buffer], leaf()), repeats, 100),
                ),
                (
                    f"preadv 1 MiB reused + {name}",
                    per_op(lambda: check(view[: os.preadv(fd, [buffer], leaf())]), repeats, 100),
                ),
                (
                    "preadv 1 MiB reused + sha256",
                    per_op(
                        lambda: hashlib.sha256(view[: os.preadv(fd, [buffer], leaf())]).digest(),
                        repeats,
                        50,
                    ),
                ),
            ]  # fmt: skip
            rows += [
                (
                    "pread 1 MiB, new buffer (daemon: mmap per MiB)",
                    per_op(lambda: os.pread(fd, MIB, leaf()), repeats, 100),
                ),
                (
                    "pread 1 MiB new (daemon) + sha256 (today's first read)",
                    per_op(lambda: hashlib.sha256(os.pread(fd, MIB, leaf())).digest(), repeats, 50),
                ),
                (
                    "bytes() of a 1 MiB view (daemon: the memory cache's copy)",
                    per_op(lambda: bytes(two[0]), repeats, 100),
                ),
                (
                    "b''.join of two 1 MiB leaves (daemon)",
                    per_op(lambda: b"".join(two), repeats, 100),
                ),
            ]
        finally:
            os.close(fd)
    print("| disk read, leaf in page cache | CPU us per read | page faults per read |")
    print("|---|---|---|")
    for label, (value, faults) in rows:
        print(f"| {label} | {value:,.1f} | {faults:.0f} |")


def http(repeats: int) -> None:
    from glacierfs.treehash import combine, leaf_digests
    from tests.support.emulator import Emulator

    mmap_every_mib()  # as the daemon does
    request = 4 * MIB
    with tempfile.TemporaryDirectory(prefix="glacierfs-micro-") as tmp:
        emulator = Emulator(Path(tmp) / "emulator").start()
        try:
            client = emulator.client()
            client.create_vault(vaultName="micro")
            archive, expected = emulator.seeded_archive("micro", SIZE, 3)
            job = client.initiate_job(
                vaultName="micro",
                jobParameters={"Type": "archive-retrieval", "ArchiveId": archive},
            )["jobId"]
            out = os.open(Path(tmp) / "cache", os.O_RDWR | os.O_CREAT, 0o600)
            buffer = bytearray(MIB)
            view = memoryview(buffer)

            def get(start: int) -> Any:
                byte_range = f"bytes={start}-{start + request - 1}"
                response = client.get_job_output(vaultName="micro", jobId=job, range=byte_range)
                return response

            def bare_read() -> None:
                for start in range(0, SIZE, request):
                    body = get(start)["body"]
                    body.read()
                    body.close()

            def bare_readinto() -> None:
                for start in range(0, SIZE, request):
                    raw = get(start)["body"]._raw_stream
                    while raw._fp.readinto(view):
                        pass
                    raw.release_conn()

            def today() -> list[bytes]:
                digests: list[bytes] = []
                for start in range(0, SIZE, request):
                    body = get(start)["body"]
                    data = body.read()
                    body.close()
                    found = leaf_digests(data)
                    whole = memoryview(data)
                    for n in range(len(found)):
                        bytes(whole[n * MIB : (n + 1) * MIB])  # the memory cache's copy
                    os.pwrite(out, data, start)
                    digests += found
                return digests

            def chunks() -> list[bytes]:
                digests: list[bytes] = []
                for start in range(0, SIZE, request):
                    body = get(start)["body"]
                    offset = start
                    while chunk := body.read(MIB):
                        digests.append(hashlib.sha256(chunk).digest())
                        os.pwrite(out, chunk, offset)
                        offset += len(chunk)
                    body.close()
                return digests

            def readinto() -> list[bytes]:
                digests: list[bytes] = []
                for start in range(0, SIZE, request):
                    raw = get(start)["body"]._raw_stream  # urllib3's response
                    fp = raw._fp  # http.client's: readinto reads the socket into our buffer
                    offset = start
                    while offset < start + request:
                        filled = 0
                        while filled < MIB and (n := fp.readinto(view[filled:])):
                            filled += n
                        if not filled:
                            break
                        digests.append(hashlib.sha256(view[:filled]).digest())
                        os.pwrite(out, view[:filled], offset)
                        offset += filled
                    if fp.isclosed():
                        raw.release_conn()  # read to its end: the connection is reusable
                    else:
                        raw.close()
                return digests

            streamed = _glacierfs_fetch(emulator, job, Path(tmp) / "diskcache", request)

            print("| one connection, 64 MiB in 4 MiB requests | MB/s | CPU s/GiB | faults/MiB |")
            print("|---|---|---|---|")
            methods: list[tuple[str, Callable[[], list[bytes] | None]]] = [
                ("body.read() whole, nothing else", bare_read),
                ("http.client readinto a reused 1 MiB buffer, nothing else", bare_readinto),
                ("today: body.read() whole, hash, memory copy, pwrite", today),
                ("body.read(1 MiB) per leaf, hash, pwrite", chunks),
                ("http.client readinto a reused 1 MiB buffer, hash, pwrite", readinto),
                (
                    "glacierfs: Fetcher streaming into the DiskCache (hash, sums, pwrite, commit)",
                    streamed,
                ),
            ]
            for label, method in methods:
                walls, cpus = [], []
                faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                for _ in range(repeats):
                    started, cpu = time.perf_counter(), time.process_time()
                    digests = method()
                    walls.append(time.perf_counter() - started)
                    cpus.append(time.process_time() - cpu)
                    assert digests is None or combine(digests).hex() == expected, label
                faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
                wall, used = statistics.median(walls), statistics.median(cpus)
                per_mib = faults / (repeats * SIZE / MIB)
                print(
                    f"| {label} | {SIZE / wall / 1e6:,.0f} | {used * (1 << 30) / SIZE:.2f}"
                    f" | {per_mib:.0f} |"
                )
            os.close(out)
        finally:
            emulator.stop()


def _glacierfs_fetch(
    emulator: Any, job: str, root: Path, request: int
) -> Callable[[], list[bytes]]:
    """The daemon's own fetch path: GETs streamed by the Fetcher into a DiskCache, each
    run into a new cache object (so that every leaf is written, none found present)."""
    import trio

    from glacierfs.cache.aio import AsyncDisk
    from glacierfs.cache.disk import DiskCache
    from glacierfs.client import ClientSettings, GlacierClient
    from glacierfs.jobs import Job
    from glacierfs.read.fetch import Fetcher, Sink
    from glacierfs.read.ledger import Ledger
    from glacierfs.retry import RetryPolicy
    from glacierfs.stats import Stats
    from tests.support.mount import isolated_env

    os.environ.update({k: v for k, v in isolated_env().items() if k.startswith("AWS_")})
    client = GlacierClient(ClientSettings(vault="micro", endpoint_url=emulator.url))
    fetcher = Fetcher(
        lambda j, start, end: client.open_output(j.job_id, start, end, SIZE),
        1,
        RetryPolicy(attempts=1),
        Stats(),
    )
    disk = DiskCache(root, 64 * SIZE)
    ledger = Ledger(AsyncDisk(disk))
    spec = Job(job, "archive", SIZE, 0.0, 0.0, "arn:micro", "a", SIZE, None)
    runs = iter(range(1 << 30))

    def streamed() -> list[bytes]:
        key = f"run-{next(runs)}"

        async def fetch_all() -> list[bytes]:
            digests: list[bytes] = []
            for start in range(0, SIZE, request):
                sink = Sink(disk, key, start // MIB, "micro")
                landed = await fetcher.fetch(spec, start, start + request - 1, ledger, sink)
                digests += landed.digests
            return digests

        return trio.run(fetch_all)

    return streamed


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.pipeline_micro")
    parser.add_argument("parts", nargs="*", default=["disk", "http"])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} cores")
    if "disk" in args.parts:
        disk(args.repeats)
    if "http" in args.parts:
        http(args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
