"""``glacierfs status`` and ``glacierfs hydrate``: talking to a running mount.

Both work on any mount, whoever started it (by hand, fstab, systemd), through what
the mount itself exposes: the root's ``user.glacierfs.stats`` xattr (the daemon's
counters, as JSON) and each file's ``user.glacier.*`` / ``user.glacierfs.*`` xattrs
(a job's file has its ``job_id``; an archive's file the ``jobs`` behind it).
Hydration reads the files through the mount, so that the daemon fetches, verifies
and caches them as for any reader: what is already cached costs no request, which
makes hydration resumable after a crash or a remount for free.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from glacierfs.errors import ConfigError, GlacierfsError, UsageError
from glacierfs.humane import short_size, utc
from glacierfs.jobs import EXPIRY
from glacierfs.logs import escape
from glacierfs.retrieve.pending import READY, Pending, pending, read_requests

CHUNK = 1 << 20


@dataclass(frozen=True)
class FileState:
    path: Path
    job_id: str  # for an archive's file, its key: archive/ARCHIVEID
    size: int
    cached: int
    verified: str
    expires: float
    damaged: str = ""  # why the job's output fails its check, when it does
    problem: str = ""  # what the service said of the job against what else it said
    custody: str = ""  # its cached bytes: custody, replaceable or delivered (glacierfs.custody)


def _xattr(path: Path, name: str) -> str:
    try:
        return os.getxattr(path, name).decode()
    except OSError:
        return ""


def mount_stats(mountpoint: Path) -> dict[str, object]:
    try:
        return dict(json.loads(os.getxattr(mountpoint, "user.glacierfs.stats")))
    except OSError as error:
        raise ConfigError(f"{mountpoint} is not a glacierfs mount ({error.strerror})") from None


def file_state(path: Path) -> FileState:
    expires = _xattr(path, "user.glacier.expires")
    try:
        deadline = datetime.fromisoformat(expires.replace("Z", "+00:00")).timestamp()
    except ValueError:
        deadline = 0.0
    cached = _xattr(path, "user.glacierfs.cached")
    archive = _xattr(path, "user.glacier.archive_id") if _xattr(path, "user.glacier.jobs") else ""
    return FileState(
        path,
        _xattr(path, "user.glacier.job_id") or (f"archive/{archive}" if archive else str(path)),
        path.stat().st_size,
        int(cached) if cached.isdigit() else 0,
        _xattr(path, "user.glacierfs.verified") or "?",
        deadline,
        _xattr(path, "user.glacierfs.damaged"),
        _xattr(path, "user.glacierfs.problem"),
        _xattr(path, "user.glacierfs.custody"),
    )


def job_files(mountpoint: Path, paths: Sequence[str] = ()) -> list[FileState]:
    """The files asked for (every job when none), soonest-expiring first."""
    chosen: list[Path] = []
    for text in paths or [str(mountpoint / "jobs")]:
        path = Path(text)
        if path.is_dir():
            chosen += [p for p in sorted(path.rglob("*")) if p.is_file()]
        elif path.is_file():
            chosen.append(path)
        else:
            raise UsageError(f"no such file or directory: {text}")
    seen: dict[str, FileState] = {}
    for path in chosen:
        state = file_state(path)
        seen.setdefault(state.job_id, state)
    return sorted(seen.values(), key=lambda s: (s.expires, s.job_id))


def left(seconds: float) -> str:
    if seconds <= 0:
        return "expired"
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours}h{rest // 60:02d}m"


def friendly_names(mountpoint: Path) -> dict[str, str]:
    """Job id -> its path in the archives/ or inventories/ view, for people to read."""
    names: dict[str, str] = {}
    for view in ("archives", "inventories"):
        for path in sorted((mountpoint / view).rglob("*")):
            if not path.is_file():
                continue
            ids = _xattr(path, "user.glacier.job_id") or _xattr(path, "user.glacier.jobs")
            for job_id in ids.split():
                names.setdefault(job_id, str(path.relative_to(mountpoint)))
    return names


def gather(mountpoint: Path) -> tuple[dict[str, object], list[FileState], dict[str, str]]:
    """What ``status`` reports, read once: the daemon's figures, each job's file, names."""
    return mount_stats(mountpoint), job_files(mountpoint), friendly_names(mountpoint)


def retrievals(stats: dict[str, object], files: list[FileState]) -> tuple[list[Pending], str]:
    """The jobs ``retrieve`` started on the mount's cache that are not saved yet (those
    the mount lists are ready), and why they cannot be read when they cannot."""
    cache_dir, vault = stats.get("cache_dir"), stats.get("vault")
    if not isinstance(cache_dir, str) or not isinstance(vault, str):
        return [], ""  # a mount from before the figures named its cache
    completed = {f.job_id: f.expires - EXPIRY.total_seconds() for f in files if f.expires}
    try:
        return pending(read_requests(Path(cache_dir), vault), completed), ""
    except (OSError, sqlite3.Error, ConfigError) as error:
        return [], f"retrieval state in {cache_dir} unreadable: {error}"


def render_retrievals(found: list[Pending], problem: str) -> list[str]:
    """The retrievals section of ``status``: times are the service's, in UTC."""
    if problem:
        return ["", f"retrievals: {problem}"]
    if not found:
        return []
    ready = sum(1 for p in found if p.state == READY)
    lines = [
        "",
        f"retrievals (glacierfs retrieve): {len(found) - ready} in progress, {ready} ready",
        f"{'JOB':<28} {'STATE':<11} {'TIER':<9} {'REQUESTED UTC':<16} "
        f"{'EXPECTED UTC':<25} {'SIZE':>8}  NAME",
    ]
    for p in found:
        r = p.request
        job = r.job_id if len(r.job_id) <= 28 else r.job_id[:25] + "..."
        if p.completed is not None:
            expected = f"done {utc(p.completed, '%m-%d %H:%M')}"
        elif p.expected is not None:
            expected = " .. ".join(utc(t, "%m-%d %H:%M") for t in p.expected)
        else:
            expected = "?"
        name = r.path if r.whole else f"{r.path} [{r.start}-{r.end}]"
        lines.append(
            f"{job:<28} {p.state:<11} {r.tier:<9} {utc(r.requested, '%Y-%m-%d %H:%M'):<16} "
            f"{expected:<25} {short_size(r.size):>8}  {name}"
        )
    return lines


