"""Job outputs into the disk cache, by whichever process may write it; inventories out of it.

The disk cache has one writer at a time: whoever holds its lock. So:

* **No one holds it**: ``retrieve`` opens it in-process and builds the disk cache,
  client, reader and catalog as :func:`glacierfs.daemon.serve` builds them, then saves
  each output with :meth:`glacierfs.read.reader.Reader.hydrate`, the code path of
  ``-o hydrate``: every byte checked on arrival and the whole output against its job's
  tree hash. The catalog's refresh records each job with the cache, so a mount made
  later still lists an output after its job expired, and each archive's description
  is saved where the mount looks for names. The cache is held only while saving, so a
  mount can start between two rounds of ``--follow``.
* **A mount holds it**: the outputs are read through the mount's ``jobs/<JobId>``
  files, as ``glacierfs hydrate`` does, so the mount's daemon fetches, verifies and
  caches them; a mount that does not list a new job yet is asked to refresh its job
  list with SIGHUP, its documented signal. Only a mount proven to hold this very cache
  (:mod:`.holder`), never one a pid in the lock file merely names.
"""

from __future__ import annotations

import io
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

import trio

from glacierfs.cache.aio import AsyncDisk
from glacierfs.cache.disk import DiskCache
from glacierfs.cacheroot import Held
from glacierfs.catalog import Catalog
from glacierfs.client import GlacierClient
from glacierfs.config import Options
from glacierfs.custody import Custody
from glacierfs.daemon import client_settings
from glacierfs.errors import ConfigError, DiskUnwritable, GlacierfsError
from glacierfs.humane import utc
from glacierfs.inventory import Entry, parse
from glacierfs.jobs import Job
from glacierfs.logs import LogOnce
from glacierfs.names.sources import DESCRIPTIONS_META, ReaderStream
from glacierfs.read.ledger import BLOCKS, MISMATCH, SIZE, TREE_HASH
from glacierfs.read.reader import Reader
from glacierfs.retrieve.holder import cache_holder, proven_mount
from glacierfs.retry import RetryPolicy

T = TypeVar("T")

SAVING_AT_ONCE = 4
"""Outputs saved at once in-process: small archives are many, and each is a few requests;
the reader's connection limit still bounds what is in flight."""

REFUSED = LogOnce(logging.getLogger("glacierfs.retrieve"))
"""Job records refused in this run, by the in-process catalog of each round and by the
engine's look: each logged once per run (``--follow`` looks every round)."""

MOUNT_REFRESH_WAIT = 30.0
"""Seconds to wait for a mount to list a job after asking it to refresh."""


@dataclass(frozen=True)
class Saved:
    """What became of one output: saved (and how verified), or why not."""

    job_id: str
    ok: bool
    verified: str = ""
    size: int = 0
    seconds: float = 0.0
    error: str = ""


UNCHECKABLE = " (its record gives no tree hash: the most that can be checked)"
"""Said of an output saved as ``blocks`` or ``size``."""


def judged(job_id: str, verdict: str, size: int, seconds: float) -> Saved:
    """What became of an output read whole, by its verdict: saved only when it is
    ``tree-hash``, or ``blocks`` or ``size`` (reached only where the record gives no tree
    hash to check: the most that can be had); a ``mismatch`` is not saved."""
    if verdict in (TREE_HASH, BLOCKS, SIZE):
        return Saved(job_id, True, verdict, size, seconds)
    why = "its output does not match its record" if verdict == MISMATCH else "not verified"
    return Saved(job_id, False, verdict, error=f"job {job_id}: {why} (verified={verdict})")


@dataclass(frozen=True)
class ToSave:
    job_id: str
    archive_id: str
    description: str


Report = Callable[[Saved], None]


