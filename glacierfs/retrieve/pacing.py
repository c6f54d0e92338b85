"""How much to request at once, and in which pieces. Pure code.

An output lasts 24 hours after its job completes, so requesting more than this host can
save in a day pays for outputs that expire unread. Two limits hold a run back:

* bytes requested in any 24 hours of the service's clock stay within ``per_day``
  (a rolling window, so no day holds more than the cap however days are cut);
* jobs whose output is not yet saved stay within ``max_jobs``;
* with the account's ``BytesPerHour`` retrieval policy (Standard retrievals only), bytes
  requested in any hour stay within ``per_hour``: the service spreads a job's bytes over
  4 hours to reckon its rate, so no hour over the rate means no peak over it either;
* the disk: bytes requested at once stay within the ``room`` the caller reckons the
  cache has for new outputs (cache size minus what it must keep).

An archive larger than a day's cap (an hour's, or the cache) cannot be saved from one
job, so it is requested in pieces: runs of 1 MiB leaves of 2^k leaves each, starting at
a multiple of their length (or running to the archive's end from a multiple of the next
power of two), of at most a quarter of the cache when the cache is what limits them, so
that several pieces flow at once. Those are the ranges whose tree hash is a node of the
archive's tree, so the service checks every piece with ``SHA256TreeHash`` and the cache
joins them into the archive. A piece is the largest such run within the cap. An archive
that is partly cached, or partly covered by live jobs, is requested only for its gaps,
in the same aligned runs. Gaps are found on runs of leaves (:mod:`glacierfs.intervals`), so planning
a 40 TiB archive costs its pieces, not its 40 million leaves.

Batches are taken in order and stop at the first unit that does not fit, so that a big
archive is not passed over forever by smaller ones behind it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from glacierfs.intervals import Run, Runs
from glacierfs.intervals import gaps as missing_runs
from glacierfs.retrieve.selection import Archive
from glacierfs.treehash import MIB

DAY = 86400.0

DATE_SLACK = 1.0
"""Seconds added to each request's day: the service's Date header, by which requests are
dated, has a resolution of one second."""


@dataclass(frozen=True)
class Unit:
    """One job to request: bytes ``start..end`` (inclusive) of an archive, or all of it."""

    archive: Archive
    start: int
    end: int
    whole: bool

    @property
    def size(self) -> int:
        return self.end - self.start + 1

    @property
    def byte_range(self) -> tuple[int, int] | None:
        """What InitiateJob is given: None for the whole archive."""
        return None if self.whole else (self.start, self.end)

    @property
    def leaves(self) -> Run:
        """The leaves it requests, ``(first, stop)``."""
        return self.start // MIB, -(-(self.end + 1) // MIB)


HOUR = 3600.0

PIECES_PER_CACHE = 4
"""An archive larger than the cache comes in pieces of at most this share of it."""


@dataclass(frozen=True)
class Limits:
    per_day: int  # bytes requested in any 24 hours
    max_jobs: int | None = None  # jobs whose output is not yet saved
    per_hour: int | None = None  # bytes requested in any hour (a BytesPerHour policy)
    disk: int | None = None  # the cache's size: no unit may be larger

    @property
    def largest(self) -> int:
        """The most bytes one job may ask for: larger archives come in pieces."""
        return min(n for n in (self.per_day, self.per_hour, self.disk) if n is not None)

    @property
    def piece(self) -> int:
        """The most bytes one piece of a split archive may hold."""
        disk = None if self.disk is None else max(self.disk // PIECES_PER_CACHE, MIB)
        return min(n for n in (self.per_day, self.per_hour, disk) if n is not None)


@dataclass(frozen=True)
class Requested:
    """A request made earlier: when (service time) and how many bytes."""

    when: float
    size: int


def _ceil_pow2(count: int) -> int:
    return 1 if count <= 1 else 1 << (count - 1).bit_length()


def block_leaves(per_day: int) -> int:
    """The most leaves one piece may hold: the largest 2^k leaves within a day's cap."""
    leaves = per_day // MIB
    return 1 if leaves < 2 else 1 << (leaves.bit_length() - 1)


def aligned_pieces(first: int, stop: int, leaves: int, block: int) -> list[tuple[int, int]]:
    """(first leaf, count) runs covering leaves ``first..stop-1`` of an archive of
    ``leaves`` leaves, each a node of its tree and at most ``block`` (2^k) leaves."""
    pieces: list[tuple[int, int]] = []
    position = first
    while position < stop:
        tail = leaves - position
        if stop == leaves and tail <= block and position % _ceil_pow2(tail) == 0:
            pieces.append((position, tail))
            break
        size = min(block, position & -position) if position else block
        size = min(size, 1 << ((stop - position).bit_length() - 1))
        pieces.append((position, size))
        position += size
    return pieces


def gaps(leaves: int, covered: Iterable[Run]) -> Runs:
    """(first, stop) runs of the leaves ``0..leaves-1`` not in ``covered`` (runs)."""
    return missing_runs(0, leaves, covered)


def units_for(
    archive: Archive, covered: Iterable[Run], largest: int, piece: int | None = None
) -> list[Unit]:
    """The jobs that retrieve what ``covered`` (runs of leaves cached or under live jobs)
    lacks: the whole archive if it is at most ``largest`` bytes, else pieces of at most
    ``piece`` (default ``largest``)."""
    missing = gaps(archive.leaves, covered)
    if not missing:
        return []
    if missing == [(0, archive.leaves)] and archive.size <= largest:
        return [Unit(archive, 0, archive.size - 1, True)]
    block = block_leaves(largest if piece is None else piece)
    units = []
    for first, stop in missing:
        for leaf, count in aligned_pieces(first, stop, archive.leaves, block):
            end = min((leaf + count) * MIB, archive.size) - 1
            units.append(Unit(archive, leaf * MIB, end, False))
    return units


def used(history: Iterable[Requested], now: float, window: float = DAY) -> int:
    """Bytes requested in the ``window`` (24 hours) up to ``now``."""
    return sum(r.size for r in history if r.when + window + DATE_SLACK > now)


def next_room(history: Iterable[Requested], now: float) -> float | None:
    """When the oldest request of the last 24 hours leaves the window (None: none in it)."""
    ends = [r.when + DAY + DATE_SLACK for r in history if r.when + DAY + DATE_SLACK > now]
    return min(ends, default=None)


def take_batch(
    units: Sequence[Unit],
    history: Iterable[Requested],
    outstanding: int,
    now: float,
    limits: Limits,
    disk_room: int | None = None,
) -> list[Unit]:
    """The units, in order, that may be requested now (``disk_room``: bytes the cache
    can take besides what it must keep; None: the disk is not counted)."""
    history = list(history)
    rooms = [limits.per_day - used(history, now)]
    if limits.per_hour is not None:
        rooms.append(limits.per_hour - used(history, now, HOUR))
    if disk_room is not None:
        rooms.append(disk_room)
    room = min(rooms)
    jobs = None if limits.max_jobs is None else limits.max_jobs - outstanding
    batch: list[Unit] = []
    for unit in units:
        if unit.size > room or (jobs is not None and len(batch) >= jobs):
            break
        batch.append(unit)
        room -= unit.size
    return batch
