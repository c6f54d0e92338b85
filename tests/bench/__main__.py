"""Run every benchmark scenario with its baselines and print medians and ratios.

Usage: python -m tests.bench [--size-mib N] [--runs N] [--out FILE] [--only NAME,...]
(or make bench SCENARIOS=NAME,...)

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

from tests.bench import scenarios, targets
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
    names = ", ".join(dict.fromkeys(name for name, _ in scenarios.ALL))
    parser.add_argument("--only", default="", help=f"comma-separated, of: {names}")
    args = parser.parse_args()
    only = {name for name in args.only.split(",") if name}
    unknown = only - {name for name, _ in scenarios.ALL}
    if unknown:
        parser.error(f"no scenario {', '.join(sorted(unknown))} (there are: {names})")
    started, load = time.monotonic(), os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="glacierfs-bench-") as tmp:
        bench = Bench(Path(tmp), runs=args.runs)
        try:
            for name, scenario in scenarios.ALL:
                if only and name not in only:
                    continue
                print(f"-- {name}", file=sys.stderr, flush=True)
                begun = time.monotonic()
                scenario(bench, args.size_mib)
                print(f"   ({time.monotonic() - begun:.0f} s)", file=sys.stderr, flush=True)
        finally:
            bench.close()
    minutes = (time.monotonic() - started) / 60
    print(f"\nglacierfs benchmark, {time.strftime('%Y-%m-%d')}, {machine()}")
    load_end = os.getloadavg()[0]
    print(f"{minutes:.1f} minutes; load average {load:.2f} at the start, {load_end:.2f} at the end")
    print("(the machine may be shared: other processes' load lowers every figure, not alike)\n")
    print(bench.table())
    for table in bench.tables:
        print(f"\n{table}")
    print(f"\n{targets.table(bench, args.size_mib)}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record = {"machine": machine(), "date": time.time(), "rows": bench.rows}
    args.out.write_text(json.dumps({**record, "figures": bench.figures}, indent=2))
    print(f"\n(written to {args.out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