class Access(Protocol):
    def newest_inventory(self, record: dict[str, object] | None) -> tuple[list[Entry], str] | None:
        """The newest inventory the cache holds or the service still serves; ``record``
        is the newest inventory job the service lists now, if any."""
        ...

    def save(self, jobs: Sequence[ToSave], report: Report) -> None:
        """Save each job's output, in the order given, reporting each."""
        ...


def open_access(options: Options, root: Held, vault_arn: str) -> Access:
    """The way to the cache now: in-process when free, else through the mount holding
    it, once proven (:mod:`.holder`)."""
    holder = cache_holder(root)
    if holder is None:
        return InProcess(options, root.path, vault_arn)
    return ThroughMount(proven_mount(root, holder), holder)


Work = Callable[[Reader, Catalog, AsyncDisk], Awaitable[T]]


class InProcess:
    """The cache opened by this process, for the length of one call."""

    def __init__(self, options: Options, cache_root: Path, vault_arn: str) -> None:
        self.options, self.cache_root, self.vault_arn = options, cache_root, vault_arn

    def _run(self, work: Work[T]) -> T:
        options = self.options
        custody = Custody(self.cache_root, service_time=lambda: client.service_time)
        disk = DiskCache(self.cache_root, options.cache_size, classes=custody.classes)
        client = GlacierClient(client_settings(options))
        try:
            retry = RetryPolicy(attempts=options.retries, timeout=options.timeout)

            async def main() -> T:
                aio = AsyncDisk(disk)
                catalog = Catalog(client.list_jobs, aio, self.vault_arn, retry, REFUSED)
                async with trio.open_nursery() as nursery:
                    reader = await Reader.for_client(client, aio, options, retry, nursery=nursery)
                    await catalog.refresh()
                    # as a mount does: never evict what no live job can send again
                    await trio.to_thread.run_sync(custody.update, list(catalog.listed.values()))
                    await aio.fit()
                    result = await work(reader, catalog, aio)
                    nursery.cancel_scope.cancel()
                return result

            return trio.run(main)
        except BaseExceptionGroup as group:  # a task's error, from the nursery
            raise expected(group) from None
        finally:
            disk.close()
            client.close()

    def newest_inventory(self, record: dict[str, object] | None) -> tuple[list[Entry], str] | None:
        # The catalog is listed afresh by this call: it knows whatever the service does.
        async def work(
            reader: Reader, catalog: Catalog, disk: AsyncDisk
        ) -> tuple[list[Entry], str] | None:
            jobs = [j for j in catalog.jobs.values() if j.kind == "inventory"]
            if not jobs:
                return None
            newest = max(jobs, key=lambda j: (j.completed, j.job_id))

            def read() -> list[Entry]:
                stream = io.BufferedReader(ReaderStream(reader, newest), 1 << 20)
                return list(parse(stream, newest.inventory_format))

            entries = await trio.to_thread.run_sync(read)
            return entries, f"inventory job {newest.job_id[:16]}... of {utc(newest.completed)}"

        return self._run(work)

    def save(self, jobs: Sequence[ToSave], report: Report) -> None:
        async def work(reader: Reader, catalog: Catalog, disk: AsyncDisk) -> None:
            limiter = trio.CapacityLimiter(SAVING_AT_ONCE)
            async with trio.open_nursery() as nursery:
                for item in jobs:
                    nursery.start_soon(self._save_one, reader, catalog, disk, item, limiter, report)

        self._run(work)

    @staticmethod
    async def _save_one(
        reader: Reader,
        catalog: Catalog,
        disk: AsyncDisk,
        item: ToSave,
        limiter: trio.CapacityLimiter,
        report: Report,
    ) -> None:
        job = catalog.jobs.get(item.job_id)
        if job is None:
            report(Saved(item.job_id, False, error="the service does not list it as completed"))
            return
        async with limiter:
            started = time.monotonic()
            try:
                await reader.hydrate(job)
                verdict = await reader.verification(job)
            except GlacierfsError as error:
                report(Saved(item.job_id, False, error=str(error)))
                return
            failure = disk.disk.write_failure
            if failure is not None and not await _kept(disk, job):
                # read and checked, but not kept: not saved, and no round will do better
                raise DiskUnwritable(f"disk cache {disk.disk.root} cannot be written: {failure}")
            result = judged(item.job_id, verdict, job.size, time.monotonic() - started)
            if result.ok and item.description:
                await disk.put_meta(DESCRIPTIONS_META, item.archive_id, item.description)
            report(result)


