"""What a warm first read of a cached leaf costs: XXH3 granule sums against SHA-256.

Usage: python -m tests.bench.cache_first_read [--leaves N] [--repeats N]

Puts an object of N 1 MiB leaves in a DiskCache under a temporary directory (so its
data file is in the page cache), then, for each repeat, opens the cache afresh (a new
lifetime: every leaf is checked again) and reads every leaf, measuring this thread's
CPU time per leaf (on a shared machine, time waiting for a core is not the read's
cost):

- ``get, first read, sums``: today's first read, the leaf's XXH3 sums checked;
- ``get, first read, SHA-256``: a row without sums (as before schema 3): SHA-256, and
  its sums written (each repeat drops them again first);
- ``get, later read``: the second read in the lifetime, nothing checked;
- ``read_range 4 KiB, first`` / ``later``: a 4 KiB range in an unchecked granule, then
  in a checked one;
- ``pread 1 MiB + SHA-256`` / ``+ XXH3 granules``: the raw costs, without the cache.

Medians of ``--repeats``. Not part of `make bench`: it informs the cache's design.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from glacierfs.cache.disk import DiskCache, granules
from glacierfs.treehash import MIB

OWNER = "bench"


def fill(root: Path, leaves: int) -> None:
    data = os.urandom(leaves * MIB)
    digests = [hashlib.sha256(data[i * MIB : (i + 1) * MIB]).digest() for i in range(leaves)]
    with DiskCache(root, 2 * leaves * MIB) as cache:
        cache.put("k", 0, data, digests, "block", owner=OWNER)


def drop_sums(root: Path) -> None:
    with sqlite3.connect(root / "v1" / "index.sqlite3") as db:
        db.execute("UPDATE leaves SET sums = NULL")


def cpu_per(action: Callable[[], int]) -> float:
    """This thread's CPU microseconds per item of ``action`` (which returns its count)."""
    start = time.thread_time()
    count = action()
    return (time.thread_time() - start) / count * 1e6


def run(root: Path, leaves: int) -> dict[str, float]:
    results: dict[str, float] = {}

    def read_all(cache: DiskCache) -> int:
        for i in range(leaves):
            assert cache.get("k", i, owner=OWNER) is not None
        return leaves

    def ranges(cache: DiskCache, offset: int) -> int:
        for i in range(leaves):
            assert cache.read_range("k", i, offset, 4096, OWNER) is not None
        return leaves

    with DiskCache(root, 2 * leaves * MIB) as cache:
        results["get, first read, sums"] = cpu_per(lambda: read_all(cache))
        results["get, later read"] = cpu_per(lambda: read_all(cache))
    with DiskCache(root, 2 * leaves * MIB) as cache:
        results["read_range 4 KiB, first"] = cpu_per(lambda: ranges(cache, 5 * 65536 + 100))
        results["read_range 4 KiB, later"] = cpu_per(lambda: ranges(cache, 5 * 65536 + 8192))
    drop_sums(root)
    with DiskCache(root, 2 * leaves * MIB) as cache:
        results["get, first read, SHA-256 (+ sums written)"] = cpu_per(lambda: read_all(cache))
    fd = os.open(next((root / "v1" / "data").iterdir()), os.O_RDONLY)
    try:

        def raw(check: Callable[[bytes], object]) -> int:
            for i in range(leaves):
                check(os.pread(fd, MIB, i * MIB))
            return leaves

        results["pread 1 MiB + SHA-256"] = cpu_per(lambda: raw(hashlib.sha256))
        results["pread 1 MiB + XXH3 granules"] = cpu_per(lambda: raw(granules.sums))
        results["pread 1 MiB"] = cpu_per(lambda: raw(len))
    finally:
        os.close(fd)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leaves", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory) / "cache"
        fill(root, args.leaves)
        runs = [run(root, args.leaves) for _ in range(args.repeats)]
    print(f"CPU us per leaf, median of {args.repeats} ({args.leaves} leaves of 1 MiB, warm)")
    for name in runs[0]:
        print(f"  {name:45} {statistics.median(r[name] for r in runs):9.1f}")
    print(f"  load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
