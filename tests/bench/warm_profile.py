"""Where a warm read spends its time: hydrate an output, remount, read it, profile the daemon.

Usage: python -m tests.bench.warm_profile [--size-mib N] [--runs N] [--fio] [--baselines]
       [--baselines-only] [--cold] [--profile DIR] [--profiler perf|py-spy]
       [--read-ahead-kb N] [--option KEY=VALUE ...]

Not part of `make bench`: it prepares the rewrite of the read path (issue 14). It
hydrates one seeded output on the loopback emulator into a fresh cache, then, for each
run, mounts that cache afresh and times a sequential ``dd bs=1M`` and (with ``--fio``,
when fio is installed) random 4 KiB reads with ``--direct=1`` and 1 and 4 readers,
with the daemon's CPU seconds (user + system) beside each figure: on a shared machine
they hold better than wall-clock time. ``--cold`` times cold reads into fresh caches
instead. ``--baselines`` adds the same reads of the pyfuse3-from-memory ceiling and of
the proposed read path's prototype (:mod:`tests.bench.prototype`), and fio on the local
file. ``--profile DIR`` runs ``perf record`` (native and kernel stacks: where the CPU
goes) or ``py-spy record`` (Python stacks, GIL waits counted as active) on the daemon
during each read, when installed. ``--read-ahead-kb`` sets the kernel read-ahead of
each mount's own bdi (root only), which sizes the FUSE read requests. Everything it
starts it stops, by PID, and it unmounts only its own mounts.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.bench.harness import MIB, Bench, dd, timed
from tests.support.mount import stop_process, unmount, wait_for


@contextmanager
def ceiling_mount(
    source: Path, root: Path, read_ahead_kb: int | None = None, *flags: str
) -> Iterator[tuple[Path, int]]:
    """The pyfuse3-from-memory filesystem (:mod:`tests.bench.prototype`) serving ``source``."""
    mountpoint = root / f"ceiling-{time.monotonic_ns()}"
    mountpoint.mkdir()
    command = [sys.executable, "-m", "tests.bench.prototype", str(source), str(mountpoint), *flags]
    process = subprocess.Popen(command)
    try:
        wait_for(lambda: os.path.ismount(mountpoint), "the ceiling mount")
        set_read_ahead(mountpoint, read_ahead_kb)
        yield mountpoint / "data", process.pid
    finally:
        unmount(mountpoint)
        stop_process(process)


def set_read_ahead(mountpoint: Path, kib: int | None) -> None:
    """Set the kernel's read-ahead of this mount's own bdi (root only): FUSE read requests
    are as large as the read-ahead window, 128 KiB by default, whatever the reader asks."""
    if kib is None:
        return
    device = os.stat(mountpoint).st_dev
    bdi = Path(f"/sys/class/bdi/{os.major(device)}:{os.minor(device)}/read_ahead_kb")
    bdi.write_text(str(kib))


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far, all its threads included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


PROFILERS = {
    # Python stacks of every thread, idle ones too (GIL waits count as active).
    "py-spy": "py-spy record --pid {pid} --rate 200 --threads --idle --format raw"
    " --nonblocking --output {out}.txt",
    # Native and kernel stacks: where the CPU goes (hashing, copies, page faults, syscalls).
    "perf": "perf record -e cpu-clock -F 499 -g --pid {pid} --output {out}.perf",
}


@contextmanager
def profiled(pid: int, out: Path | None, profiler: str) -> Iterator[None]:
    """Run ``profiler`` on ``pid`` for the body of the block, writing its data to ``out``."""
    command = PROFILERS[profiler].format(pid=pid, out=out).split()
    if out is None or shutil.which(command[0]) is None:
        yield
        return
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # the profiler attaches before it samples; not synchronisation of a test
    try:
        yield
    finally:
        process.send_signal(2)  # SIGINT: the profiler writes its file and exits
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            stop_process(process)


FIO_SECONDS = 5


def fio(path: Path, jobs: int, seconds: int = FIO_SECONDS) -> dict[str, float]:
    """Random 4 KiB direct reads: IOPS and p50/p99 latency in microseconds."""
    command = [
        "fio", "--name=r", f"--filename={path}", "--rw=randread", "--bs=4k", "--direct=1",
        "--ioengine=psync", f"--numjobs={jobs}", "--group_reporting", "--time_based",
        f"--runtime={seconds}", "--output-format=json", "--readonly",
    ]  # fmt: skip
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    read = json.loads(result.stdout)["jobs"][0]["read"]
    percentiles = read["clat_ns"]["percentile"]
    figures = {
        "iops": float(read["iops"]),
        "p50_us": percentiles["50.000000"] / 1000,
        "p99_us": percentiles["99.000000"] / 1000,
    }
    print(f"  fio {jobs} readers: {figures}", flush=True)
    return figures


def baselines(
    plain: Path,
    runs: int,
    with_fio: bool,
    results: dict[str, list[float]],
    root: Path,
    read_ahead_kb: int | None,
) -> None:
    """The same reads of the ceiling and of the prototype (each run a fresh mount), and
    of the local file."""
    size = plain.stat().st_size
    kinds = (("ceiling", ()), ("prototype", ("--from-file",)))
    for run in range(runs):
        for kind, flags in kinds:
            with ceiling_mount(plain, root, read_ahead_kb, *flags) as (path, pid):
                before = cpu_seconds(pid)
                value = size / timed(lambda p=path: dd(p)) / 1e6  # type: ignore[misc]
                used = cpu_seconds(pid) - before
                results.setdefault(f"{kind} dd MB/s", []).append(value)
                results.setdefault(f"{kind} dd CPU s/GiB", []).append(used * (1 << 30) / size)
        if not (with_fio and shutil.which("fio")):
            continue
        for jobs in (1, 4):
            for kind, flags in kinds:
                with ceiling_mount(plain, root, None, *flags) as (path, pid):
                    before = cpu_seconds(pid)
                    iops = fio(path, jobs)["iops"]
                    per_read = (cpu_seconds(pid) - before) / (iops * FIO_SECONDS) * 1e6
                    results.setdefault(f"{kind} fio {jobs} IOPS", []).append(iops)
                    results.setdefault(f"{kind} fio {jobs} CPU us/read", []).append(per_read)
            results.setdefault(f"local fio {jobs} IOPS", []).append(fio(plain, jobs)["iops"])
        print(f"baselines run {run} done", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.warm_profile")
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", type=Path, default=None, help="directory for profiles")
    parser.add_argument("--profiler", choices=sorted(PROFILERS), default="perf")
    parser.add_argument("--fio", action="store_true")
    parser.add_argument("--baselines", action="store_true", help="also the ceiling, local")
    parser.add_argument("--baselines-only", action="store_true")
    parser.add_argument("--cold", action="store_true", help="cold reads into fresh caches only")
    parser.add_argument("--read-ahead-kb", type=int, default=None, help="set on each mount")
    parser.add_argument("--option", action="append", default=[], help="mount option k=v")
    args = parser.parse_args()
    options = dict(o.split("=", 1) for o in args.option)
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    size = args.size_mib * MIB
    with tempfile.TemporaryDirectory(prefix="glacierfs-warm-") as tmp:
        bench = Bench(Path(tmp), runs=args.runs)
        try:
            job = bench.job("loopback", size)
            cache = Path(tmp) / "cache"
            first = bench.mount("loopback", cache, **options)
            try:
                dd(first.job_file(job))
            finally:
                first.stop()
            results: dict[str, list[float]] = {}

            def measure(
                name: str, run: int, action: Callable[[Path], float], where: Path = cache
            ) -> None:
                mount = bench.mount("loopback", where, **options)
                try:
                    path = mount.job_file(job)
                    path.stat()
                    set_read_ahead(mount.path, args.read_ahead_kb)
                    label = "-".join(name.split()[:-1])  # "dd", "fio-1", "fio-4"
                    out = args.profile / f"{label}-{run}" if args.profile else None
                    before = cpu_seconds(mount.pid)
                    with profiled(mount.pid, out, args.profiler):
                        value = action(path)
                    used = cpu_seconds(mount.pid) - before
                finally:
                    mount.stop()
                results.setdefault(name, []).append(value)
                if "dd" in name:
                    per_gib = used * (1 << 30) / size
                    results.setdefault(f"{name[:-5]} daemon CPU s/GiB", []).append(per_gib)
                else:  # fio runs FIO_SECONDS
                    per_read = used / (value * FIO_SECONDS) * 1e6
                    results.setdefault(f"{name[:-5]} daemon CPU us/read", []).append(per_read)
                print(f"{name} run {run}: {value:,.1f} (daemon CPU {used:.2f} s)", flush=True)

            for run in range(args.runs if args.cold else 0):
                fresh = Path(tmp) / f"cold-{run}"
                measure("cold dd MB/s", run, lambda p: size / timed(lambda: dd(p)) / 1e6, fresh)
                shutil.rmtree(fresh)
            for run in range(args.runs if not (args.baselines_only or args.cold) else 0):
                measure("dd MB/s", run, lambda p: size / timed(lambda: dd(p)) / 1e6)
                if args.fio and shutil.which("fio"):
                    for jobs in (1, 4):
                        measure(f"fio {jobs} IOPS", run, lambda p, j=jobs: fio(p, j)["iops"])  # type: ignore[misc]
            if args.baselines or args.baselines_only:
                plain = Path(tmp) / "plain"
                mount = bench.mount("loopback", cache, **options)
                try:
                    shutil.copyfile(mount.job_file(job), plain)
                finally:
                    mount.stop()
                baselines(plain, args.runs, args.fio, results, Path(tmp), args.read_ahead_kb)
            for name, values in results.items():
                print(f"{name}: median {statistics.median(values):,.1f} of {values}")
        finally:
            bench.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
