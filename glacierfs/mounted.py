"""A mount while it is mounted: its parts, its background tasks, and the order they end in.

:func:`run` builds the parts that need the mount's nursery (the reader's flights run in
it) and serves until the mount is unmounted or stopped. Ending takes the same steps
whatever is in flight, in the order :func:`run`'s exit stack states: FUSE's main loop
returns (the reader is closed first when the mount is stopped from inside, see
:meth:`Mounted.stop`); the reader refuses new work and fails every read waiting on it,
so FUSE requests and worker threads return at once; then the background tasks are
cancelled (a retry's backoff ends, a download's thread is abandoned, a disk write in
progress finishes), and the process exits. Nothing waits on the network to exit.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import trio

from glacierfs import fuse_adapter as fuse
from glacierfs import logs
from glacierfs.cache.aio import AsyncDisk
from glacierfs.cache.disk import DiskCache
from glacierfs.cacheroot import identity, open_root
from glacierfs.catalog import Catalog
from glacierfs.client import GlacierClient
from glacierfs.config import Options
from glacierfs.custody import Custody
from glacierfs.errors import GlacierfsError, ShuttingDown
from glacierfs.mounttable import MountWatch
from glacierfs.names.sources import Names
from glacierfs.read.reader import Reader
from glacierfs.retry import RetryPolicy
from glacierfs.view.damage import DamagedJobs
from glacierfs.view.filesystem import Access, Filesystem

log = logging.getLogger("glacierfs")

Ready = Callable[[str | None], None]
"""Called once: ``None`` when mounted, else the one-line reason it is not."""

INODES_META = "inodes"
PATHS_META = "paths"
READ_AHEAD_KB = 1024
"""The mount's bdi read-ahead: READs of 1 MiB instead of 128 KiB (measured 1.5x)."""

EXPIRY_WARNING = 3600.0
"""Seconds before a job expires from which bytes it has not cached are worth a warning."""

EXPIRY_CHECK = 60.0
"""Seconds between looks at what expires soon."""


async def run(
    options: Options,
    disk: DiskCache,
    client: GlacierClient,
    vault_arn: str,
    ready: Ready,
    custody: Custody,
) -> None:
    """Serve until unmounted or stopped; then end every task, in the exit stack's order."""
    retry = RetryPolicy(attempts=options.retries, timeout=options.timeout)
    aio = AsyncDisk(disk)  # every disk call of the mount's loop, under one limiter
    async with contextlib.AsyncExitStack() as stack:
        nursery = await stack.enter_async_context(trio.open_nursery())
        # last: backoffs end, download threads are abandoned, disk writes finish
        stack.callback(nursery.cancel_scope.cancel)
        reader = await Reader.for_client(client, aio, options, retry, nursery=nursery)
        stack.callback(reader.close)  # first: no new work; every waiter fails with ShuttingDown
        damage = DamagedJobs(aio)
        names = Names(
            aio,
            reader,
            lambda job: client.get_description(job.job_id),
            damage,
            options.inventory,
            options.connections,
        )
        catalog = Catalog(client.list_jobs, aio, vault_arn, retry)
        mounted = Mounted(options, aio, reader, catalog, names, damage, custody)
        await mounted.serve(ready, nursery)


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
        disk: AsyncDisk,
        reader: Reader,
        catalog: Catalog,
        names: Names,
        damage: DamagedJobs,
        custody: Custody,
    ) -> None:
        self.options, self.disk, self.reader = options, disk, reader
        self.catalog, self.names, self.damage = catalog, names, damage
        self.custody = custody
        self.fs: Filesystem | None = None
        self._hydrated: set[str] = set()
        self._changed: dict[str, trio.Event] = {}
        self._refresh_now = trio.Event()
        self._rebuilding = trio.Lock()
        self._serving = False  # FUSE's main loop runs: terminate() may be called
        self._detached = False  # the mount left the mount table before main returned

    async def serve(self, ready: Ready, nursery: trio.Nursery) -> None:
        """Learn names, show the tree, serve FUSE until it returns; tasks in ``nursery``."""
        options = self.options
        await self.damage.load()
        await self.catalog.refresh(required=not options.empty_start)
        await self._hold()
        # Every name that can be learnt is learnt before the mount is announced, so that
        # what `mount && rsync` copies is final: no file is renamed under a running copy.
        await self._learn_before_showing()
        inodes, paths = [
            await self.disk.get_meta(meta, self.catalog.namespace)
            for meta in (INODES_META, PATHS_META)
        ]
        self.fs = Filesystem(
            self.catalog,
            self.reader,
            Access(options.uid, options.gid, options.umask),
            namer=self.names.namer,
            settled=self.names.settled,
            known=self.names.entries.get,
            file_inodes=inodes if isinstance(inodes, dict) else None,
            paths=paths if isinstance(paths, dict) else None,
            damage=self.damage,
            custody=self.custody,
            about={
                "cache_dir": str(self.disk.disk.root.absolute()),
                "vault": self.catalog.namespace,
            },
            identity=await trio.to_thread.run_sync(_identity, self.disk.disk.root),
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
        await self.disk.put_meta(INODES_META, namespace, tree.file_inodes)
        await self.disk.put_meta(PATHS_META, namespace, tree.shown)

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
        async with self._rebuilding:  # the refresh and the names tasks both rebuild
            before = dict(self.fs.tree.shown), len(self.fs.tree.file_inodes)
            await self.fs.rebuild()
            if (self.fs.tree.shown, len(self.fs.tree.file_inodes)) != before:
                await self._save_tree()

    async def refresh(self) -> None:
        """New jobs show under jobs/ at once, and under archives/ once their names are
        known (the tree leaves unnamed archives out; :meth:`_learn_names` learns them)."""
        listed = self.catalog.listed
        changed = await self.catalog.refresh()
        if self.catalog.listed is not listed:  # else not listed: the classes stand, ageing
            await self._hold()
        if changed:
            await self._rebuild()
            for event in self._changed.values():
                event.set()

    async def _hold(self) -> None:
        """Tell the cache again which leaves it may evict (:mod:`glacierfs.custody`): the
        jobs just listed and the delivery record; then fit it to cache_size."""
        listed = list(self.catalog.listed.values())
        await trio.to_thread.run_sync(self.custody.update, listed)
        await self.disk.fit()

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


def _identity(root: Path) -> bytes:
    """The cache's secret (made when the cache was opened), read through its held root:
    the mount's root answers challenges with it (:mod:`glacierfs.retrieve.holder`)."""
    with open_root(root) as held:
        return identity(held)
