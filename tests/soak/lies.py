"""Lies the service tells about jobs, told at random to two spare jobs while readers read.

The vault has two *spare* jobs beside the honest ones: a second job of a middle-sized
archive and a second range job of the biggest. Now and then the chaos thread has the
emulator rewrite one spare's record (``POST /_emulator/jobs/ID/set``) and, at least
``hold`` seconds later, puts it back; the bytes the emulator sends for the job stay its
own. The kinds (issue 20):

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

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from tests.soak.vault import MIB, SoakJob
from tests.support.emulator import Emulator

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
    """The spare jobs' lies: which are told now, and what each job ever claimed."""

    def __init__(self, emulator: Emulator, jobs: list[SoakJob], seed: int, hold: float) -> None:
        self.emulator, self.jobs, self.hold = emulator, jobs, hold
        self.random = random.Random(seed * 7919 + 1)
        self.spares = [job for job in jobs if job.spare]
        self.records = {job.job_id: emulator.set_job(job.job_id) for job in jobs}  # true ones
        self.active: dict[str, Lie] = {}
        self.told: Counter[str] = Counter()
        self.lifted = 0
        self.claims: dict[str, list[str]] = {}  # job id -> the job ids whose bytes it claimed
        self.latest: dict[str, str] = {}  # job id -> the kind of its latest lie
        self.lock = threading.Lock()

    def step(self) -> None:
        """Tell a lie to a spare job that tells none, or lift one that was told long enough."""
        now = time.monotonic()
        free = [job for job in self.spares if job.job_id not in self.active]
        ripe = [lie for lie in self.active.values() if now - lie.told >= self.hold]
        if free and (not ripe or self.random.random() < 0.6):
            self.tell(self.random.choice(free))
        elif ripe:
            self.lift(self.random.choice(ripe))

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
        return lie

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