class ThroughMount:
    """The cache of a running mount, read through its files."""

    def __init__(self, mountpoint: Path, pid: int) -> None:
        self.mountpoint, self.pid = mountpoint, pid

    def _listed(self, path: Path) -> bool:
        if path.exists():
            return True
        try:
            os.kill(self.pid, signal.SIGHUP)  # the mount's "refresh the job list"
        except OSError:
            return False
        deadline = time.monotonic() + MOUNT_REFRESH_WAIT
        while time.monotonic() < deadline:
            if path.exists():
                return True
            time.sleep(0.2)  # polling the mount for the refreshed listing
        return False

    def newest_inventory(self, record: dict[str, object] | None) -> tuple[list[Entry], str] | None:
        """The job the service names, through the mount, which is asked to refresh when it
        does not list it yet; else the newest the mount shows (cached after expiry)."""
        if record is not None:
            newest = self.mountpoint / "jobs" / str(record["JobId"])
            if not self._listed(newest):
                raise ConfigError(
                    f"the mount at {self.mountpoint} does not list inventory job "
                    f"{record['JobId']} yet, though the service says it completed: "
                    "run again in a minute"
                )
            parameters = record.get("InventoryRetrievalParameters")
            fmt = parameters.get("Format") if isinstance(parameters, dict) else None
            fmt = "CSV" if fmt == "CSV" else "JSON"
        else:
            directory = self.mountpoint / "inventories"
            files = sorted(directory.glob("*"), key=lambda p: (p.stat().st_mtime, p.name))
            if not files:
                return None
            newest = files[-1]
            fmt = "CSV" if newest.suffix.lower() == ".csv" else "JSON"
        try:
            with newest.open("rb") as stream:
                entries = list(parse(stream, fmt))
        except OSError as error:
            raise ConfigError(f"reading {newest}: {error.strerror}") from None
        return entries, f"{newest} (through the mount)"

    def save(self, jobs: Sequence[ToSave], report: Report) -> None:
        for item in jobs:
            path = self.mountpoint / "jobs" / item.job_id
            if not self._listed(path):
                report(Saved(item.job_id, False, error=f"the mount does not list {path} yet"))
                continue
            started = time.monotonic()
            try:
                size = _read_through(path)
                verdict = os.getxattr(path, "user.glacierfs.verified").decode()
            except OSError as error:
                report(Saved(item.job_id, False, error=f"{path}: {error.strerror}"))
                continue
            report(judged(item.job_id, verdict, size, time.monotonic() - started))


async def _kept(disk: AsyncDisk, job: Job) -> bool:
    """Whether every leaf of the output is on disk for the job (the reader also counts
    leaves it holds in memory, which end with this process)."""
    rows = await disk.leaves(job.cache_key)
    wanted = range(job.first_leaf, job.first_leaf + job.leaves)
    return all(i in rows and rows[i].usable_by(job.owner) for i in wanted)


def expected(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first error glacierfs can explain in a group, or the group itself."""
    found: BaseException | None = group.subgroup(lambda e: isinstance(e, GlacierfsError))
    while isinstance(found, BaseExceptionGroup):
        found = found.exceptions[0]
    return found if found is not None else group


def _read_through(path: Path) -> int:
    """Read a file whole (the mount caches what it serves); the bytes read."""
    fd = os.open(path, os.O_RDONLY)
    try:
        offset = 0
        while data := os.pread(fd, 8 << 20, offset):
            offset += len(data)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        return offset
    finally:
        os.close(fd)
