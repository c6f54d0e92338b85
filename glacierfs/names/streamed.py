"""The paths of :func:`glacierfs.names.safe.assign_paths`, for claimants read in path order
from a store, holding one path's claimants at a time. Pure code.

A store of millions of archives (:mod:`glacierfs.retrieve.inventorydb`) cannot hand
``assign_paths`` every claimant at once. It can read them sorted by their wanted path,
and there the two facts ``assign_paths`` needs are local: the claimants of one path are
neighbours, and a path is a directory exactly when the next path read extends it (in
tuple order, a path's descendants come right after it). Only what is renamed is given
back, and only the paths given to losers are held, so memory grows with the losers,
not with the vault. The names are the same as ``assign_paths`` gives for the same set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from glacierfs.names.safe import Path, Wanted, claim_order, suffixed


class _Taken:
    """Paths no loser may take: claimed or a directory (asked of the store), or given."""

    def __init__(self, claimed: Callable[[Path], bool]) -> None:
        self.claimed = claimed
        self.given: set[Path] = set()

    def __contains__(self, path: object) -> bool:
        return path in self.given or (isinstance(path, tuple) and self.claimed(path))


def _extends(path: Path, parent: Path) -> bool:
    return len(path) > len(parent) and path[: len(parent)] == parent


def _contested(groups: Iterable[tuple[Path, list[Wanted]]]) -> Iterator[tuple[Path, list[Wanted]]]:
    """(path, its losers in order) for each path with more than one claimant, or that is
    a directory of another (then every claimant loses), in path order."""
    previous: tuple[Path, list[Wanted]] | None = None
    for group in groups:
        if previous is not None:
            yield from _losers(previous, directory=_extends(group[0], previous[0]))
        previous = group
    if previous is not None:
        yield from _losers(previous, directory=False)


def _losers(
    group: tuple[Path, list[Wanted]], directory: bool
) -> Iterator[tuple[Path, list[Wanted]]]:
    path, claimants = group
    if len(claimants) > 1 or directory:
        ordered = sorted(claimants, key=claim_order)
        yield path, ordered if directory else ordered[1:]


def renamed(
    groups: Iterable[tuple[Path, list[Wanted]]], claimed: Callable[[Path], bool]
) -> Iterator[tuple[str, Path]]:
    """(key, path) for every claimant that does not keep the path it wants.

    ``groups`` are (path, every claimant of it) in path order, each path once;
    ``claimed(path)`` says whether any claimant wants ``path`` or a path under it.
    """
    taken = _Taken(claimed)
    for path, losers in _contested(groups):
        for key, new in suffixed(path, losers, taken):
            taken.given.add(new)
            yield key, new
