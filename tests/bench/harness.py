"""The pieces every scenario uses: emulators, seeded jobs, mounts, timing, the table."""

from __future__ import annotations

import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.emulator import Emulator
from tests.support.mount import Mount, isolated_env

MIB = 1 << 20
WAN_FLAGS = ("--latency-ms", "40", "--bandwidth", str(25_000_000))
"""A distant region: 40 ms to first byte, 25 MB/s per connection."""

VAULT = "bench"


def peak_rss(pid: int) -> int:
    """The process's peak resident set (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def dd(path: Path) -> None:
    subprocess.run(["dd", f"if={path}", "of=/dev/null", "bs=1M"], check=True, capture_output=True)


class Bench:
    def __init__(self, root: Path, runs: int) -> None:
        self.root = root
        self.runs = runs
        self.rows: list[dict[str, Any]] = []
        self._emulators: dict[str, Emulator] = {}
        self._jobs: dict[tuple[str, int, int], str] = {}
        self._count = 0

    def emulator(self, shape: str) -> Emulator:
        if shape not in self._emulators:
            flags = WAN_FLAGS if shape == "wan" else ()
            emulator = Emulator(self.root / f"emulator-{shape}", *flags)
            emulator.start()
            emulator.client().create_vault(vaultName=VAULT)
            self._emulators[shape] = emulator
        return self._emulators[shape]

    def job(self, shape: str, size: int, seed: int = 1) -> str:
        """A completed full-archive job of a seeded archive of ``size`` bytes."""
        key = (shape, size, seed)
        if key not in self._jobs:
            emulator = self.emulator(shape)
            archive, _ = emulator.seeded_archive(VAULT, size, seed, f"bench-{size}-{seed}")
            response = emulator.client().initiate_job(
                vaultName=VAULT, jobParameters={"Type": "archive-retrieval", "ArchiveId": archive}
            )
            self._jobs[key] = str(response["jobId"])
        return self._jobs[key]

    def mount(self, shape: str, cache: Path | None = None, **options: str) -> Mount:
        self._count += 1
        root = self.root / f"mount{self._count}"
        mount = Mount(self.emulator(shape).url, VAULT, root, options, cache_dir=cache)
        return mount.start()

    def median(self, measure: Callable[[], float]) -> tuple[float, list[float]]:
        values = [measure() for _ in range(self.runs)]
        return statistics.median(values), values

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
        shown = f"{ratio:.2f}x" if ratio is not None else ""
        print(f"   {figure}: {value:.3f} {unit} {shown}", flush=True)

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
                str(Path(__import__("sys").executable).parent / "aws"),
                "glacier",
                "get-job-output",
                "--account-id",
                "-",
                "--vault-name",
                VAULT,
                "--job-id",
                job,
                "--endpoint-url",
                emulator.url,
                str(out),
            ],
            check=True,
            capture_output=True,
            env=isolated_env(),
        )
        out.unlink()

    def close(self) -> None:
        for emulator in self._emulators.values():
            emulator.stop()
