"""Verdicts that bind: what a ``mismatch`` refuses beyond the reads of the job itself.

A job's verdict refuses every read of it (:meth:`glacierfs.read.ledger.Ledger.refuse`);
these are the questions the view asks beside reads: may a file be opened at all (an
empty or short file would read without a read reaching the daemon), may a job serve a
leaf of its archive that another job covers, and is an archive assembled from several
jobs what its tree hash says, once every leaf of it was handed out
(:meth:`glacierfs.read.trust.Trust.check_archive`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from glacierfs.jobs import Job
from glacierfs.read.ledger import MISMATCH, TREE_HASH
from glacierfs.read.trust import ObjectState, Trust
from glacierfs.treehash import MIB

Piece = tuple[Job, int, int]
"""``(job, offset in its output, length)``: bytes of an archive's file read through a job."""


class Verdicts:
    """The reader's verdicts, asked by the view (``look``: the reader's, which loads
    what earlier mounts learnt of a job)."""

    def __init__(self, look: Callable[[Job], Awaitable[ObjectState]], trust: Trust) -> None:
        self._look, self._trust = look, trust

    async def check(self, job: Job) -> None:
        """Raise IntegrityError when the job's verdict is ``mismatch`` (what an earlier
        mount learnt too): an open of its file fails, though no read would reach us."""
        await self._look(job)
        self._trust.ledger.refuse(job)

    def refused(self, job: Job) -> bool:
        """Whether the job's verdict is ``mismatch``, as far as this mount knows it now
        (:meth:`check` loads what earlier mounts learnt)."""
        return self._trust.ledger.verdict(job) == MISMATCH

    def proven(self, job: Job) -> bool:
        """Whether the job's whole output matched its tree hash, as far as this mount
        knows it now."""
        return self._trust.ledger.verdict(job) == TREE_HASH

    async def hand_archive(self, whole: Job, pieces: Sequence[Piece]) -> None:
        """Pieces of an archive's file were handed out: noted in the archive's view
        (``whole``: :meth:`~glacierfs.view.archives.Archive.whole`), and once it holds
        every leaf, judged against the archive's tree hash; raise IntegrityError on a
        mismatch, now and for every later read."""
        await self._look(whole)
        handed = [
            (job, leaf)
            for job, start, length in pieces
            for leaf in range(
                job.first_leaf + start // MIB, job.first_leaf + (start + length - 1) // MIB + 1
            )
        ]
        await self._trust.check_archive(whole, handed)
