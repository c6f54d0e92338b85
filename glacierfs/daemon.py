"""Startup and lifetime of a mount: checks, background mode, the trio main loop.

Everything that can be checked is checked before anything is mounted: options,
mountpoint, endpoint, credentials, vault, cache directory. In background mode the
process forks before trio and pyfuse3 start, and the parent waits on a pipe for
"mounted" or one line of error, so that the exit code of ``glacierfs`` (and of
``mount -a``, and systemd's) tells the truth. SIGTERM, SIGINT and ``fusermount3 -u``
(lazy or not) end the mount cleanly; SIGHUP refreshes the job list.

Ending takes the same steps whatever is in flight (:meth:`Mounted.run`): the reader
refuses new work and fails every read waiting on it, so FUSE requests and worker
threads return at once; FUSE's main loop returns; then the background tasks are
cancelled (a retry's backoff ends, a download's thread is abandoned, a disk write in
progress finishes), and the process exits. Nothing waits on the network to exit.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import logging
import logging.handlers
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

import trio

from glacierfs import fuse_adapter as fuse
from glacierfs import logs, trusted
from glacierfs.cache.disk import DiskCache
from glacierfs.cache.memory import MemoryCache
from glacierfs.catalog import Catalog
from glacierfs.client import ClientSettings, GlacierClient
from glacierfs.config import Options, default_cache_dir
from glacierfs.errors import ConfigError, GlacierfsError, ShuttingDown
from glacierfs.mounttable import MountWatch
from glacierfs.names.sources import Names
from glacierfs.read.reader import Reader, ReaderSettings
from glacierfs.retry import RetryPolicy
from glacierfs.stats import Stats
from glacierfs.view.damage import DamagedJobs
from glacierfs.view.filesystem import Access, Filesystem

log = logging.getLogger("glacierfs")

Ready = Callable[[str | None], None]
"""Called once: ``None`` when mounted, else the one-line reason it is not."""

INODES_META = "inodes"
PATHS_META = "paths"
READ_AHEAD_KB = 1024
"""The mount's bdi read-ahead: READs of 1 MiB instead of 128 KiB (measured 1.5x)."""


def check_mountpoint(path: Path) -> None:
    try:
        if not path.is_dir():
            raise ConfigError(f"mountpoint {path} does not exist or is not a directory")
    except OSError as error:
        if error.errno == errno.ENOTCONN:
            raise ConfigError(
                f"mountpoint {path}: a glacierfs that died is still mounted there "
                f"(Transport endpoint is not connected); run: fusermount3 -u {path}"
            ) from None
        raise ConfigError(f"mountpoint {path}: {error.strerror}") from None
    if os.path.ismount(path):
        raise ConfigError(f"mountpoint {path} is already a mount point")


def client_settings(options: Options) -> ClientSettings:
    return ClientSettings(
        vault=options.vault,
        account_id=options.account_id,
        region=options.region,
        profile=options.profile,
        endpoint_url=options.endpoint_url,
        connections=options.connections,
        read_timeout=min(30.0, options.timeout),
        connect_timeout=min(10.0, options.timeout),
    )


def check_service(options: Options) -> None:
    """The endpoint answers, the credentials work, the vault exists."""
    client = GlacierClient(client_settings(options))
    try:
        client.describe_vault()
    finally:
        client.close()


