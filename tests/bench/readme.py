"""README's benchmark table, made from the newest run kept in ``bench/results/``.

Usage: python -m tests.bench.readme [FILE]   (make bench runs it after a full run)

The table between the ``bench-table`` markers in README.md is replaced by the Targets
table (tests/bench/targets.py) of the run's figures, with the run's date, machine and
load above it: the README says nothing the committed JSON does not.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tests.bench import targets

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results"
README = ROOT / "README.md"
BEGIN, END = "<!-- bench-table: made by python -m tests.bench.readme -->", "<!-- /bench-table -->"


def newest() -> Path:
    runs = sorted(RESULTS.glob("*.json"))
    if not runs:
        raise SystemExit(f"no run in {RESULTS}: make bench first")
    return runs[-1]


def section(record: dict[str, Any], name: str) -> str:
    box = record["machine"]
    load = record["load"]
    return "\n".join(
        [
            f"From `bench/results/{name}` ({record['date']}, {box['cores']} cores, "
            f"Linux {box['kernel']}, Python {box['python']}; {record['minutes']} minutes, "
            f"load average {load[0]} at the start and {load[1]} at the end):",
            "",
            targets.table(record["figures"], record["size_mib"], record["runs"]),
        ]
    )


def update(path: Path | None = None) -> None:
    path = path or newest()
    record = json.loads(path.read_text())
    text = README.read_text()
    before, rest = text.split(BEGIN, 1)
    _, after = rest.split(END, 1)
    README.write_text(f"{before}{BEGIN}\n{section(record, path.name)}\n{END}{after}")


if __name__ == "__main__":
    update(Path(sys.argv[1]) if len(sys.argv) > 1 else None)
