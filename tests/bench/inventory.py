"""Scenario 6: parsing a 1,000,000-archive inventory, and listing a mount named from it.

The parse runs in a child process so that its peak resident set (VmHWM, which exec
resets, unlike ru_maxrss, which a forked child inherits) is its own; the
baseline is ``json.load`` of the same file (what a script would do), which holds
the whole document in memory. The listing figure is the time from starting a mount
with ``-o inventory=FILE`` until ``find`` shows every job under its decoded name.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.bench.harness import VAULT, Bench, timed
from tests.support.mount import Mount, wait_for

ARCHIVES = 1_000_000
LISTED_JOBS = 500

PARSE = """
import sys, time
from glacierfs.inventory import parse
started = time.perf_counter()
with open(sys.argv[1], "rb") as stream:
    count = sum(1 for _ in parse(stream, sys.argv[2]))
seconds = time.perf_counter() - started
peak = next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]
print(count, seconds, int(peak) * 1024)
"""

LOAD = """
import json, sys, time
started = time.perf_counter()
with open(sys.argv[1], "rb") as stream:
    count = len(json.load(stream)["ArchiveList"])
seconds = time.perf_counter() - started
peak = next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]
print(count, seconds, int(peak) * 1024)
"""


def _description(number: int) -> str:
    path = f"photos/{2000 + number % 25}/{number % 365:03d}/img_{number:07d}.jpg"
    text = json.dumps({"filename": path, "mtime": "20190704T120000Z"}).encode()
    return "mt2 " + base64.urlsafe_b64encode(text).decode().rstrip("=")


def _archive_id(number: int) -> str:
    return f"{number:010d}".ljust(138, "A")


def write_inventories(root: Path, named: dict[int, str]) -> tuple[Path, Path]:
    """A JSON and a CSV inventory of ARCHIVES archives; ``named`` get real ids."""
    json_path, csv_path = root / "inventory.json", root / "inventory.csv"
    with json_path.open("w") as as_json, csv_path.open("w") as as_csv:
        as_json.write('{"VaultARN":"arn:aws:glacier:us-east-1:123456789012:vaults/bench",')
        as_json.write('"InventoryDate":"2026-01-01T00:00:00Z","ArchiveList":[')
        as_csv.write("ArchiveId,ArchiveDescription,CreationDate,Size,SHA256TreeHash\n")
        for number in range(ARCHIVES):
            archive = named.get(number) or _archive_id(number)
            description = _description(number)
            entry = {
                "ArchiveId": archive,
                "ArchiveDescription": description,
                "CreationDate": "2020-01-01T00:00:00Z",
                "Size": number * 1000,
                "SHA256TreeHash": f"{number:064x}",
            }
            as_json.write(("," if number else "") + json.dumps(entry))
            as_csv.write(
                f"{archive},{description},2020-01-01T00:00:00Z,{number * 1000},{number:064x}\n"
            )
        as_json.write("]}")
    return json_path, csv_path


def _child(script: str, path: Path, fmt: str) -> tuple[int, float, int]:
    result = subprocess.run(
        [sys.executable, "-c", script, str(path), fmt], capture_output=True, text=True, check=True
    )
    count, seconds, peak = result.stdout.split()
    return int(count), float(seconds), int(peak)


def inventory_scale(bench: Bench, size_mib: int) -> None:
    emulator = bench.emulator("loopback")
    client = emulator.client()
    archives = [emulator.seeded_archive(VAULT, 1000, 900 + n, "")[0] for n in range(LISTED_JOBS)]
    named = {n * (ARCHIVES // LISTED_JOBS): a for n, a in enumerate(archives)}
    started = time.perf_counter()
    json_path, csv_path = write_inventories(bench.root, named)
    print(f"   (inventories written in {time.perf_counter() - started:.0f} s)", flush=True)
    label = f"6 inventory of {ARCHIVES:,} archives"
    for fmt, path in (("JSON", json_path), ("CSV", csv_path)):
        count, seconds, peak = _child(PARSE, path, fmt)
        assert count == ARCHIVES, count
        if fmt == "JSON":
            _, base_seconds, base_peak = _child(LOAD, path, fmt)
            bench.row(
                label, "JSON parse time", seconds, "s", "json.load", base_seconds, ratio_of="lower"
            )
            bench.row(
                label,
                "JSON parse peak RSS",
                peak / 2**20,
                "MiB",
                "json.load",
                base_peak / 2**20,
                ratio_of="lower",
            )
        else:
            bench.row(label, "CSV parse time", seconds, "s")
            bench.row(label, "CSV parse peak RSS", peak / 2**20, "MiB")
    jobs = []
    for archive in archives:
        response = client.initiate_job(
            vaultName=VAULT, jobParameters={"Type": "archive-retrieval", "ArchiveId": archive}
        )
        jobs.append(response["jobId"])
    mount_root = bench.root / "inventory-mount"
    mount = Mount(emulator.url, VAULT, mount_root, {"inventory": str(json_path)})

    def named_listing() -> None:
        mount.start()
        wait_for(
            lambda: len(list((mount.path / "archives" / "photos").rglob("*.jpg"))) >= LISTED_JOBS,
            "every job named",
            deadline=600,
        )

    try:
        seconds = timed(named_listing)
        find = timed(lambda: subprocess.run(["find", str(mount.path)], capture_output=True))
    finally:
        mount.stop()
    bench.row(label, f"mount to {LISTED_JOBS} jobs named", seconds, "s")
    bench.row(label, "find of the named tree", find * 1000, "ms")
    for path in (json_path, csv_path):
        os.unlink(path)