def setup_logging(options: Options) -> None:
    """Send the log to ``log=FILE``, or to stderr in the foreground, or to syslog
    (journald) in the background when its socket is there, and nowhere when it is not.

    The log file is created 0600, as the cache is private too: with ``debug`` it holds
    every FUSE call and path. It is never opened through a symlink, and its directory
    passes the cache directory's checks (:func:`glacierfs.trusted.open_log`). A
    background mount never logs to the terminal it was started from, even before it is
    up: its parent prints nothing on success and one line on failure.
    """
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if options.debug else logging.INFO)
    for old in list(root.handlers):
        root.removeHandler(old)
    handler: logging.Handler
    form = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    if options.log_file is not None:
        log_fd = trusted.open_log(options.log_file)
        stream = os.fdopen(log_fd, "a", encoding="utf-8", errors="backslashreplace")
        handler = logging.StreamHandler(stream)
    elif options.foreground:
        handler = logging.StreamHandler(sys.stderr)
    elif os.path.exists("/dev/log"):
        handler = logging.handlers.SysLogHandler("/dev/log")
        form = "glacierfs[%(process)d]: %(levelname)s %(message)s"
    else:  # no syslog socket (a container): nowhere to log in the background
        handler = logging.NullHandler()
    if not options.foreground:
        # A record that cannot be written (syslog gone, disk full) is dropped quietly,
        # not printed with a traceback to a stderr no one reads.
        logging.raiseExceptions = False
    handler.setFormatter(logging.Formatter(form))
    root.addHandler(handler)
    for noisy in ("botocore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logs.install(root)


def mount(options: Options) -> int:
    """Mount, in the background unless ``-f``; the exit code says whether it worked.

    Logging is set up first, in both modes, so that a bad ``log=`` is the first thing
    refused and nothing before the fork falls back to printing on stderr.
    """
    setup_logging(options)
    check_mountpoint(options.mountpoint)
    check_service(options)
    if options.foreground:
        return serve(options, _notify_systemd)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid > 0:
        os.close(write_end)
        return _wait_for_child(read_end, pid)
    os.close(read_end)
    os.setsid()
    return _background_child(options, write_end)


def _wait_for_child(read_end: int, pid: int) -> int:
    """The parent of a background mount: silent on "OK", else one line on stderr."""
    with os.fdopen(read_end, "r") as pipe:
        message = pipe.readline().strip()
    if message == "OK":
        return 0
    if not message:  # it died without a word: say how
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status):
            name = signal.Signals(os.WTERMSIG(status)).name
            message = f"the daemon was killed by {name} during startup"
        else:
            message = "the daemon exited during startup (see its log)"
    print(f"glacierfs: {message}", file=sys.stderr)
    return 1


def _background_child(options: Options, write_end: int) -> int:
    """The daemon of a background mount: it says "OK" or one line of error up the pipe,
    and writes nothing else to the caller's terminal. Until the mount is up its stdout
    and stderr go to an anonymous file, where libfuse and fusermount3 explain their
    failures, and the last line there completes an unexpected error's message. After
    that they go to /dev/null."""
    pipe = os.fdopen(write_end, "w")
    captured = _capture_stdio()

    def ready(error: str | None, explain: bool = False) -> None:
        if pipe.closed:
            return
        if error is not None and explain and (said := _last_line(captured)):
            error = f"{error} ({said})"
        pipe.write("OK\n" if error is None else " ".join(error.splitlines()) + "\n")
        pipe.close()
        _detach_stdio()
        os.close(captured)

    try:
        code = serve(options, ready)
    except GlacierfsError as error:
        ready(str(error))
        code = error.exit_code
    except BaseException as error:  # logged with its traceback; the caller gets a line
        ready(f"unexpected error: {error!r}", explain=True)
        log.critical("unexpected error: %r", error, exc_info=True)
        code = 1
    ready("the daemon stopped during startup")
    os._exit(code)


def _capture_stdio() -> int:
    """Point stdin at /dev/null, and stdout and stderr at an anonymous file (returned)."""
    captured = os.memfd_create("glacierfs-startup", os.MFD_CLOEXEC)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(captured, 1)
    os.dup2(captured, 2)
    return captured


