"""The pieces every scenario uses: emulators, seeded jobs, mounts, timing, the table."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.emulator import Emulator
from tests.support.mount import Mount, isolated_env

MIB = 1 << 20
GIB = 1 << 30
WAN_RATE = 25_000_000
WAN_FLAGS = ("--latency-ms", "40", "--bandwidth", str(WAN_RATE))
"""A distant region: 40 ms to first byte, 25 MB/s per connection."""
NIC_RATE = 125_000_000
SHAPES: dict[str, tuple[str, ...]] = {
    "loopback": (),
    "wan": WAN_FLAGS,
    "cap": (*WAN_FLAGS, "--total-bandwidth", str(NIC_RATE)),
}
"""The emulator's network shapes; ``cap`` is the WAN behind a 1 Gbit/s NIC (every
connection together), below the 16 connections' 400 MB/s."""

VAULT = "bench"


def peak_rss(pid: int) -> int:
    """The process's peak resident set (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (every thread), from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def fetched_bytes(bench: Bench, shape: str, job: str) -> int:
    counters = bench.emulator(shape).counters()
    return int(counters.get("jobs", {}).get(job, {}).get("bytes", 0))


def cp(path: Path, out: Path) -> None:
    subprocess.run(["cp", str(path), str(out)], check=True, capture_output=True)


def dd(path: Path) -> None:
    subprocess.run(["dd", f"if={path}", "of=/dev/null", "bs=1M"], check=True, capture_output=True)


class Bench:
    def __init__(self, root: Path, runs: int) -> None:
        self.root = root
        self.runs = runs
        self.rows: list[dict[str, Any]] = []
        self.tables: list[str] = []
        """Tables a scenario prints after the main one."""
        self.figures: dict[str, Any] = {}
        """Named figures the Targets table (tests/bench/targets.py) is made of."""
        self._emulators: dict[str, Emulator] = {}
        self._jobs: dict[tuple[str, int, int], str] = {}
        self._archives: dict[str, list[dict[str, Any]]] = {}  # inventory entries, per shape
        self._count = 0

    def emulator(self, shape: str) -> Emulator:
        if shape not in self._emulators:
            emulator = Emulator(self.root / f"emulator-{shape}", *SHAPES[shape])
            emulator.start()
            emulator.client().create_vault(vaultName=VAULT)
            self._emulators[shape] = emulator
        return self._emulators[shape]

    def job(self, shape: str, size: int, seed: int = 1) -> str:
        """A completed full-archive job of a seeded archive of ``size`` bytes."""
        key = (shape, size, seed)
        if key not in self._jobs:
            emulator = self.emulator(shape)
            description = f"bench-{size}-{seed}"
            archive, tree_hash = emulator.seeded_archive(VAULT, size, seed, description)
            self._archives.setdefault(shape, []).append(
                {
                    "ArchiveId": archive,
                    "ArchiveDescription": description,
                    "CreationDate": "2020-01-01T00:00:00Z",
                    "Size": size,
                    "SHA256TreeHash": tree_hash,
                }
            )
            response = emulator.client().initiate_job(
                vaultName=VAULT, jobParameters={"Type": "archive-retrieval", "ArchiveId": archive}
            )
            self._jobs[key] = str(response["jobId"])
        return self._jobs[key]

    def fresh_dir(self, prefix: str) -> Path:
        self._count += 1
        return self.root / f"{prefix}{self._count}"

    def hydrate(self, job: str, cache: Path, name: str) -> Path:
        """Read a loopback job whole into ``cache``; a local copy of its bytes, alone in a
        directory (rclone mounts that directory)."""
        plain = self.root / f"plain-{name}" / "data"
        plain.parent.mkdir(parents=True, exist_ok=True)
        mount = self.mount("loopback", cache)
        try:
            shutil.copyfile(mount.job_file(job), plain)
        finally:
            mount.stop()
        return plain

    def inventory(self, shape: str) -> Path:
        """An inventory of the shape's archives, as a user who has one gives it to the
        mount (``-o inventory=``): the mount then knows every name and fetches no first
        leaf for one, so a cold read that follows starts from nothing."""
        path = self.root / f"inventory-{shape}.json"
        arn = f"arn:aws:glacier:us-east-1:123456789012:vaults/{VAULT}"
        listing = {"VaultARN": arn, "InventoryDate": "2026-01-01T00:00:00Z"}
        path.write_text(json.dumps({**listing, "ArchiveList": self._archives.get(shape, [])}))
        return path

    def mount(
        self, shape: str, cache: Path | None = None, named: bool = False, **options: str
    ) -> Mount:
        """A mount of the shape's vault; ``named``: given the inventory (no head start)."""
        self._count += 1
        root = self.root / f"mount{self._count}"
        if named:
            options["inventory"] = str(self.inventory(shape))
        mount = Mount(self.emulator(shape).url, VAULT, root, options, cache_dir=cache)
        return mount.start()

    def median(
        self, measure: Callable[[], float], runs: int | None = None
    ) -> tuple[float, list[float]]:
        values = [measure() for _ in range(runs or self.runs)]
        return statistics.median(values), values

    def note(self, key: str, value: Any) -> None:
        self.figures[key] = value

    def row(
        self,
        scenario: str,
        figure: str,
        value: float,
        unit: str,
        baseline: str | None = None,
        base_value: float | None = None,
        target: str = "",
        ratio_of: str = "higher",
    ) -> None:
        ratio = None
        if base_value:
            ratio = value / base_value if ratio_of == "higher" else base_value / value
        self.rows.append(
            {
                "scenario": scenario,
                "figure": figure,
                "value": value,
                "unit": unit,
                "baseline": baseline,
                "baseline_value": base_value,
                "ratio": ratio,
                "target": target,
            }
        )
        shown = f" ({ratio:.2f}x {baseline})" if ratio is not None else ""
        print(f"   {figure}: {value:,.3f} {unit}{shown}", flush=True)

    def table(self) -> str:
        lines = [
            "| scenario | figure | glacierfs | baseline | ratio | target |",
            "|---|---|---|---|---|---|",
        ]
        for r in self.rows:
            base = (
                f"{r['baseline']}: {r['baseline_value']:.1f} {r['unit']}" if r["baseline"] else ""
            )
            ratio = f"{r['ratio']:.2f}x" if r["ratio"] is not None else ""
            lines.append(
                f"| {r['scenario']} | {r['figure']} | {r['value']:.1f} {r['unit']} | "
                f"{base} | {ratio} | {r['target']} |"
            )
        return "\n".join(lines)

    def aws_cli(self, shape: str, job: str, out: Path) -> None:
        emulator = self.emulator(shape)
        subprocess.run(
            [
                str(Path(sys.executable).parent / "aws"),
                "glacier",
                "get-job-output",
                "--account-id",
                "-",
                "--vault-name",
                VAULT,
                f"--job-id={job}",  # one joined argument: a job id may begin with "-"
                "--endpoint-url",
                emulator.url,
                str(out),
            ],
            check=True,
            capture_output=True,
            env=isolated_env(),
        )
        out.unlink()

    def cli_fixed(self, shape: str) -> list[float]:
        """Seconds the AWS CLI takes for a 1-byte output: its fixed cost (Python and
        botocore starting, one request's round trip), taken off its times so that it is
        timed as the mount is, from its first request."""
        job = self.job(shape, 1, seed=99)
        out = self.root / "cli-1-byte"
        return [timed(lambda: self.aws_cli(shape, job, out)) for _ in range(self.runs)]

    def close(self) -> None:
        for emulator in self._emulators.values():
            emulator.stop()
