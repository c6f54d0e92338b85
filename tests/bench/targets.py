"""The Targets table of issue 14, from the figures of one run: each target as a ratio.

Each row gives the raw figures (medians unless said), the ratio the target is put
in, the target, and whether it is met; a row whose scenario did not run, or whose
peer is not installed, says so. "Today" is the figure the issue quoted when it was
filed (another run, another load), for orientation only.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

from tests.bench.harness import Bench

Figures = dict[str, Any]
Measured = tuple[str, list[float], bool]
"""The raw figures as text, the ratios, whether the target is met."""
Row = tuple[str, str, str, Callable[[Figures], Measured]]
"""(scenario, today, target, figures -> what was measured)"""


RSS_TARGET_MIB = 120


def _m(values: list[float]) -> float:
    return statistics.median(values)


def _link(f: Figures) -> Measured:
    ours, link = _m(f["cold.wan"]), f["link.wan"]
    return f"{ours:,.0f} MB/s of {link:,.0f} MB/s", [ours / link], ours / link >= 0.85


def _cli128(f: Figures) -> Measured:
    ours, cli = f["cold.wan128"], _m(f["cli.wan128"])
    low, high = min(ours) / cli, max(ours) / cli
    text = f"{_m(ours):,.0f} MB/s (runs {low:.1f}x to {high:.1f}x) vs {cli:,.1f} MB/s"
    return text, [_m(ours) / cli], _m(ours) / cli >= 10


def _bare(f: Figures) -> Measured:
    ours, bare = _m(f["cold.loopback"]), _m(f["bare"])
    return f"{ours:,.0f} MB/s vs {bare:,.0f} MB/s", [ours / bare], ours / bare >= 0.5


def _cpu(f: Figures) -> Measured:
    ours, bare = _m(f["cpu.loopback"]), _m(f["cpu.bare"])
    return f"{ours:.2f} s/GiB vs {bare:.2f} s/GiB", [ours / bare], ours / bare <= 2


def _ceiling(f: Figures) -> Measured:
    ours, ceiling = max(f["warm"]), max(f["ceiling"])
    medians = f"medians {_m(f['warm']):,.0f} vs {_m(f['ceiling']):,.0f}"
    text = f"best {ours:,.0f} MB/s vs {ceiling:,.0f} MB/s ({medians})"
    return text, [ours / ceiling], ours / ceiling >= 0.5


def _rclone(f: Figures) -> Measured:
    ours, warm, warm_1m = _m(f["warm"]), _m(f["rclone.warm"]), _m(f["rclone.warm_1m"])
    text = (
        f"{ours:,.0f} MB/s vs {warm:,.0f} MB/s (1 MiB READs: {warm_1m:,.0f}, {ours / warm_1m:.1f}x)"
    )
    return text, [ours / warm], ours / warm >= 4


def _random(f: Figures) -> Measured:
    r = f["random4k"]

    def iops(name: str, readers: int) -> float:
        return float(r[f"{name}/{readers}"]["iops"])

    ratios = [iops("glacierfs", n) / iops("ceiling", n) for n in (4, 1)]
    met = all(ratio >= 0.6 for ratio in ratios)
    peers = ["glacierfs", "ceiling"] + (["rclone"] if "rclone/4" in r else [])
    text = "IOPS " + ", ".join(f"{p} {iops(p, 4):,.0f} / {iops(p, 1):,.0f}" for p in peers)
    if "rclone/4" in r:
        versus = [iops("glacierfs", n) / iops("rclone", n) for n in (4, 1)]
        text += f"; vs rclone {versus[0]:.2f}x / {versus[1]:.2f}x"
        met = met and min(versus) >= 1
    else:
        text += "; rclone not installed"
    return text, ratios, met


def _rss(f: Figures) -> Measured:
    wan, load = f["rss.wan4"], f["rss.load32"]
    text = f"{wan:.0f} / {load:.0f} MiB (ratio: of the 120 MiB target)"
    return text, [wan / RSS_TARGET_MIB, load / RSS_TARGET_MIB], max(wan, load) < RSS_TARGET_MIB


def _amplification(f: Figures) -> Measured:
    keys = [k for k in ("loopback", "wan", "wan128") if f"amplification.{k}" in f]
    sequential = max(f[f"amplification.{k}"] for k in keys)
    scattered = f["amplification.random"]
    met = sequential <= 1.01 and scattered <= 1.1
    return f"{sequential:.2f}; {scattered:.2f}", [sequential, scattered], met


ROWS: list[Row] = [
    (
        "cold WAN {size}, vs the link limit (connections x per-connection rate)",
        "0.55",
        ">= 0.85",
        _link,
    ),
    ("cold WAN 128 MiB, vs the AWS CLI", "5.9x to 6.7x", ">= 10x", _cli128),
    ("cold loopback {size}, vs bare botocore stream + tree hash", "0.23x", ">= 0.5x", _bare),
    ("daemon CPU s per GiB cold (loopback), vs the bare stream's", "not measured", "<= 2x", _cpu),
    (
        "warm after remount, vs the pyfuse3-from-memory ceiling (best of {runs} fresh mounts each)",
        "0.21x",
        ">= 0.5x",
        _ceiling,
    ),
    ("warm after remount, vs rclone's VFS cache", "3.3x (1 MiB reads 2.3x)", ">= 4x", _rclone),
    (
        "warm random 4 KiB, 4 readers / 1 reader, vs the pyfuse3 ceiling (IOPS)",
        "0.06x / 0.08x",
        ">= 0.6x, and >= rclone",
        _random,
    ),
    ("daemon peak RSS, 4 WAN readers / 32 loopback readers", "210 / 221 MiB", "< 120 MiB", _rss),
    (
        "bytes fetched / bytes read, sequential; random 4 KiB",
        "1.00; 1.0",
        "unchanged (<= 1.1)",
        _amplification,
    ),
]


def table(bench: Bench, size_mib: int) -> str:
    size = f"{size_mib // 1024} GiB" if size_mib % 1024 == 0 else f"{size_mib} MiB"
    lines = [
        "Targets of issue 14 (one run; ratios of medians unless said):",
        "",
        "| scenario | today (issue) | measured | ratio | target | |",
        "|---|---|---|---|---|---|",
    ]
    for scenario, today, target, compute in ROWS:
        label = scenario.format(size=size, runs=bench.runs)
        try:
            text, ratios, met = compute(bench.figures)
        except (KeyError, ValueError) as missing:
            lines.append(f"| {label} | {today} | not run ({missing}) | | {target} | |")
            continue
        shown = " / ".join(f"{r:.2f}" if r < 20 else f"{r:.0f}" for r in ratios)
        verdict = "met" if met else "**MISS**"
        lines.append(f"| {label} | {today} | {text} | {shown} | {target} | {verdict} |")
    return "\n".join(lines)