CACHE_CLASSES = ("custody", "replaceable", "delivered", "free")
"""The cache's bytes as ``status`` shows them (:mod:`glacierfs.custody`), from the daemon's
figures ``cache_custody`` ..."""


def cache_document(stats: dict[str, object]) -> dict[str, int] | None:
    """Bytes of the cache in custody, replaceable, delivered, free, and its capacity;
    None from a mount that does not say (an older glacierfs)."""
    found = {name: stats.get(f"cache_{name}") for name in (*CACHE_CLASSES, "capacity")}
    if not all(isinstance(value, int) for value in found.values()):
        return None
    return {name: int(str(value)) for name, value in found.items()}


def render_cache(stats: dict[str, object]) -> list[str]:
    cache = cache_document(stats)
    if cache is None:
        return []
    shown = ", ".join(f"{short_size(cache[name])} {name}" for name in CACHE_CLASSES)
    return [f"cache: {shown} (of {short_size(cache['capacity'])})"]


def render_status(mountpoint: Path) -> str:
    stats, files, names = gather(mountpoint)
    now = time.time()
    lines = [
        f"{'JOB':<28} {'SIZE':>8} {'CACHED':>7} {'VERIFIED':<10} {'CUSTODY':<11} "
        f"{'EXPIRES IN':>10}  NAME"
    ]
    for f in files:
        share = 100.0 * f.cached / f.size if f.size else 100.0
        job = f.job_id if len(f.job_id) <= 28 else f.job_id[:25] + "..."
        verified = "damaged" if f.damaged else f.verified
        lines.append(
            f"{job:<28} {short_size(f.size):>8} {share:6.1f}% {verified:<10} "
            f"{f.custody or '-':<11} {left(f.expires - now):>10}  {names.get(f.job_id, '')}"
        )
    fetched, served = int(str(stats["bytes_fetched"])), int(str(stats["bytes_served"]))
    hits = int(str(stats["served_from_cache"]))
    ratio = 100.0 * hits / served if served else 0.0
    lines += [
        "",
        f"fetched {short_size(fetched)} in {stats['requests']} requests, "
        f"served {short_size(served)} ({ratio:.1f}% without a request), "
        f"{stats['retries']} retries, "
        f"{stats['checksum_failures']} checksum failures",
    ]
    lines += render_cache(stats)
    lines += [f"problem: {f.job_id}: {f.problem}" for f in files if f.problem]
    in_flight = stats.get("in_flight") or {}
    assert isinstance(in_flight, dict)
    for job_id, ranges in in_flight.items():
        lines.append(f"in flight: {job_id} {', '.join(ranges)}")
    lines += [f"damaged: {f.job_id}: {f.damaged}" for f in files if f.damaged]
    lines += render_retrievals(*retrievals(stats, files))
    return "\n".join(escape(line) for line in lines)  # job ids, names, the service's words