def _last_line(captured: int) -> str:
    """The last line written to the captured stdout and stderr, if any."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    size = os.fstat(captured).st_size
    tail = os.pread(captured, 4096, max(0, size - 4096)).decode(errors="replace")
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _detach_stdio() -> None:
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)


def _notify_systemd(error: str | None) -> None:
    address = os.environ.get("NOTIFY_SOCKET")
    if error is not None:
        raise ConfigError(error)
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"READY=1", address)


EXPIRY_WARNING = 3600.0
"""Seconds before a job expires from which bytes it has not cached are worth a warning."""

EXPIRY_CHECK = 60.0
"""Seconds between looks at what expires soon."""

M_MMAP_THRESHOLD = -3  # mallopt parameters, from glibc's malloc.h
M_ARENA_MAX = -8


def _return_freed_buffers() -> None:
    """Make glibc give freed response buffers back to the kernel at once.

    Bodies of up to ``max_request`` bytes are allocated and freed in worker threads
    all the time. By default glibc raises its mmap threshold after such a free and
    keeps the memory in per-thread arenas, so the daemon's resident set grows far
    past what it holds (350 MiB for four readers, measured). Allocations of 1 MiB
    and more mmapped, and two arenas, keep the resident set near what is in use.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, 1 << 20)
        libc.mallopt(M_ARENA_MAX, 2)
    except (OSError, AttributeError):  # not glibc: nothing to tune
        pass


def serve(options: Options, ready: Ready) -> int:
    """Run the mount until it is unmounted or signalled; return the exit code."""
    _return_freed_buffers()
    cache_dir = options.cache_dir or default_cache_dir(os.environ, os.getuid())
    disk = DiskCache(cache_dir, options.cache_size)
    client = GlacierClient(client_settings(options))
    try:
        vault = client.describe_vault()
        vault_arn = str(vault.get("VaultARN") or f"{options.account_id}:{options.vault}")
        retry = RetryPolicy(attempts=options.retries, timeout=options.timeout)
        reader = Reader(
            lambda job, start, end: client.get_output(job.job_id, start, end, job.size),
            disk,
            MemoryCache(options.memory_cache),
            _reader_settings(options, retry),
            Stats(),
        )
        damage = DamagedJobs(disk)
        names = Names(
            disk,
            reader,
            lambda job: client.get_description(job.job_id),
            damage,
            options.inventory,
            options.connections,
        )
        catalog = Catalog(client.list_jobs, disk, vault_arn, retry)
        trio.run(Mounted(options, disk, reader, catalog, names, damage).run, ready)
    finally:
        disk.close()
        client.close()
    return 0


def _reader_settings(options: Options, retry: RetryPolicy) -> ReaderSettings:
    return ReaderSettings(
        block_size=options.block_size,
        max_request=options.max_request,
        read_ahead=options.read_ahead,
        connections=options.connections,
        memory_budget=options.memory_budget,
        strict=options.verify == "strict",
        retry=retry,
    )


def fuse_options(options: Options) -> set[str]:
    chosen = {"ro", "default_permissions", "subtype=glacierfs", f"fsname=glacierfs:{options.vault}"}
    if options.allow_other:
        chosen.add("allow_other")
    return chosen


