"""How much the cache can take for new outputs: the disk as a limit on requests. Pure code.

A retrieval is paid for once; its output lasts 24 hours at the service, then the cache
holds the only copy (*custody*) until it is delivered or released. So ``retrieve``
requests only what the cache can keep: its size, less the bytes of the selected archives
it holds and has not delivered (saved outputs become custody when their jobs expire, so
they are counted from the moment they are saved), less the outputs requested and not
yet saved. What delivery took out of the cache (:class:`Held`) is not counted: an
archive delivered whole, and the pieces of a big archive already written to its
destination's temporary file.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

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


def disk_room(holdings: Iterable[Holding], capacity: int, held: Held) -> int:
    """``capacity`` less what the cache must keep or is about to receive (the module)."""
    kept = 0
    for holding in holdings:
        archive = holding.archive
        if held.delivered(archive.archive_id):
            continue
        written = held.written(archive.archive_id)
        cached = set(holding.cached) - written
        coming = {i for job in holding.unsaved_jobs() for i in job.leaves} - set(holding.cached)
        kept += sum(min(MIB, archive.size - i * MIB) for i in cached | coming)
    return capacity - kept
