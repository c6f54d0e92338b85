"""The Targets table of issue 23, from the figures of one run: each target as a ratio.

Each row gives the raw figures (medians unless said), the ratio the target is put
in, the target, and whether it is met; a row whose scenario did not run, or whose
peer is not installed, says so. "Issue" is the figure the issue quoted when it was
filed (another run, another load), for orientation only. It reads the figures alone
(``figures``, as the JSON keeps them), so that the README's table can be made again
from a committed run (tests/bench/readme.py).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

Figures = dict[str, Any]
Measured = tuple[str, list[float], bool]
"""The raw figures as text, the ratios, whether the target is met."""
Row = tuple[str, str, str, Callable[[Figures], Measured]]
"""(scenario, issue, target, figures -> what was measured)"""


RSS_TARGET_MIB = 100


def _m(values: list[float]) -> float:
    return statistics.median(values)


def _cli128(f: Figures) -> Measured:
    ours, cli = f["cold.wan128"], _m(f["cli.wan128"])
    low, high = min(ours) / cli, max(ours) / cli
    text = f"{_m(ours):,.0f} MB/s (runs {low:.1f}x to {high:.1f}x) vs {cli:,.1f} MB/s"
    head = f.get("head.wan.128")
    if head is not None:
        text += f"; bytes fetched before the copy {max(head)}"
    return text, [_m(ours) / cli], _m(ours) / cli >= 10


def _link(f: Figures) -> Measured:
    ours, link = _m(f["cold.wan"]), f["link.wan"]
    return f"{ours:,.0f} MB/s of {link:,.0f} MB/s", [ours / link], ours / link >= 0.85


def _cap(f: Figures) -> Measured:
    ours, cap = _m(f["cold.cap"]), f["link.cap"]
    return f"{ours:,.0f} MB/s of {cap:,.0f} MB/s", [ours / cap], ours / cap >= 0.9


def _cpu(f: Figures) -> Measured:
    ours, written, bare = _m(f["cpu.loopback"]), _m(f["cpu.pwrite"]), _m(f["cpu.bare"])
    text = f"{ours:.2f} s/GiB vs {written:.2f} s/GiB (bare stream {bare:.2f})"
    return text, [ours / written], ours / written <= 1.5


def _ceiling(f: Figures) -> Measured:
    ours, ceiling = _m(f["warm"]), _m(f["ceiling"])
    best = f"best {max(f['warm']):,.0f} vs {max(f['ceiling']):,.0f}"
    text = f"{ours:,.0f} MB/s vs {ceiling:,.0f} MB/s ({best})"
    return text, [ours / ceiling], ours / ceiling >= 0.8


def _random(f: Figures) -> Measured:
    r = f["random4k"]

    def iops(name: str, readers: int) -> float:
        return float(r[f"{name}/{readers}"]["iops"])

    ratios = [iops("glacierfs", n) / iops("ceiling", n) for n in (1, 4)]
    met = all(ratio >= 0.8 for ratio in ratios)
    peers = ["glacierfs", "ceiling"] + (["rclone"] if "rclone/4" in r else [])
    text = "IOPS " + ", ".join(f"{p} {iops(p, 1):,.0f} / {iops(p, 4):,.0f}" for p in peers)
    if "rclone/4" in r:
        versus = [iops("glacierfs", n) / iops("rclone", n) for n in (1, 4)]
        text += f"; vs rclone {versus[0]:.2f}x / {versus[1]:.2f}x"
        met = met and min(versus) >= 1
    else:
        text += "; rclone not installed: not met"
        met = False
    return text, ratios, met


def _rss(f: Figures) -> Measured:
    wan, load = f["rss.wan4"], f["rss.load32"]
    text = f"{load:.0f} MiB (4 WAN readers: {wan:.0f} MiB); ratio of the {RSS_TARGET_MIB} MiB bound"
    return text, [load / RSS_TARGET_MIB], load < RSS_TARGET_MIB


def _amplification(f: Figures) -> Measured:
    keys = [k for k in ("loopback", "wan", "wan128", "cap") if f"amplification.{k}" in f]
    sequential = max(f[f"amplification.{k}"] for k in keys)
    scattered = f["amplification.random"]
    met = sequential <= 1.01 and scattered <= 1.1
    return f"{sequential:.2f}; {scattered:.2f}", [sequential, scattered], met


ROWS: list[Row] = [
    (
        "cold WAN 128 MiB `cp`, vs the AWS CLI, both timed from their first request",
        "8.3-8.8x (quiet)",
        ">= 10x",
        _cli128,
    ),
    ("cold WAN {size}, vs the link (connections x per-connection rate)", "0.79", ">= 0.85", _link),
    ("cold WAN behind a 1 Gbit/s NIC, vs the cap", "not measured", ">= 0.9", _cap),
    (
        "daemon CPU s per GiB cold (loopback), vs a botocore stream + pwrite to a file",
        "2.73x (of the bare stream)",
        "<= 1.5x",
        _cpu,
    ),
    (
        "warm sequential after remount, vs the pyfuse3 ceiling (medians of {runs} fresh mounts)",
        "0.76x",
        ">= 0.8x",
        _ceiling,
    ),
    (
        "warm random 4 KiB O_DIRECT, 1 / 4 fio jobs, vs the pyfuse3 ceiling (IOPS)",
        "0.60x / 0.72x",
        ">= 0.8x, and >= rclone",
        _random,
    ),
    ("daemon peak RSS, 32 loopback readers", "76 MiB", "< 100 MiB", _rss),
    (
        "bytes fetched / bytes read, sequential; random 4 KiB",
        "1.00; 1.01",
        "unchanged (<= 1.1)",
        _amplification,
    ),
]


def table(figures: Figures, size_mib: int, runs: int) -> str:
    size = f"{size_mib // 1024} GiB" if size_mib % 1024 == 0 else f"{size_mib} MiB"
    lines = [
        "| target | issue 23 | measured | ratio | target | |",
        "|---|---|---|---|---|---|",
    ]
    for scenario, today, target, compute in ROWS:
        label = scenario.format(size=size, runs=runs)
        try:
            text, ratios, met = compute(figures)
        except (KeyError, ValueError, ZeroDivisionError) as missing:
            lines.append(f"| {label} | {today} | not run ({missing}) | | {target} | not run |")
            continue
        shown = " / ".join(f"{r:.2f}" if r < 20 else f"{r:.0f}" for r in ratios)
        verdict = "met" if met else "**MISS**"
        lines.append(f"| {label} | {today} | {text} | {shown} | {target} | {verdict} |")
    return "\n".join(lines)
