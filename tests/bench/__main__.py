"""Run every benchmark scenario with its baselines and print medians and ratios.

Usage: python -m tests.bench [--size-mib N] [--runs N] [--out FILE] [--only NAME,...]

Each scenario runs glacierfs and its baselines in the same run, on the same machine,
against the same emulator; the table shows medians and ratios, and the JSON file keeps
every figure so runs can be compared. Nothing here asserts a speed: the targets are
printed beside the figures, and a miss is reported, not hidden.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from tests.bench import scenarios
from tests.bench.harness import Bench


def machine() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    release, python = platform.release(), platform.python_version()
    return f"{os.cpu_count()} cores, {cpu}, Linux {release}, Python {python}"


def main() -> int:
    parser = argparse.ArgumentParser(prog="make bench")
    parser.add_argument("--size-mib", type=int, default=1024, help="scenario 1 output size")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (median)")
    parser.add_argument("--out", type=Path, default=Path("bench-results/latest.json"))
    parser.add_argument("--only", default="", help="comma-separated scenario names")
    args = parser.parse_args()
    only = {name for name in args.only.split(",") if name}
    with tempfile.TemporaryDirectory(prefix="glacierfs-bench-") as tmp:
        bench = Bench(Path(tmp), runs=args.runs)
        try:
            for name, scenario in scenarios.ALL:
                if only and name not in only:
                    continue
                print(f"-- {name}", file=sys.stderr, flush=True)
                scenario(bench, args.size_mib)
        finally:
            bench.close()
    table = bench.table()
    print(f"\nglacierfs benchmark, {time.strftime('%Y-%m-%d')}, {machine()}\n")
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"machine": machine(), "date": time.time(), "rows": bench.rows}, indent=2)
    )
    print(f"\n(written to {args.out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
