"""Jobs whose output does not match their record: they cover nothing of their archive.

A mount or ``retrieve``'s saver keeps each job's verdict in the disk cache's metadata;
``mismatch`` means the job's bytes are not what its record says (another archive's,
say), whoever started it. Such a job is no live job of its archive for planning (the
archive is requested again), and its leaves do not count as cached
(:meth:`glacierfs.retrieve.cacheview.CacheIndex.mismatched`).
"""

from __future__ import annotations

from collections.abc import Callable

from glacierfs.retrieve.cacheview import CacheIndex
from glacierfs.retrieve.coverage import LiveJob

MISMATCHED = "its output does not match its record"


class Mismatched:
    """Sifts live jobs by the verdicts the cache holds; says each mismatch once, through
    ``event`` (for jobs of archives ``selected``, shown by ``path``)."""

    def __init__(
        self,
        index: CacheIndex,
        vault_arn: str,
        event: Callable[[str, str], None],
        path: Callable[[str], str],
        selected: Callable[[str], bool],
    ) -> None:
        self._index, self._vault_arn = index, vault_arn
        self._event, self._path, self._selected = event, path, selected
        self._told: set[str] = set()

    def sift(self, live: dict[str, list[LiveJob]]) -> tuple[dict[str, list[LiveJob]], set[str]]:
        """The live jobs but the mismatched ones, and the ids of every mismatched job the
        cache knows (verdicts are read again each time: a save may have found one)."""
        mismatched = self._index.mismatched(self._vault_arn)
        kept: dict[str, list[LiveJob]] = {}
        for archive_id, jobs in live.items():
            for job in jobs:
                if job.job_id not in mismatched:
                    kept.setdefault(archive_id, []).append(job)
                elif self._selected(archive_id) and job.job_id not in self._told:
                    self._told.add(job.job_id)
                    where = self._path(archive_id)
                    self._event("note", f"{where}: job {job.job_id}: {MISMATCHED}: not counted")
        return kept, mismatched
