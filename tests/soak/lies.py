"""Lies the service tells about jobs, told at random to two spare jobs while readers read.

The vault has two *spare* jobs beside the honest ones: a second job of a middle-sized
archive and a second range job of the biggest. Now and then the chaos thread has the
emulator rewrite one spare's record (``POST /_emulator/jobs/ID/set``), starts a fresh
spare of that shape to lie about next time (readers read it once the mount lists it),
and, at least ``hold`` seconds later, puts the record back; the bytes the emulator sends
for the job stay its own. The kinds (issue 20):

``claim``        the record claims another archive whole (its ArchiveId, size, tree
                 hashes and range: a claimer whose record is consistent, only its bytes
                 differ)
``claim-id``     only the ArchiveId is another archive's
``range-shift``  the range job's record names another range of its archive (the honest
                 range job's)
``range-claim``  the range job's record claims another archive whole
``size``         ArchiveSizeInBytes disagrees with the inventory (0, one byte less, a
                 MiB more)
``wrong-type``   one field of the wrong type (a size "abc", Completed "yes", ...)
``control-id``   the JobId holds control characters (ESC ] ... BEL, a newline, ESC [31m)

A job once lied about stays *lied about* for the rest of the run: a read of it may give
its own bytes, the bytes its record claimed (another job's, which are that archive's own
bytes), EIO, ENOENT (its record hidden, or named otherwise) or an end of file past the
size of what it claimed; never any other byte, nor an end of file before. The honest
jobs are held to their own bytes as before.
"""

from __future__ import annotations

import mmap
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from tests.soak.vault import MIB, VAULT, SoakJob
from tests.support.emulator import Emulator
from tests.support.vault import retrieve

ARCHIVE_LIES = ("claim", "claim-id", "size", "wrong-type", "control-id")
RANGE_LIES = ("range-shift", "range-claim", "size", "wrong-type", "control-id")
KINDS = tuple(dict.fromkeys(ARCHIVE_LIES + RANGE_LIES))
CLAIMED = ("ArchiveId", "ArchiveSizeInBytes", "ArchiveSHA256TreeHash", "RetrievalByteRange")
WRONG_TYPES: tuple[dict[str, Any], ...] = (
    {"ArchiveSizeInBytes": "abc"},
    {"Completed": "yes"},
    {"CreationDate": 7},
    {"SHA256TreeHash": 42},
    {"RetrievalByteRange": ["0", "1"]},
    {"ArchiveId": {"id": 1}},
)
CONTROL = "\x1b]0;glacierfs\x07\n\x1b[31msaved: "
OUTCOMES = ("own bytes", "claimed bytes", "EIO", "ENOENT", "early end")


@dataclass(frozen=True)
class Lie:
    kind: str
    job: SoakJob
    fields: dict[str, Any]
    claimed: SoakJob | None  # the job whose bytes the record claims, if any
    told: float  # monotonic