def status_document(mountpoint: Path) -> dict[str, object]:
    """What ``status`` shows, for scripts: the daemon's figures and each file's state."""
    stats, states, names = gather(mountpoint)
    files = [
        {
            "job_id": f.job_id,
            "path": str(f.path),
            "size": f.size,
            "cached": f.cached,
            "verified": f.verified,
            "expires": f.expires,
            "name": names.get(f.job_id),
            "damaged": f.damaged or None,
            "problem": f.problem or None,
            "custody": f.custody or None,
        }
        for f in states
    ]
    found, problem = retrievals(stats, states)
    return {
        "stats": stats,
        "cache": cache_document(stats),
        "files": files,
        "retrievals": [p.as_dict() for p in found],
        "retrievals_problem": problem or None,
    }


def status(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="glacierfs status")
    parser.add_argument(
        "--watch",
        type=float,
        nargs="?",
        const=2.0,
        default=None,
        metavar="SECONDS",
        help="refresh every SECONDS (2)",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("mountpoint", type=Path)
    args = parser.parse_args(argv)
    if args.json:
        print(json.dumps(status_document(args.mountpoint), indent=2))
        return 0
    if args.watch is None:
        print(render_status(args.mountpoint))
        return 0
    while True:
        text = render_status(args.mountpoint)
        print("\033[H\033[2J" + text, flush=True)
        time.sleep(args.watch)


class Progress:
    """Bytes done of a total, with rate and time left, drawn on one line."""

    def __init__(self, total: int, out: object = sys.stderr) -> None:
        self.total, self.done, self.started = total, 0, time.monotonic()
        self.lock = threading.Lock()
        self.out = out
        self.tty = bool(getattr(out, "isatty", lambda: False)())

    def add(self, count: int) -> None:
        with self.lock:
            self.done += count

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = self.done / elapsed
        share = self.done / self.total if self.total else 1.0
        eta = (self.total - self.done) / rate if rate > 0 else 0
        bar = "#" * int(share * 30)
        return (
            f"[{bar:<30}] {100 * share:5.1f}% {short_size(self.done)}/{short_size(self.total)} "
            f"{short_size(rate)}/s ETA {int(eta)}s"
        )

    def draw(self, final: bool = False) -> None:
        if self.tty or final:
            end = "\n" if final else "\r"
            print(self.line(), end=end, file=self.out, flush=True)  # type: ignore[call-overload]


def _read_all(state: FileState, progress: Progress) -> None:
    fd = os.open(state.path, os.O_RDONLY)
    try:
        offset = 0
        while True:
            data = os.pread(fd, 8 * CHUNK, offset)
            if not data:
                break
            offset += len(data)
            progress.add(len(data))
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def hydrate(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="glacierfs hydrate")
    parser.add_argument("-j", "--jobs", type=int, default=4, help="files at once (4)")
    parser.add_argument("mountpoint", type=Path)
    parser.add_argument("paths", nargs="*")
    args = parser.parse_args(argv)
    stats = mount_stats(args.mountpoint)
    files = [f for f in job_files(args.mountpoint, args.paths) if f.cached < f.size]
    needed = sum(f.size - f.cached for f in files)
    capacity = int(str(stats.get("cache_capacity", 0)))
    used = int(str(stats.get("cache_used", 0)))
    if capacity and needed > capacity - used:
        print(
            f"glacierfs hydrate: warning: {short_size(needed)} to fetch but the cache has "
            f"{short_size(max(capacity - used, 0))} free of {short_size(capacity)}: older leaves "
            "will be evicted (raise cache_size)",
            file=sys.stderr,
        )
    print(f"hydrating {len(files)} files, {short_size(needed)} to fetch", file=sys.stderr)
    progress = Progress(sum(f.size for f in files))
    failures: list[str] = []

    def one(state: FileState) -> None:
        try:
            _read_all(state, progress)
        except OSError as error:
            failures.append(escape(f"{state.path}: {error.strerror}"))

    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        futures = [pool.submit(one, f) for f in files]
        while not all(f.done() for f in futures):
            progress.draw()
            time.sleep(0.5)
    progress.draw(final=True)
    for failure in failures:
        print(f"glacierfs hydrate: {failure}", file=sys.stderr)
    return 1 if failures else 0


def main(command: str, argv: Sequence[str]) -> int:
    try:
        return hydrate(argv) if command == "hydrate" else status(argv)
    except GlacierfsError as error:
        print(f"glacierfs {command}: {escape(str(error))}", file=sys.stderr)
        return error.exit_code
