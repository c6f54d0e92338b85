"""The view a mount keeps of an object's cached leaves, and what a read needs of it.

Pure bookkeeping for :mod:`glacierfs.cache.local`: which leaves a read spans (one run of
bytes in the data file), which of its granules are not yet checked in this mount, and
the check itself (XXH3 sums, :mod:`glacierfs.cache.disk.granules`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from glacierfs.cache.disk import granules
from glacierfs.cache.disk.blocks import Handle
from glacierfs.treehash import MIB


@dataclass
class Leaf:
    """A committed leaf as its row had it, and what of it this mount checked."""

    length: int
    digest: bytes  # the row's: the bytes are those of this SHA-256
    sums: bytes
    checked: int = 0  # bitmask of the granules checked in this mount


@dataclass(eq=False)
class View:
    """An object's committed leaves with sums, as of ``generation``, and its data file."""

    generation: int
    handle: Handle | None
    leaves: dict[int, Leaf] = field(default_factory=dict)
    busy: int = 0  # reads and hints using the descriptor in a worker thread
    stale: bool = False
    hinted: range = range(0)  # the leaves last hinted to the page cache


def holds(view: View, first: int, digests: Sequence[bytes]) -> bool:
    for n, digest in enumerate(digests):
        leaf = view.leaves.get(first + n)
        if leaf is None or leaf.digest != digest:
            return False
    return True


def spans(view: View, offset: int, end: int) -> list[Leaf] | None:
    """The leaves of ``[offset, end)``, if the view has them all and they are one run of
    bytes in the file (every leaf but the last whole)."""
    first, last = offset // MIB, (end - 1) // MIB
    leaves = []
    for index in range(first, last + 1):
        leaf = view.leaves.get(index)
        if leaf is None or (index < last and leaf.length != MIB):
            return None
        leaves.append(leaf)
    return leaves if end <= last * MIB + leaves[-1].length else None


def cover(view: View, offset: int, end: int) -> tuple[int, int, list[int]] | None:
    """When some granule of ``[offset, end)`` is unchecked: the granules' bytes to read
    (start, end) and the file positions of the unchecked granules; else None."""
    start = offset - offset % granules.GRANULE
    last = view.leaves[(end - 1) // MIB]
    stop = min(-(-end // granules.GRANULE) * granules.GRANULE, (end - 1) // MIB * MIB + last.length)
    unchecked = [
        at
        for at in range(start, stop, granules.GRANULE)
        if not view.leaves[at // MIB].checked >> (at % MIB // granules.GRANULE) & 1
    ]
    return (start, stop, unchecked) if unchecked else None


def plan(
    view: View, offset: int, end: int, digests: Sequence[bytes]
) -> tuple[int, int, list[int] | None] | None:
    """What a read of ``[offset, end)`` takes: the bytes to read ``(start, end)`` and
    the file positions of the granules among them to check first (None: all checked),
    when the view holds its leaves with these ``digests`` in one run of the file; else
    None. A read within one leaf whose granules are checked (a warm random read) costs
    one lookup and a mask."""
    index = offset // MIB
    if len(digests) == 1 and (end - 1) // MIB == index:
        leaf = view.leaves.get(index)
        start = index * MIB
        if leaf is None or leaf.digest != digests[0] or end > start + leaf.length:
            return None
        wanted = (2 << (end - 1 - start) // granules.GRANULE) - (
            1 << (offset - start) // granules.GRANULE
        )  # bits of the granules the read touches
        if leaf.checked & wanted == wanted:
            return offset, end, None
    elif not holds(view, index, digests) or spans(view, offset, end) is None:
        return None
    found = cover(view, offset, end)
    return (offset, end, None) if found is None else found


def check(view: View, data: memoryview, lo: int, positions: list[int]) -> int | None:
    """Check the granules at ``positions`` (``data`` starts at ``lo``) against their sums
    and mark them; the index of the first leaf that fails, or None."""
    for at in positions:
        index, granule = at // MIB, at % MIB // granules.GRANULE
        leaf = view.leaves.get(index)
        if leaf is None:
            return index
        leaf_end = index * MIB + leaf.length
        piece = data[at - lo : min(at + granules.GRANULE, leaf_end) - lo]
        if not granules.matches(piece, granule, leaf.sums, [granule]):
            return index
        leaf.checked |= 1 << granule
    return None


def present_runs(view: View, first: int, stop: int) -> list[tuple[int, int]]:
    """Runs ``(start, stop)`` of consecutive leaves of ``[first, stop)`` in the view."""
    runs: list[tuple[int, int]] = []
    for index in range(first, stop):
        if index not in view.leaves:
            continue
        if runs and runs[-1][1] == index:
            runs[-1] = (runs[-1][0], index + 1)
        else:
            runs.append((index, index + 1))
    return runs
