"""One soak run: start everything, read under chaos for the duration, stop everything.

:class:`Soak` owns the processes it starts (the emulator and the daemon) and
:meth:`Soak.close` stops them by PID whatever happened, Ctrl-C included: unmount
(lazily if it must), then terminate and kill.
"""

from __future__ import annotations

import mmap
import os
import random
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from glacierfs.control import mount_stats
from tests.soak.blame import explained, unchecked_flips, whose
from tests.soak.chaos import Chaos, kinds
from tests.soak.lies import Lies
from tests.soak.readers import Expiry, Reader, Tally
from tests.soak.vault import VAULT, SoakJob, archive_files, build, cache_size
from tests.soak.watch import Growth, Sample, Watcher, growth, sample
from tests.support.emulator import Emulator
from tests.support.mount import Mount, unmount, wait_for

EXIT_BOUND = 5.0
"""Seconds the daemon has to exit after the unmount."""
PROGRESS = 60.0
"""Seconds between progress lines."""


@dataclass(frozen=True)
class Settings:
    duration: float
    readers: int
    seed: int
    small: bool
    drop_checksum: bool
    cache_fraction: float
    lies: bool = True

    @property
    def refresh(self) -> float:
        """The mount's listing refresh: a lie reaches the daemon with the next listing."""
        return 5.0 if self.small else 20.0


@dataclass
class Result:
    settings: Settings
    jobs: list[SoakJob]
    cache_size: int
    tally: Tally
    chaos: Chaos
    files: list[SoakJob] = field(default_factory=list)  # archives/ files, read too
    expired: str | None = None
    first: Sample | None = None
    growth: Growth | None = None
    idle: Sample | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    counters: dict[str, Any] = field(default_factory=dict)
    exit_time: float | None = None
    exit_code: int | None = None
    hung_readers: int = 0
    explained: int = 0  # wrong bytes an answer with a flipped byte and no checksum brought
    served: list[str] = field(default_factory=list)  # whose bytes the wrong answers were
    unchecked_flips: int = 0  # answers sent with a flipped byte and no checksum
    log: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