class Mounted:
    """One mount's parts and its background tasks, on the trio loop."""

    def __init__(
        self,
        options: Options,
        disk: DiskCache,
        reader: Reader,
        catalog: Catalog,
        names: Names,
        damage: DamagedJobs,
    ) -> None:
        self.options, self.disk, self.reader = options, disk, reader
        self.catalog, self.names, self.damage = catalog, names, damage
        self.fs: Filesystem | None = None
        self._hydrated: set[str] = set()
        self._changed: dict[str, trio.Event] = {}
        self._refresh_now = trio.Event()
        self._serving = False  # FUSE's main loop runs: terminate() may be called
        self._detached = False  # the mount left the mount table before main returned

    async def run(self, ready: Ready) -> None:
        """Serve until unmounted or stopped; then end every task, in this order."""
        async with trio.open_nursery() as nursery:
            self.reader.start(nursery)
            try:
                await self._serve(ready, nursery)
            finally:
                self.reader.close()  # no new work; every waiter fails with ShuttingDown
                nursery.cancel_scope.cancel()  # backoffs end, download threads abandoned

    async def _serve(self, ready: Ready, nursery: trio.Nursery) -> None:
        options = self.options
        await self.damage.load()
        await self.catalog.refresh()
        # Every name that can be learnt is learnt before the mount is announced, so that
        # what `mount && rsync` copies is final: no file is renamed under a running copy.
        await self._learn_before_showing()
        inodes, paths = [
            await trio.to_thread.run_sync(self.disk.get_meta, meta, self.catalog.namespace)
            for meta in (INODES_META, PATHS_META)
        ]
        self.fs = Filesystem(
            self.catalog,
            self.reader,
            Access(options.uid, options.gid, options.umask),
            namer=self.names.namer,
            file_inodes=inodes if isinstance(inodes, dict) else None,
            paths=paths if isinstance(paths, dict) else None,
            damage=self.damage,
            about={"cache_dir": str(self.disk.root.absolute()), "vault": self.catalog.namespace},
        )
        await self._save_tree()
        watch = MountWatch(options.mountpoint)
        fuse.init(self.fs, options.mountpoint, fuse_options(options), debug=options.debug)
        self._serving, clean = True, False
        try:
            ready(None)
            log.info(
                "mounted vault %s on %s (%d jobs)",
                options.vault,
                options.mountpoint,
                len(self.catalog.jobs),
            )
            self._start_tasks(nursery, watch)
            await fuse.main()
            clean = not self._detached  # a detached mountpoint may hold another mount now
        finally:
            self._serving = False
            fuse.close(unmount=clean)  # pyfuse3: not after main() raised
            log.info("unmounted %s", options.mountpoint)

    def _start_tasks(self, nursery: trio.Nursery, watch: MountWatch) -> None:
        nursery.start_soon(self._refresh_loop)
        nursery.start_soon(self._signals)
        nursery.start_soon(self._watch_mount, watch)
        nursery.start_soon(_raise_read_ahead, self.options.mountpoint)
        nursery.start_soon(self._learn_names)
        nursery.start_soon(self._expiry_watch)
        if self.options.hydrate:
            nursery.start_soon(self._hydrate_loop)

    def stop(self, why: str) -> None:
        """End the mount from inside: fail the reads in flight, then end FUSE's main loop.

        The reads go first: FUSE's main loop returns only once every request it is
        serving has been answered, and a read may be waiting on minutes of retries.
        """
        if not self._serving:
            return
        log.info("%s: ending the mount on %s", why, self.options.mountpoint)
        self._serving = False
        self.reader.close()
        fuse.terminate()

    async def _save_tree(self) -> None:
        """Keep inode numbers and paths for the next mount, so that they do not change."""
        assert self.fs is not None
        tree, namespace = self.fs.tree, self.catalog.namespace
        await trio.to_thread.run_sync(self.disk.put_meta, INODES_META, namespace, tree.file_inodes)
        await trio.to_thread.run_sync(self.disk.put_meta, PATHS_META, namespace, tree.shown)

    async def _learn_before_showing(self) -> None:
        """Learn the names of the catalog's archives, for at most ``names_wait`` seconds."""
        jobs = list(self.catalog.jobs.values())
        wait = self.options.names_wait
        with trio.move_on_after(wait) as waited:
            await self.names.learn(jobs)
        unknown = len(self.names.unknown(jobs))
        if waited.cancelled_caught:
            log.warning(
                "gave up after names_wait=%gs: %d archives have no name yet; they are "
                "under jobs/ only, and appear under archives/ once their names are known",
                wait,
                unknown,
            )
        elif unknown:
            log.info("%d archives have no name (first block unreadable): under jobs/ only", unknown)

    async def _rebuild(self) -> None:
        """Show what the catalog and the names say now; new files' inodes are saved at once."""
        assert self.fs is not None
        before = dict(self.fs.tree.shown), len(self.fs.tree.file_inodes)
        self.fs.rebuild()
        if (self.fs.tree.shown, len(self.fs.tree.file_inodes)) != before:
            await self._save_tree()

    async def refresh(self) -> None:
        """New jobs show under jobs/ at once, and under archives/ once their names are
        known (the tree leaves unnamed archives out; :meth:`_learn_names` learns them)."""
        if await self.catalog.refresh():
            await self._rebuild()
            for event in self._changed.values():
                event.set()

    async def _refresh_loop(self) -> None:
        while True:
            with trio.move_on_after(self.options.refresh):
                await self._refresh_now.wait()
            self._refresh_now = trio.Event()
            await self.refresh()

    async def _signals(self) -> None:
        """SIGHUP refreshes (in the refresh task: a slow listing never delays a SIGTERM);
        SIGTERM and SIGINT stop the mount. The handlers stay ours until the mount's tasks
        end, so a second signal while stopping cannot kill it half way."""
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async for signum in signals:
                if signum == signal.SIGHUP:
                    log.info("SIGHUP: refreshing the job list")
                    self._refresh_now.set()
                else:
                    self.stop(signal.Signals(signum).name)

    async def _watch_mount(self, watch: MountWatch) -> None:
        """Stop once the mount leaves the mount table, as a lazy unmount makes it do."""
        try:
            mount = await trio.to_thread.run_sync(watch.find)
            if mount is None:
                log.debug("mount not found in the mount table: lazy unmounts not watched")
                return
            await trio.to_thread.run_sync(
                watch.wait_until_gone,
                mount,
                abandon_on_cancel=True,  # it sleeps until the table changes: not waited for
                limiter=trio.CapacityLimiter(1),  # nor counted against the other threads
            )
        except OSError as error:
            log.debug("mount table not watched: %s", error)
            return
        self._detached = True
        self.stop("the mount left the mount table")

    async def _learn_names(self) -> None:
        """Name archives by their descriptions, now and whenever jobs change."""
        while True:
            if await self.names.learn(list(self.catalog.jobs.values())):
                await self._rebuild()
            await self._next_change("names")

    async def _expiry_watch(self) -> None:
        """One log line per job that expires within the hour with bytes not cached."""
        warned = logs.LogOnce(log)
        while True:
            now = time.time()
            for job in list(self.catalog.jobs.values()):
                left = job.expires - now
                if not 0 < left < EXPIRY_WARNING:
                    continue
                missing = job.size - await self.reader.cached_bytes(job)
                if missing > 0:
                    warned.warning(
                        job.job_id,
                        "job %s expires in %d min with %d of %d bytes not cached: "
                        "read it or run `glacierfs hydrate %s` now",
                        job.job_id,
                        left // 60,
                        missing,
                        job.size,
                        self.options.mountpoint,
                    )
            await trio.sleep(EXPIRY_CHECK)

    async def _next_change(self, waiter: str) -> None:
        """Wait until the job list changes; each waiter sees every change."""
        event = self._changed.setdefault(waiter, trio.Event())
        await event.wait()
        self._changed[waiter] = trio.Event()

    async def _hydrate_loop(self) -> None:
        """-o hydrate: download every new job's output, soonest-expiring first."""
        while True:
            pending = sorted(
                (j for j in self.catalog.jobs.values() if j.job_id not in self._hydrated),
                key=lambda j: j.expires,
            )
            for job in pending:
                try:
                    await self.reader.hydrate(job)
                    self._hydrated.add(job.job_id)
                    log.info("job %s: hydrated (%d bytes cached)", job.job_id, job.size)
                except ShuttingDown:
                    return
                except GlacierfsError as error:
                    log.error("job %s: hydration failed: %s", job.job_id, error)
                    self._hydrated.add(job.job_id)
            await self._next_change("hydrate")


async def _raise_read_ahead(mountpoint: Path) -> None:
    """Ask the kernel for 1 MiB READs on this mount, where we may (root)."""
    try:
        device = (await trio.to_thread.run_sync(os.stat, mountpoint)).st_dev
        path = Path(f"/sys/class/bdi/{os.major(device)}:{os.minor(device)}/read_ahead_kb")
        await trio.to_thread.run_sync(path.write_text, str(READ_AHEAD_KB))
    except OSError as error:
        log.debug("read_ahead_kb not raised: %s", error)
