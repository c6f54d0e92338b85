"""The daemon's resident memory and open files over the run, and what counts as growth.

The rule: the *start* is the highest sample of the warm-up (the first fifth of the
reading time: caches fill, the connection pool opens, Python's heap reaches its
working size); the *end* is the last sample taken while the readers still run. The
daemon has not grown when the end is at most the start plus 10 % (and 8 MiB, so that
a small heap is not held to a few hundred KiB) for RSS, and at most the start plus 2
for open files. A leak grows with time, so it shows at the end; a peak during the
warm-up does not count against the end. Runs shorter than a minute are all warm-up:
their figures are printed, not judged.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

MIB = 1 << 20
WARM_UP = 0.2
"""Share of the reading time before the start figure is taken."""
RSS_MARGIN, RSS_FLOOR, FD_MARGIN = 0.10, 8 * MIB, 2
JUDGED = 60.0
"""Shortest reading time whose figures are judged: a shorter run is all warm-up."""
INTERVAL = 2.0


@dataclass(frozen=True)
class Sample:
    at: float  # monotonic
    rss: int  # bytes
    fds: int


def sample(pid: int) -> Sample | None:
    """The process's VmRSS and number of open descriptors; None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return Sample(time.monotonic(), rss * 1024, fds)


class Watcher(threading.Thread):
    """Samples the daemon every few seconds until stopped."""

    def __init__(self, pid: int, stop: threading.Event) -> None:
        super().__init__(name="watcher", daemon=True)
        self.pid, self.stop = pid, stop
        self.samples: list[Sample] = []
        self.began = time.monotonic()

    def run(self) -> None:
        while True:
            taken = sample(self.pid)
            if taken is not None:
                self.samples.append(taken)
            if self.stop.wait(INTERVAL):  # pacing, not a sync
                return

    def latest(self) -> Sample | None:
        return self.samples[-1] if self.samples else None


@dataclass(frozen=True)
class Growth:
    start: Sample
    end: Sample
    max_rss: int
    max_fds: int
    span: float  # seconds the readers ran

    @property
    def judged(self) -> bool:
        return self.span >= JUDGED

    @property
    def rss_ok(self) -> bool:
        return self.end.rss <= self.start.rss + max(self.start.rss * RSS_MARGIN, RSS_FLOOR)

    @property
    def fds_ok(self) -> bool:
        return self.end.fds <= self.start.fds + FD_MARGIN


def growth(samples: list[Sample], began: float, ended: float) -> Growth | None:
    """Start, end and maxima of the samples taken while the readers ran."""
    running = [s for s in samples if began <= s.at <= ended]
    if not running:
        return None
    warm_until = began + WARM_UP * (ended - began)
    warm = [s for s in running if s.at <= warm_until] or running[:1]
    start = Sample(warm[-1].at, max(s.rss for s in warm), max(s.fds for s in warm))
    return Growth(
        start,
        running[-1],
        max(s.rss for s in running),
        max(s.fds for s in running),
        ended - began,
    )