class Lies:
    """The spare jobs' lies: which are told now, and what each job ever claimed.

    A lie is told to a spare never lied about before (its verdict is its own: a job found
    a mismatch stays refused, which would make every later lie about it moot), and a
    fresh spare of the same shape is started in its place, honest until its turn comes;
    every spare stays in :attr:`pool`, which readers read beside the honest jobs.
    """

    def __init__(
        self,
        emulator: Emulator,
        jobs: list[SoakJob],
        sources: dict[str, mmap.mmap],
        seed: int,
        hold: float,
        listed: Callable[[SoakJob], bool],
    ) -> None:
        self.emulator, self.jobs, self.sources, self.hold = emulator, jobs, sources, hold
        self.client = emulator.client()
        self.random = random.Random(seed * 7919 + 1)
        self.shapes = {job.kind: job for job in jobs if job.spare}
        self.fresh: dict[str, SoakJob | None] = dict(self.shapes)  # never lied about
        self.pool = list(self.shapes.values())  # every spare: readers pick from it
        self.unstarted = 0  # fresh spares the service (under faults) did not start
        self.pending: list[SoakJob] = []  # fresh spares the mount does not list yet
        self.listed = listed
        self.records = {job.job_id: emulator.set_job(job.job_id) for job in jobs}  # true ones
        self.active: dict[str, Lie] = {}
        self.told: Counter[str] = Counter()
        self.lifted = 0
        self.claims: dict[str, list[str]] = {}  # job id -> the job ids whose bytes it claimed
        self.latest: dict[str, str] = {}  # job id -> the kind of its latest lie
        self.lock = threading.Lock()

    def step(self) -> None:
        """Tell a lie to a fresh spare, or lift one that was told long enough."""
        now = time.monotonic()
        ripe = [lie for lie in self.active.values() if now - lie.told >= self.hold]
        for job in [job for job in self.pending if self.listed(job)]:
            self.pending.remove(job)
            self.fresh[job.kind] = job
            self.pool.append(job)
        ready = [job for job in self.fresh.values() if job is not None]
        room = len(self.active) < len(self.shapes)
        if ready and room and (not ripe or self.random.random() < 0.6):
            self.tell(self.random.choice(ready))
        elif ripe:
            self.lift(self.random.choice(ripe))
        waiting = {job.kind for job in self.pending}
        for shape, job in self.fresh.items():
            if job is None and shape not in waiting:
                self._replace(self.shapes[shape])

    def tell(self, job: SoakJob) -> Lie:
        kind = self.random.choice(ARCHIVE_LIES if job.kind == "archive" else RANGE_LIES)
        fields, claimed = self._fields(kind, job)
        self.emulator.set_job(job.job_id, **fields)
        lie = Lie(kind, job, fields, claimed, time.monotonic())
        with self.lock:
            self.active[job.job_id] = lie
            self.told[kind] += 1
            self.latest[job.job_id] = kind
            if claimed is not None:
                self.claims.setdefault(job.job_id, []).append(claimed.job_id)
        self._replace(job)
        return lie

    def _replace(self, job: SoakJob) -> None:
        """A fresh spare of the same shape: the same archive and range, a new job."""
        whole = job.kind == "archive"
        byte_range = None if whole else f"{job.offset}-{job.offset + job.size - 1}"
        self.fresh[job.kind] = None
        try:
            job_id = retrieve(self.client, VAULT, job.archive or "", byte_range)
        except (BotoCoreError, ClientError):  # a fault struck InitiateJob: next step
            self.unstarted += 1
            return
        fresh = replace(job, job_id=job_id)
        self.records[job_id] = self.emulator.set_job(job_id)
        self.sources[job_id] = self.sources[job.job_id]
        self.pending.append(fresh)  # to the pool once the mount lists it

    def lift(self, lie: Lie) -> None:
        true = self.records[lie.job.job_id]
        self.emulator.set_job(lie.job.job_id, **{name: true[name] for name in lie.fields})
        with self.lock:
            del self.active[lie.job.job_id]
            self.lifted += 1

    def lied(self, job_id: str) -> str | None:
        """The kind of the latest lie told about a job, None for an honest one."""
        with self.lock:
            return self.latest.get(job_id)

    def contents(self, job_id: str) -> list[str]:
        """Whose bytes a read of a job may give: its own, then those it claimed."""
        with self.lock:
            return [job_id, *self.claims.get(job_id, [])]

    def _fields(self, kind: str, job: SoakJob) -> tuple[dict[str, Any], SoakJob | None]:
        choose = self.random.choice
        if kind in ("claim", "range-claim", "claim-id"):
            others = [
                j
                for j in self.jobs
                if j.kind == "archive" and not j.spare and j.archive != job.archive
            ]
            other = choose([j for j in others if j.size >= MIB] or others)
            record = self.records[other.job_id]
            names = ("ArchiveId",) if kind == "claim-id" else (*CLAIMED, "SHA256TreeHash")
            return {name: record[name] for name in names}, other
        if kind == "range-shift":
            honest = next(j for j in self.jobs if j.kind == "range" and not j.spare)
            record = self.records[honest.job_id]
            names = ("RetrievalByteRange", "SHA256TreeHash")
            return {name: record[name] for name in names}, honest
        if kind == "size":
            size = int(self.records[job.job_id]["ArchiveSizeInBytes"])
            return {"ArchiveSizeInBytes": choose((0, size - 1, size + MIB))}, None
        if kind == "wrong-type":
            return dict(choose(WRONG_TYPES)), None
        return {"JobId": job.job_id[:24] + CONTROL + job.job_id[24:]}, None
