"""Fast local checksums compared: throughput, buffers they take, whether they free the GIL.

Usage: python -m tests.bench.checksums [--repeats N]

Not part of `make bench`: it informs the choice of the per-leaf checksum for bytes at
rest in the cache (issue 14, item 3). Each candidate package is optional; one that is
not installed is reported as such. SHA-256 (hashlib) is the reference every other
figure is compared with, since it is what a first read in a mount costs today.

Figures are medians of ``--repeats`` timeit runs, in MB/s of this thread's CPU time
(on a shared machine, time spent waiting for a core is not the checksum's cost), for
one 1 MiB buffer and for 4 KiB buffers. "GIL-free share" is measured, not read from
the docs: a second thread counts loop iterations while the main thread hashes one
1 GiB buffer in one call; about 0 means the call held the GIL throughout, a fair share
(0.5 to 1 on a busy machine) means it ran without it.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import os
import statistics
import threading
import time
import timeit
import zlib
from collections.abc import Callable
from typing import Any

MIB = 1 << 20
Hash = Callable[[Any], object]


def candidates() -> dict[str, Hash | None]:
    """Each checksum by name, or None when its package is missing."""
    found: dict[str, Hash | None] = {
        "sha256 (hashlib)": lambda b: hashlib.sha256(b).digest(),
        "crc32 (zlib)": zlib.crc32,
    }

    def load(label: str, module: str, attribute: str) -> None:
        try:
            found[label] = getattr(importlib.import_module(module), attribute)
        except ImportError:
            found[label] = None

    found["control: bytes.count (holds the GIL)"] = lambda b: bytes(b).count(b"x")
    load("google-crc32c value", "google_crc32c", "value")
    load("crc32c crc32c", "crc32c", "crc32c")
    load("xxhash xxh3_64_intdigest", "xxhash", "xxh3_64_intdigest")
    load("xxhash xxh3_128_intdigest", "xxhash", "xxh3_128_intdigest")
    return found


def throughput(function: Hash, buffer: Any, repeats: int) -> float:
    """Median MB/s of ``function`` over ``buffer``."""
    number = max(1, (64 * MIB) // len(buffer))
    times = timeit.repeat(
        lambda: function(buffer), number=number, repeat=repeats, timer=time.thread_time
    )
    return len(buffer) * number / statistics.median(times) / 1e6


def accepts(function: Hash, buffer: Any) -> bool:
    try:
        function(buffer)
    except TypeError:
        return False
    return True


def frees_gil(function: Hash, buffer: Any) -> float:
    """How fast a Python thread runs during one call of ``function`` on a large buffer, as a
    share of its rate alone: about 0 when the call holds the GIL, near 1 when it frees it
    (on an idle core)."""
    stop, counter = threading.Event(), [0]

    def spin() -> None:
        while not stop.is_set():
            counter[0] += 1

    thread = threading.Thread(target=spin)
    thread.start()
    try:
        time.sleep(0.05)
        before, started = counter[0], time.perf_counter()
        time.sleep(0.05)
        solo = (counter[0] - before) / (time.perf_counter() - started)
        before, started = counter[0], time.perf_counter()
        function(buffer)
        during = (counter[0] - before) / (time.perf_counter() - started)
    finally:
        stop.set()
        thread.join()
    return during / solo if solo else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.checksums")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    big, small = os.urandom(MIB), os.urandom(4096)
    big_rw = bytearray(big)
    huge = bytes(1 << 30)  # calloc: zero pages, no RSS; one call lasts long enough to see
    print("| checksum | 1 MiB MB/s | 4 KiB MB/s | bytearray/memoryview | GIL-free share |")
    print("|---|---|---|---|---|")
    for name, function in candidates().items():
        if function is None:
            print(f"| {name} | not installed | | | |")
            continue
        one = throughput(function, big, args.repeats)
        four = throughput(function, small, args.repeats)
        writable = accepts(function, big_rw) and accepts(function, memoryview(big_rw))
        buffers = "yes" if writable else "bytes only"
        share = frees_gil(function, huge)
        print(f"| {name} | {one:,.0f} | {four:,.0f} | {buffers} | {share:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
