"""Scenario ``scale``: ``retrieve --all --dry-run`` over vaults of 10^5, 10^6 (and, opt-in,
10^7) archives, timed, with its CPU time and peak resident set, and the growth per 10x.

Each vault is an inventory file written here (``-o inventory=FILE``: no bytes stored,
the emulator answers the rest), read the first time into the run's inventory store and
reused the second time. 10^7 takes about ten times as long as 10^6 and 4 GB of disk:
set ``GLACIERFS_BENCH_SCALE_LARGE=1`` to include it.

Not measured here yet (issue 22 asks for them): the mount, ``ls -R``, ``status`` and a
``--follow`` round beside J = 10^3 to 5 x 10^4 live jobs, which need an emulator that
makes jobs in bulk.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.bench.harness import VAULT, Bench
from tests.support.mount import isolated_env

SIZES = (100_000, 1_000_000)
LARGE = 10_000_000
LARGE_ENV = "GLACIERFS_BENCH_SCALE_LARGE"


def _description(number: int) -> str:
    path = f"photos/{2000 + number % 25}/{number % 365:03d}/img_{number:08d}.jpg"
    text = json.dumps({"filename": path, "mtime": "20190704T120000Z"}).encode()
    return "mt2 " + base64.urlsafe_b64encode(text).decode().rstrip("=")


def write_inventory(path: Path, count: int) -> None:
    """A JSON inventory of ``count`` archives of 1 to 64 MiB, written as a stream."""
    with path.open("w") as out:
        out.write('{"VaultARN":"arn:aws:glacier:us-east-1:123456789012:vaults/bench",')
        out.write('"InventoryDate":"2026-01-01T00:00:00Z","ArchiveList":[')
        for number in range(count):
            entry = {
                "ArchiveId": f"{number:012d}".ljust(138, "A"),
                "ArchiveDescription": _description(number),
                "CreationDate": "2020-01-01T00:00:00Z",
                "Size": (1 + number % 64) << 20,
                "SHA256TreeHash": f"{number:064x}",
            }
            out.write(("," if number else "") + json.dumps(entry))
        out.write("]}")


def dry_run(url: str, cache: Path, inventory: Path) -> tuple[float, float, int]:
    """One ``retrieve --all --dry-run``: elapsed s, CPU s, peak RSS bytes."""
    argv = [sys.executable, "-m", "glacierfs", "retrieve", "-o"]
    argv += [f"endpoint_url={url},cache_dir={cache},inventory={inventory}", VAULT]
    argv += ["--all", "--dry-run"]
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, env=isolated_env())
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"retrieve --dry-run exited {process.returncode}")
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024


def scale(bench: Bench, size_mib: int) -> None:
    url = bench.emulator("loopback").url
    sizes = SIZES + ((LARGE,) if os.environ.get(LARGE_ENV) else ())
    measured: dict[int, dict[str, tuple[float, float, int]]] = {}
    for count in sizes:
        inventory = bench.root / f"scale-{count}.json"
        write_inventory(inventory, count)
        cache = bench.fresh_dir("scale-cache")
        label = f"scale: retrieve --all --dry-run, {count:,} archives"
        runs = {"first": dry_run(url, cache, inventory), "again": dry_run(url, cache, inventory)}
        for name, (elapsed, cpu, peak) in runs.items():
            bench.row(label, f"{name} run: time", elapsed, "s")
            bench.row(label, f"{name} run: CPU", cpu, "s")
            bench.row(label, f"{name} run: peak RSS", peak / 2**20, "MiB")
        measured[count] = runs
        inventory.unlink()
        subprocess.run(["rm", "-rf", str(cache)], check=False)
    bench.tables.append(growth_table(measured))
    bench.note("scale", {str(n): runs for n, runs in measured.items()})


def growth_table(measured: dict[int, dict[str, tuple[float, float, int]]]) -> str:
    """Figures per N, and each one's factor over the N ten times smaller."""
    lines = [
        "| retrieve --all --dry-run | run | time s | CPU s | peak RSS MiB | growth per 10x "
        "(time, RSS) |",
        "|---|---|---|---|---|---|",
    ]
    for count, runs in sorted(measured.items()):
        for name, (elapsed, cpu, peak) in runs.items():
            smaller = measured.get(count // 10, {}).get(name)
            growth = ""
            if smaller:
                growth = f"{elapsed / smaller[0]:.1f}x, {peak / smaller[2]:.2f}x"
            lines.append(
                f"| {count:,} archives | {name} | {elapsed:.1f} | {cpu:.1f} | "
                f"{peak / 2**20:.0f} | {growth} |"
            )
    return "\n".join(lines)
