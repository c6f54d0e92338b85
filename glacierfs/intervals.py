"""Sets of leaves as sorted runs, so that work grows with runs, not with leaves. Pure code.

A 40 TiB archive has 40 million 1 MiB leaves: what covers it, what is missing and which
job holds what are a few runs. A run is ``(first, stop)``: leaves ``first..stop-1``,
``first < stop``. A :data:`Runs` value is sorted, its runs neither overlap nor touch
(``normal``); every function here returns one, and takes any iterable of runs.
Per-leaf work belongs only where bytes move (reading, fetching, hashing).
"""

from __future__ import annotations

from collections.abc import Iterable

Run = tuple[int, int]
Runs = list[Run]


def normal(runs: Iterable[Run]) -> Runs:
    """The runs sorted and merged (empty ones dropped): O(n log n) in runs."""
    merged: Runs = []
    for first, stop in sorted(r for r in runs if r[0] < r[1]):
        if merged and first <= merged[-1][1]:
            if stop > merged[-1][1]:
                merged[-1] = (merged[-1][0], stop)
        else:
            merged.append((first, stop))
    return merged


def of_leaves(leaves: Iterable[int]) -> Runs:
    """The runs of a set of leaves (for leaves that are there: cached, read)."""
    runs: Runs = []
    for leaf in sorted(set(leaves)):
        if runs and runs[-1][1] == leaf:
            runs[-1] = (runs[-1][0], leaf + 1)
        else:
            runs.append((leaf, leaf + 1))
    return runs


def union(*sets: Iterable[Run]) -> Runs:
    return normal(run for runs in sets for run in runs)


def gaps(first: int, stop: int, covered: Iterable[Run]) -> Runs:
    """The runs of ``first..stop-1`` that ``covered`` lacks."""
    missing: Runs = []
    at = first
    for start, end in normal(covered):
        if end <= at:
            continue
        if start >= stop:
            break
        if start > at:
            missing.append((at, start))
        at = max(at, end)
    if at < stop:
        missing.append((at, stop))
    return missing


def covers(covered: Iterable[Run], first: int, stop: int) -> bool:
    """Whether every leaf of ``first..stop-1`` is in ``covered``."""
    return not gaps(first, stop, covered)


def count(runs: Iterable[Run]) -> int:
    """How many leaves the runs hold."""
    return sum(stop - first for first, stop in normal(runs))


def clip(runs: Iterable[Run], first: int, stop: int) -> Runs:
    """The part of the runs within ``first..stop-1``."""
    return normal((max(a, first), min(b, stop)) for a, b in runs)
