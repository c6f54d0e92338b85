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

from tests.soak.vault import KIB, MIB, SoakJob

READ_SIZES = (1, 4 * KIB, 64 * KIB, 128 * KIB + 1, MIB, 3 * MIB + 7)
SAMPLES = 20
"""Problems described one by one in the report; the rest are only counted."""
WRONG_KEPT = 100
"""Wrong bytes of one read whose place is kept, to find what brought them."""


def compare(expected: bytes, got: bytes) -> list[int]:
    """Where an answer differs from the source, or lies beyond its end."""
    common = min(len(expected), len(got))
    wrong: list[int] = []
    if got[:common] != expected[:common]:
        pairs = zip(expected[:common], got[:common], strict=True)
        wrong = [i for i, (a, b) in enumerate(pairs) if a != b]
    return wrong + list(range(common, len(got)))


class Expiry:
    """The job expired during the run, and when its expiry began (monotonic)."""

    def __init__(self) -> None:
        self.job_id: str | None = None
        self.began = float("inf")

    def start(self, job_id: str) -> None:
        self.job_id, self.began = job_id, time.monotonic()

    def covers(self, job: SoakJob, moment: float) -> bool:
        return job.job_id == self.job_id and moment >= self.began


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
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(
        self, job: SoakJob, got: int, wrong: list[int], short: bool, expired: bool, what: str
    ) -> None:
        """A read's answer; ``wrong`` holds the offsets in the job's output of wrong bytes."""
        with self.lock:
            self.reads += 1
            self.bytes += got
            self.served_after_expiry += expired
            self.short_reads += short
            if wrong:
                self.wrong_bytes += len(wrong)
                self.wrong_reads += 1
                self.wrong.extend((job.job_id, offset) for offset in wrong[:WRONG_KEPT])
                self._sample(f"{what}: {len(wrong)} wrong bytes, the first at {wrong[0]}")

    def early_end(self, missing: int, what: str) -> None:
        with self.lock:
            self.early_ends += 1
            self.missing_bytes += missing
            self._sample(f"{what}: end of file {missing} bytes before the end")

    def failure(self, error: OSError, expired: bool, what: str) -> None:
        with self.lock:
            if error.errno == errno.EIO:
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
    ) -> None:
        super().__init__(name=f"reader-{seed}", daemon=True)
        self.random = random.Random(seed)
        self.mountpoint, self.jobs, self.sources = mountpoint, jobs, sources
        self.tally, self.expiry, self.stop = tally, expiry, stop

    def run(self) -> None:
        while not self.stop.is_set():
            self.session(self.random.choice(self.jobs))

    def session(self, job: SoakJob) -> None:
        try:
            fd = os.open(self.mountpoint / "jobs" / job.job_id, os.O_RDONLY)
        except OSError as error:
            expired = self.expiry.covers(job, time.monotonic())
            self.tally.failure(error, expired, f"open {job.kind} {job.job_id}")
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
                self.tally.failure(error, self.expiry.covers(job, time.monotonic()), what)
                return False
            expected = self.sources[job.job_id][position : position + len(got)]
            wrong = [position + i for i in compare(expected, got)]
            expired = self.expiry.covers(job, began)
            self.tally.answer(job, len(got), wrong, len(got) < end - position, expired, what)
            if not got:
                self.tally.early_end(end - position, what)
                return False
            position += len(got)
        return True