class Soak:
    def __init__(self, settings: Settings, workdir: Path) -> None:
        self.settings, self.workdir = settings, workdir
        self.stop = threading.Event()
        self.emulator: Emulator | None = None
        self.mount: Mount | None = None
        self.sources: dict[str, mmap.mmap] = {}

    def run(self) -> Result:
        settings = self.settings
        self.emulator = Emulator(self.workdir / "emulator", "--fault-seed", str(settings.seed))
        emulator = self.emulator.start()
        jobs = build(emulator, self.workdir, settings.small)
        files = archive_files(jobs, settings.small)
        for job in jobs + files:
            with job.expected.open("rb") as stream:
                self.sources[job.job_id] = mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ)
        size = cache_size(jobs, settings.cache_fraction)
        self.mount = self._mount(emulator, size)
        self.mount.start()
        listed = self.mount.path / "jobs"
        wait_for(lambda: {j.job_id for j in jobs} <= set(os.listdir(listed)), "every job listed")
        root = self.mount.path
        wait_for(lambda: all((root / f.path).exists() for f in files), "every archive's file")
        emulator.reset_counters()
        result = Result(settings, jobs, size, Tally(), self._chaos(emulator, jobs), files)
        self._read(result)
        self._finish(result)
        return result

    def _mount(self, emulator: Emulator, size: int) -> Mount:
        options = {
            "cache_size": str(size),
            # few connections: a request per connection fits in 3/16 of the small
            # cache, so that fetches stream into it (ReaderSettings.for_cache)
            "connections": "4",
            "memory_cache": "8M",
            "read_ahead": "8M",
            "memory_budget": "32M",
            "timeout": "30",
            "refresh": f"{self.settings.refresh:.0f}",
        }
        return Mount(emulator.url, VAULT, self.workdir / "mount", options)

    def _chaos(self, emulator: Emulator, jobs: list[SoakJob]) -> Chaos:
        settings = self.settings
        chance = random.Random(settings.seed)
        expire_at = time.monotonic() + settings.duration * chance.uniform(0.35, 0.6)
        hold, lies = 2 * settings.refresh, None
        if settings.lies:
            assert self.mount is not None
            root = self.mount.path

            def listed(job: SoakJob) -> bool:
                return (root / job.path).exists()

            lies = Lies(emulator, jobs, self.sources, settings.seed, hold, listed)
        return Chaos(
            emulator,
            jobs,
            settings.seed,
            kinds(settings.drop_checksum),
            Expiry(),
            expire_at,
            self.stop,
            lies,
        )

    def _read(self, result: Result) -> None:
        """Readers, chaos and the watcher, for the duration (or until something dies)."""
        assert self.mount is not None and self.emulator is not None
        mount, chaos = self.mount, result.chaos
        watcher = Watcher(mount.pid, self.stop)
        readers = [
            Reader(
                self.settings.seed * 1000 + number,
                mount.path,
                [j for j in result.jobs if not (j.spare and chaos.lies)] + result.files,
                self.sources,
                result.tally,
                chaos.expiry,
                self.stop,
                chaos.lies,
            )
            for number in range(self.settings.readers)
        ]
        began = time.monotonic()
        result.first = sample(mount.pid)
        for thread in (watcher, chaos, *readers):
            thread.start()
        self._wait(result, began)
        ended = time.monotonic()
        self.stop.set()
        for reader in readers:
            reader.join(timeout=90)  # the mount's timeout (30 s) and then some
        result.hung_readers = sum(reader.is_alive() for reader in readers)
        result.growth = growth(watcher.samples, began, ended)
        result.idle = sample(mount.pid)
        result.expired = chaos.expiry.job_id

    def _wait(self, result: Result, began: float) -> None:
        assert self.mount is not None and self.emulator is not None
        mount, emulator = self.mount, self.emulator
        deadline, report = began + self.settings.duration, began + PROGRESS
        while (now := time.monotonic()) < deadline:
            if not mount.alive():
                result.problems.append("the daemon died during the run")
                return
            if emulator.process is None or emulator.process.poll() is not None:
                result.problems.append("the emulator died during the run")
                return
            if now >= report:
                report += PROGRESS
                _progress(result, now - began, sample(mount.pid))
            self.stop.wait(min(1.0, max(deadline - now, 0)))  # pacing the checks, not a sync

    def _finish(self, result: Result) -> None:
        """The daemon's and the emulator's figures, then the unmount and the exit time."""
        assert self.mount is not None and self.emulator is not None
        mount = self.mount
        if result.hung_readers:
            result.problems.append(f"{result.hung_readers} readers still in a read after 90 s")
        if mount.alive():
            result.stats = dict(mount_stats(mount.path))
        lies = result.chaos.lies
        every = result.jobs + result.files + (lies.pool if lies else [])
        if self.emulator.process is not None and self.emulator.process.poll() is None:
            result.counters = self.emulator.counters()
            log = self.emulator.requests()
            result.unchecked_flips = unchecked_flips(log)
            if result.tally.wrong:
                result.explained = explained(every, result.tally.wrong, log)
        result.served = whose(result.tally.answers, every, self.sources)
        try:
            self._unmount(result, mount)
        finally:
            result.log = mount.log().splitlines()

    def _unmount(self, result: Result, mount: Mount) -> None:
        """Unmount, and time the daemon's exit."""
        if mount.process is None or not mount.alive() or result.hung_readers:
            return
        began = time.monotonic()
        unmounted = subprocess.run(["fusermount3", "-u", str(mount.path)], capture_output=True)
        if unmounted.returncode != 0:
            result.problems.append(f"unmount failed: {unmounted.stderr.decode().strip()}")
            return
        try:
            result.exit_code = mount.process.wait(timeout=EXIT_BOUND)
            result.exit_time = time.monotonic() - began
        except subprocess.TimeoutExpired:
            result.problems.append(f"the daemon was still running {EXIT_BOUND:.0f} s after unmount")
            return
        if result.exit_code != 0:
            result.problems.append(f"the daemon exited with status {result.exit_code}")

    def close(self) -> None:
        """Stop everything this run started, by PID; safe to call at any point."""
        self.stop.set()
        try:
            if self.mount is not None:
                _stop_daemon(self.mount)
        finally:
            if self.emulator is not None and self.emulator.process is not None:
                _stop(self.emulator.process, "the emulator")
                self.emulator.stop()
            for source in self.sources.values():
                source.close()


def _stop_daemon(mount: Mount) -> None:
    unmount(mount.path)
    if mount.process is not None:
        _stop(mount.process, "the daemon")
        unmount(mount.path)  # lazily if it is still there, now that the daemon is gone


def _stop(process: subprocess.Popen[bytes], what: str) -> None:
    """Terminate, then kill; a process stuck in the kernel (an fsync under load) may take
    a while to go even then: say so rather than fail the clean-up of the rest."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        print(f"soak: {what} ignored SIGTERM for 15 s: killing it", file=sys.stderr)
        process.kill()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            print(f"soak: {what} (PID {process.pid}) outlived SIGKILL by 60 s", file=sys.stderr)


def _progress(result: Result, elapsed: float, now: Sample | None) -> None:
    tally = result.tally
    daemon = f"rss {now.rss / (1 << 20):.0f} MiB, {now.fds} fds" if now else "daemon gone"
    print(
        f"soak: {elapsed:4.0f} s: {tally.reads} reads, {tally.bytes / (1 << 30):.2f} GiB, "
        f"EIO {tally.eio_live + tally.eio_expired} (lied-about {tally.eio_lied}, files "
        f"{tally.eio_files}), wrong bytes {tally.wrong_bytes}, "
        f"{len(result.chaos.active)} faults active, {daemon}",
        file=sys.stderr,
        flush=True,
    )
