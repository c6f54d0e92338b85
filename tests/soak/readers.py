"""Readers: random and sequential reads through the mount, every byte checked.

A reader opens ``jobs/<JobId>``, reads at random offsets (sizes from one byte to a
few MiB, some on leaf edges) or sequentially from a random place, compares each
answer with the job's source bytes, and often drops the file's page cache afterwards
so that later reads reach the daemon again rather than the kernel's copy.

What a read may end in: the right bytes, or EIO; a short answer is fine when
reading on gives the rest or EIO, never an early end of file. After its job expired
at the service, opening it may also give ENOENT (the mount no longer lists a job
that is not wholly cached). Anything else is counted as an unexpected error, and
bytes that differ from the source as wrong bytes.

A job the service lied about (:mod:`tests.soak.lies`) may also give the bytes its
record claimed, ENOENT, or an end of file past the size of what it claimed (never
before: a size the inventory disagrees with must end in EIO); an answer is right
when it is wholly one of the contents it may give, and what each read of such a job
ended in is counted by the kind of its latest lie.
"""

from __future__ import annotations

import errno
import mmap
import os
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tests.soak.lies import OUTCOMES, Lies
from tests.soak.vault import KIB, MIB, SoakJob

READ_SIZES = (1, 4 * KIB, 64 * KIB, 128 * KIB + 1, MIB, 3 * MIB + 7)
SAMPLES = 20
"""Problems described one by one in the report; the rest are only counted."""
WRONG_KEPT = 100
"""Wrong bytes of one read whose place is kept, to find what brought them."""
LIED_SHARE = 0.25
"""Reads of the spare jobs, which lies are told about (the rest: honest jobs and files)."""
ANSWERS_KEPT, ANSWER_SAMPLE = 5, 64
"""Wrong answers whose first bytes are kept, to find whose bytes they were."""


def compare(expected: bytes, got: bytes) -> list[int]:
    """Where an answer differs from the source, or lies beyond its end."""
    common = min(len(expected), len(got))
    wrong: list[int] = []
    if got[:common] != expected[:common]:
        pairs = zip(expected[:common], got[:common], strict=True)
        wrong = [i for i, (a, b) in enumerate(pairs) if a != b]
    return wrong + list(range(common, len(got)))


def judge(contents: list[bytes], got: bytes) -> tuple[int, list[int]]:
    """Which of the contents an answer wholly is (-1: none), and where it differs from
    the nearest one."""
    best: list[int] | None = None
    for number, expected in enumerate(contents):
        wrong = compare(expected, got)
        if not wrong:
            return number, []
        if best is None or len(wrong) < len(best):
            best = wrong
    return -1, best or []


class Expiry:
    """The job expired during the run, and when its expiry began (monotonic)."""

    def __init__(self) -> None:
        self.job_id: str | None = None
        self.archive: str | None = None
        self.began = float("inf")

    def start(self, job: SoakJob) -> None:
        self.job_id, self.archive, self.began = job.job_id, job.archive, time.monotonic()

    def covers(self, job: SoakJob, moment: float) -> bool:
        """Whether the job, or the file of its archive, may be gone by then."""
        ours = job.job_id == self.job_id or (job.kind == "file" and job.archive == self.archive)
        return ours and moment >= self.began


@dataclass
class Tally:
    reads: int = 0
    bytes: int = 0
    eio_live: int = 0
    eio_expired: int = 0
    served_after_expiry: int = 0
    gone_after_expiry: int = 0
    wrong_bytes: int = 0
    wrong_reads: int = 0
    short_reads: int = 0
    early_ends: int = 0
    missing_bytes: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)
    wrong: list[tuple[str, int]] = field(default_factory=list)  # (JobId, offset), the first
    answers: list[tuple[str, int, bytes]] = field(default_factory=list)  # wrong: whose bytes?
    eio_lied: int = 0
    eio_files: int = 0  # of archives/ files, which lied-about jobs may claim
    files_gone: int = 0  # opens of an archive's file that found it gone (renamed, say)
    lied: Counter[tuple[str, str]] = field(default_factory=Counter)  # (lie kind, outcome)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(
        self,
        job: SoakJob,
        at: tuple[int, bytes],
        wrong: list[int],
        short: bool,
        expired: bool,
        what: str,
    ) -> None:
        """A read's answer (where, and what came); ``wrong`` holds the offsets in the job's
        output of wrong bytes."""
        position, sample = at
        with self.lock:
            self.reads += 1
            self.bytes += len(sample)
            self.served_after_expiry += expired
            self.short_reads += short
            if wrong:
                self.wrong_bytes += len(wrong)
                self.wrong_reads += 1
                self.wrong.extend((job.job_id, offset) for offset in wrong[:WRONG_KEPT])
                if len(self.answers) < ANSWERS_KEPT:
                    first = wrong[0]
                    kept = sample[first - position :][:ANSWER_SAMPLE]
                    self.answers.append((job.job_id, first, kept))
                self._sample(f"{what}: {len(wrong)} wrong bytes, the first at {wrong[0]}")

    def early_end(self, missing: int, what: str) -> None:
        with self.lock:
            self.early_ends += 1
            self.missing_bytes += missing
            self._sample(f"{what}: end of file {missing} bytes before the end")

    def outcome(self, lie: str, outcome: str) -> None:
        """What a read of a job lied about ended in."""
        with self.lock:
            self.lied[lie, outcome] += 1

    def failure(
        self, error: OSError, expired: bool, what: str, lie: str | None = None, file: bool = False
    ) -> None:
        with self.lock:
            if lie is not None and error.errno in (errno.EIO, errno.ENOENT):
                self.lied[lie, "EIO" if error.errno == errno.EIO else "ENOENT"] += 1
                self.eio_lied += error.errno == errno.EIO
            elif file and not expired and error.errno in (errno.EIO, errno.ENOENT):
                self.eio_files += error.errno == errno.EIO
                self.files_gone += error.errno == errno.ENOENT
                self._sample(f"{what}: {errno.errorcode[error.errno or 0]}")
            elif error.errno == errno.EIO:
                if expired:
                    self.eio_expired += 1
                else:
                    self.eio_live += 1
                    self._sample(f"{what}: EIO (job not expired)")
            elif expired and error.errno == errno.ENOENT:
                self.gone_after_expiry += 1
            else:
                name = errno.errorcode.get(error.errno or 0, str(error.errno))
                self.errors[name] += 1
                self._sample(f"{what}: {name} ({error.strerror})")

    def _sample(self, text: str) -> None:
        if len(self.samples) < SAMPLES:
            self.samples.append(text)


