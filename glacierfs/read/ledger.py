"""The verdicts and problems of jobs, kept in memory and in the disk cache's metadata.

A verdict is what ``user.glacierfs.verified`` says of a job's whole output; ``mismatch``
is final: every read of the job is refused from then on (:meth:`Ledger.refuse`). A
problem is a disagreement in what the service said of the job (its record against
itself, its inventory entry, the bytes it sent), logged once and shown by ``status``;
it makes the verdict ``mismatch`` too: what ``status`` calls a mismatch is never read.
Both are saved, so a remount knows them. The rules that reach them are in
:mod:`glacierfs.read.trust`.
"""

from __future__ import annotations

import logging

from glacierfs.cache.aio import AsyncDisk
from glacierfs.errors import IntegrityError
from glacierfs.jobs import Job

log = logging.getLogger("glacierfs.read.trust")  # one logger for trust's verdicts

BLOCK, SIZE = "block", "size"
"""How a leaf was verified: by a response's checksum, or by its length alone."""

TREE_HASH, MISMATCH, BLOCKS, NONE = "tree-hash", "mismatch", "blocks", "none"
"""Verdicts (what ``user.glacierfs.verified`` says); ``mismatch`` is final."""

VERIFIED_META = "verified"
PROBLEMS_META = "problems"
REFUSED = "; every read of it fails from now on"


class Ledger:
    """Verdicts and problems of jobs, kept in the disk cache's metadata."""

    def __init__(self, disk: AsyncDisk) -> None:
        self._disk = disk
        self._verdicts: dict[str, str] = {}
        self._problems: dict[str, list[str]] = {}

    async def load(self, job: Job) -> None:
        """What an earlier mount learnt of the job."""

        saved = await self._disk.get_meta(VERIFIED_META, job.job_id)
        problems = await self._disk.get_meta(PROBLEMS_META, job.job_id)
        if isinstance(saved, str):
            self._verdicts.setdefault(job.job_id, saved)
        if isinstance(problems, list):
            known = self._problems.setdefault(job.job_id, [])
            known += [p for p in problems if isinstance(p, str) and p not in known]
        if self._problems.get(job.job_id):
            self._verdicts[job.job_id] = MISMATCH  # kept by a mount from before they bound

    def verdict(self, job: Job) -> str | None:
        return self._verdicts.get(job.job_id)

    def problems(self, job: Job) -> list[str]:
        return list(self._problems.get(job.job_id, ()))

    async def record(self, job: Job, verdict: str, why: str | None = None) -> None:
        """Keep a verdict; a mismatch is also a problem, and is logged."""
        if self._verdicts.get(job.job_id) == verdict:
            return
        self._verdicts[job.job_id] = verdict
        # a mismatch's reason is known with the verdict, before any await: a read that
        # sees the verdict meanwhile is refused with it
        noted = verdict == MISMATCH and self._keep(job, f"{why or 'mismatch'}{REFUSED}")
        await self._disk.put_meta(VERIFIED_META, job.job_id, verdict)
        if noted:
            await self._disk.put_meta(PROBLEMS_META, job.job_id, self._problems[job.job_id])
        elif verdict == TREE_HASH:
            log.info("job %s: whole output verified against its tree hash", job.job_id)

    async def note(self, job: Job, problem: str) -> None:
        """A disagreement about the job: logged once, kept, shown by ``status``; the job's
        verdict is ``mismatch`` from now on, so every read of it fails."""
        new = self._keep(job, problem)
        condemned = self._verdicts.get(job.job_id) != MISMATCH
        self._verdicts[job.job_id] = MISMATCH  # before any await: reads see it at once
        if condemned:
            await self._disk.put_meta(VERIFIED_META, job.job_id, MISMATCH)
        if new:
            await self._disk.put_meta(PROBLEMS_META, job.job_id, self._problems[job.job_id])

    def _keep(self, job: Job, problem: str) -> bool:
        """Keep and log a problem; False when it was known."""
        known = self._problems.setdefault(job.job_id, [])
        if problem in known:
            return False
        known.append(problem)
        log.error("job %s: %s", job.job_id, problem)
        return True

    def refuse(self, job: Job) -> None:
        """Raise IntegrityError when the job's output is known not to match its record."""
        if self._verdicts.get(job.job_id) == MISMATCH:
            problems = self._problems.get(job.job_id) or ["its output does not match its record"]
            why = next((p for p in problems if p.endswith(REFUSED)), problems[0])
            raise IntegrityError(f"job {job.job_id}: {why}")

    def verification(self, job: Job, hows: set[str]) -> str:
        """What ``user.glacierfs.verified`` says, given how the leaves read so far were
        verified (when the output is not whole yet)."""
        if self._problems.get(job.job_id):
            return MISMATCH
        verdict = self._verdicts.get(job.job_id)
        if verdict is not None:
            return verdict
        if not hows:
            return NONE
        return BLOCKS if hows == {BLOCK} else SIZE
