"""How much the cache can take for new outputs: the disk as a limit on requests. Pure code,
but for reading the cache's classes (:func:`undelivered_bytes`).

A retrieval is paid for once; its output lasts 24 hours at the service, then the cache
holds the only copy (*custody*, :mod:`glacierfs.custody`) until it is delivered or
released. Every byte in the cache that is not delivered is custody already, or will be
once the job that could send it again expires (a replaceable byte of any archive,
saved by ``retrieve`` or read through a mount). So ``retrieve`` requests only what the
cache can keep without ever touching custody: its size, less every byte not delivered,
less the outputs requested and not yet saved. What delivery took out of the cache
(:class:`Held`) is not counted: an archive delivered whole, and the pieces of a big
archive already written to its destination's temporary file.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from glacierfs.custody import cache_classes
from glacierfs.errors import GlacierfsError
from glacierfs.intervals import gaps, union
from glacierfs.jobs import job_from_record
from glacierfs.retrieve.coverage import Holding
from glacierfs.treehash import MIB


class Held(Protocol):
    """What delivery took out of the cache: an archive delivered counts as held whole,
    and the leaves of a big archive already written to its destination as held."""

    def delivered(self, archive_id: str) -> bool: ...

    def written(self, archive_id: str) -> frozenset[int]: ...

    def finished(self, archive_id: str) -> bool:
        """Nothing more to do for it once held whole: delivered, or given up."""
        ...

    def given_up(self, archive_id: str) -> bool:
        """Its delivery failed for good (its bytes came out wrong)."""
        ...


class NothingDelivered:
    def delivered(self, archive_id: str) -> bool:
        return False

    def written(self, archive_id: str) -> frozenset[int]:
        return frozenset()

    def finished(self, archive_id: str) -> bool:
        return True

    def given_up(self, archive_id: str) -> bool:
        return False


def undelivered_bytes(cache_root: Path, records: Iterable[Any], service_now: float) -> int:
    """Bytes in the cache in custody or replaceable, given the service's job records."""
    live = []
    for record in records:
        try:
            live.append(job_from_record(record))
        except GlacierfsError:
            continue  # in progress, failed, or unusable: serves no leaf now
    classes = cache_classes(cache_root, live, service_now)
    return classes.custody + classes.replaceable


def disk_room(holdings: Iterable[Holding], capacity: int, held: Held, kept: int = 0) -> int:
    """``capacity`` less what the cache must keep (``kept``: every byte not delivered)
    and the leaves on their way to it, of the selected archives not delivered."""
    for holding in holdings:
        archive = holding.archive
        if held.delivered(archive.archive_id):
            continue
        cached = holding.cached_runs
        coming = union(*(gaps(*job.leaves, cached) for job in holding.unsaved_jobs()))
        kept += sum(min(stop * MIB, archive.size) - first * MIB for first, stop in coming)
    return capacity - kept
