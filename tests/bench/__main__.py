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
from typing import Any

from tests.bench import readme, scenarios, targets
from tests.bench.harness import Bench


def machine() -> dict[str, Any]:
    """The machine as the figures depend on it: cores and kernel (not its name)."""
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def described(box: dict[str, Any]) -> str:
    return f"{box['cores']} cores, {box['cpu']}, Linux {box['kernel']}, Python {box['python']}"


def main() -> int:
    parser = argparse.ArgumentParser(prog="make bench")
    parser.add_argument("--size-mib", type=int, default=1024, help="scenario 1 output size")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (median)")
    parser.add_argument(
        "--out",
        type=Path,
        default=readme.RESULTS / f"{time.strftime('%Y-%m-%d')}.json",
        help="the run's figures (default: bench/results/DATE.json, kept in the repository)",
    )
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
    box, load_end = machine(), os.getloadavg()[0]
    print(f"\nglacierfs benchmark, {time.strftime('%Y-%m-%d')}, {described(box)}")
    print(f"{minutes:.1f} minutes; load average {load:.2f} at the start, {load_end:.2f} at the end")
    print("(the machine may be shared: other processes' load lowers every figure, not alike)\n")
    print(bench.table())
    for table in bench.tables:
        print(f"\n{table}")
    print(f"\n{targets.table(bench.figures, args.size_mib, bench.runs)}")
    record = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": box,
        "load": [round(load, 2), round(load_end, 2)],
        "minutes": round(minutes, 1),
        "size_mib": args.size_mib,
        "runs": bench.runs,
        "only": sorted(only),
        "rows": bench.rows,
        "figures": bench.figures,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"\n(written to {args.out})")
    if not only and args.out.parent.resolve() == readme.RESULTS.resolve():
        readme.update()
        print("(README's table made from it: python -m tests.bench.readme)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
