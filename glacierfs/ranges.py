"""Planning Get Job Output requests so that every response carries a checksum.

Pure code. Positions are output leaves (1 MiB each, the last one short), counted
from the start of the job's output, because the service reckons alignment against
the output. A request is a run of ``2^k`` leaves starting at a multiple of ``2^k``,
or the tail of the output starting at such a multiple: by the rules of the tree
hash (see :mod:`glacierfs.treehash`) the service sends ``x-amz-sha256-tree-hash``
for each, whenever the job's own retrieval range is tree-hash aligned.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from glacierfs.treehash import MIB

Run = tuple[int, int]
"""``(first leaf, number of leaves)``."""


def floor_power_of_two(value: int) -> int:
    """The largest power of two not above ``value`` (``value`` >= 1)."""
    return 1 << (value.bit_length() - 1)


def aligned_runs(first: int, stop: int, unit: int, total: int) -> Iterator[Run]:
    """The aligned blocks of ``unit`` leaves that cover leaves ``first..stop-1``.

    ``unit`` is a power of two; the block holding the last leaf is cut at ``total``.
    """
    if unit < 1 or unit & (unit - 1):
        raise ValueError(f"unit {unit} is not a power of two")
    start = first - first % unit
    while start < min(stop, total):
        yield start, min(unit, total - start)
        start += unit


def plan(first: int, stop: int, unit: int, total: int, wanted: Callable[[int], bool]) -> list[Run]:
    """Aligned requests for every leaf of ``first..stop-1`` that is ``wanted``.

    Each block of ``unit`` leaves is requested whole when all its leaves are wanted,
    else split into aligned halves, down to single leaves, so a leaf already cached
    or in flight is never asked for again. Leaves of a block outside ``first..stop``
    are fetched only when the whole block is wanted (a sequential reader will need
    them); a block is never widened to cover leaves that are not wanted.
    """
    runs: list[Run] = []
    for start, count in aligned_runs(first, stop, unit, total):
        _split(start, count, unit, wanted, runs)
    return runs


def _split(
    start: int, count: int, unit: int, wanted: Callable[[int], bool], out: list[Run]
) -> None:
    flags = [wanted(i) for i in range(start, start + count)]
    if all(flags):
        out.append((start, count))
        return
    if not any(flags) or unit == 1:
        return
    half = unit // 2
    _split(start, min(half, count), half, wanted, out)
    if count > half:
        _split(start + half, count - half, half, wanted, out)


def leaf_span(offset: int, size: int, output_size: int) -> tuple[int, int]:
    """The leaves ``first..stop-1`` that bytes ``offset..offset+size-1`` touch."""
    end = min(offset + size, output_size)
    if end <= offset:
        return offset // MIB, offset // MIB
    return offset // MIB, -(-end // MIB)


def byte_range(run: Run, output_size: int) -> tuple[int, int]:
    """The inclusive byte range of a run of leaves, cut at the end of the output."""
    start, count = run
    return start * MIB, min((start + count) * MIB, output_size) - 1