class Reader(threading.Thread):
    def __init__(
        self,
        seed: int,
        mountpoint: Path,
        jobs: list[SoakJob],
        sources: dict[str, mmap.mmap],
        tally: Tally,
        expiry: Expiry,
        stop: threading.Event,
        lies: Lies | None = None,
    ) -> None:
        super().__init__(name=f"reader-{seed}", daemon=True)
        self.random = random.Random(seed)
        self.mountpoint, self.jobs, self.sources = mountpoint, jobs, sources
        self.tally, self.expiry, self.stop, self.lies = tally, expiry, stop, lies
        self.sizes = {job.job_id: job.size for job in jobs}

    def lie(self, job: SoakJob) -> str | None:
        return None if self.lies is None else self.lies.lied(job.job_id)

    def run(self) -> None:
        while not self.stop.is_set():
            pool = [] if self.lies is None else self.lies.pool
            lied = pool and self.random.random() < LIED_SHARE
            self.session(self.random.choice(pool if lied else self.jobs))

    def session(self, job: SoakJob) -> None:
        try:
            fd = os.open(self.mountpoint / job.path, os.O_RDONLY)
        except OSError as error:
            expired = self.expiry.covers(job, time.monotonic())
            what = f"open {job.kind} {job.job_id}"
            self.tally.failure(error, expired, what, self.lie(job), job.kind == "file")
            return
        try:
            if self.random.random() < 0.5:
                self.scattered(fd, job)
            else:
                self.sequential(fd, job)
            if self.random.random() < 0.7:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)

    def scattered(self, fd: int, job: SoakJob) -> None:
        for _ in range(self.random.randint(1, 8)):
            if self.stop.is_set():
                return
            offset = self.random.randrange(job.size)
            if self.random.random() < 0.3:  # straddle a leaf edge
                offset = max(0, min(job.size - 1, offset // MIB * MIB - self.random.randint(0, 9)))
            self.read(fd, job, offset, self.random.choice(READ_SIZES))

    def sequential(self, fd: int, job: SoakJob) -> None:
        offset = 0 if self.random.random() < 0.5 else self.random.randrange(job.size)
        chunk = self.random.choice((128 * KIB, MIB))
        end = min(job.size, offset + self.random.choice((4 * MIB, 16 * MIB, job.size)))
        while offset < end and not self.stop.is_set():
            if not self.read(fd, job, offset, min(chunk, end - offset)):
                return
            offset += chunk

    def read(self, fd: int, job: SoakJob, offset: int, size: int) -> bool:
        """One read as a program makes it, checked; False when it failed.

        A short answer is followed up where it ended, as ``read(2)`` callers do: the
        rest comes, or an error (the job expired and only the start was cached), or an
        early end of file, which would silently truncate a copy.
        """
        position, end = offset, min(offset + size, job.size)
        while position < end:
            what = f"{job.kind} {job.job_id} bytes {position}+{end - position}"
            began = time.monotonic()
            try:
                got = os.pread(fd, end - position, position)
            except OSError as error:  # an error is the expiry's once it has begun
                expired = self.expiry.covers(job, time.monotonic())
                self.tally.failure(error, expired, what, self.lie(job), job.kind == "file")
                return False
            if not self.check(job, position, got, (began, end - position), what):
                return False
            position += len(got)
        return True

    def check(
        self, job: SoakJob, position: int, got: bytes, asked: tuple[float, int], what: str
    ) -> bool:
        """Judge one answer (asked: when, and how many bytes); False at an end of file."""
        lie = self.lie(job)  # after the answer: a lie told during the read counts
        ids = [job.job_id] if self.lies is None else self.lies.contents(job.job_id)
        number, wrong = judge([self.sources[i][position : position + len(got)] for i in ids], got)
        expired = self.expiry.covers(job, asked[0])
        at = [position + i for i in wrong]
        self.tally.answer(job, (position, got), at, len(got) < asked[1], expired, what)
        if lie is not None:
            outcome = "early end" if not got else OUTCOMES[0 if number == 0 else 1]
            self.tally.outcome(lie, outcome if number >= 0 else "wrong bytes")
        claimed = [self.sizes[i] for i in ids[1:]]  # a file the size its record claimed
        if not got and not any(position >= size for size in claimed):
            self.tally.early_end(asked[1], what)
        return bool(got)
