"""Where archive names come from: descriptions, decoded into safe paths.

An archive's description (often the original path, in an upload tool's format) comes
from, in order: an inventory file the user gave (``-o inventory=PATH``); the newest
inventory job of the vault, read through the mount's own cache (so fetched once);
or the ``x-amz-archive-description`` header that comes with the output's first leaf,
read through the cache (so it is not fetched again when the file is read); only when
that leaf is cached already does a one-byte request ask for the header. The leaf is
fetched through the job the archive file reads it through
(:func:`glacierfs.view.archives.probe_job`), never through a job known to fail its
check (:mod:`glacierfs.view.damage`), and a failure is remembered.
Every description learnt is kept in the cache's metadata, so none is asked twice.
Only the descriptions of archives that have jobs are kept in memory, whatever the
size of the inventory. An archive whose description is not known has no name yet
(:meth:`Names.namer` says None): the tree leaves it out of ``archives/`` until then.

Many archives can claim one path (versions of a file). Which one keeps the plain name is
asked of the inventory (the file given, else the newest inventory job): once the names
of the archives with jobs are known, the inventory is read for every archive that claims
one of their paths (:func:`glacierfs.names.versions.versions_of`), and what it holds is
kept in the cache's metadata, per inventory, so a remount reads it again only for paths
it has not looked for (:mod:`glacierfs.names.known` says what can move without one).

The inventories also say each archive's size and tree hash, which the job records
say too: for archives with jobs these entries are kept (in memory and in the cache's
metadata), and a job whose record disagrees with its archive's entry is reported
(:meth:`Reader.note_problem`): an error in the log and in ``status``, never verified.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import trio

from glacierfs.cache.aio import AsyncDisk
from glacierfs.errors import GlacierfsError, IntegrityError, ShuttingDown
from glacierfs.inventory import Entry, parse
from glacierfs.jobs import Job, disagreements
from glacierfs.names.known import KnownVersions
from glacierfs.names.versions import Version, described, versions_of
from glacierfs.read.reader import Reader
from glacierfs.treehash import MIB
from glacierfs.view.archives import probe_job
from glacierfs.view.damage import DamagedJobs
from glacierfs.view.tree import Named

log = logging.getLogger(__name__)

DESCRIPTIONS_META = "descriptions"
INVENTORIES_META = "inventories-read"
ENTRIES_META = "inventory-entries"  # archive id -> [size, tree hash], archives with jobs
ENTRIES_KEPT = "entries"
"""What INVENTORIES_META holds for an inventory job whose entries were kept too (older
mounts noted ``true``, for descriptions only: those inventories are read once more)."""

VERSIONS_META = "versions"
"""Inventory source -> the versions it holds of each path looked for (see the module)."""

ProbeDescription = Callable[[Job], str | None]
"""A job -> its archive's description, from one tiny request (blocking)."""


class ReaderStream(io.RawIOBase):
    """A job's output as a file, read through the reader from a worker thread.

    Only from a thread started by ``trio.to_thread.run_sync``: each read runs in the
    task waiting for that thread, so cancelling the task cancels the read (the thread
    gets ``trio.Cancelled`` and ends). A read in a system task of its own, out of reach
    of every cancellation, kept a closing mount alive.
    """

    def __init__(self, reader: Reader, job: Job) -> None:
        self._reader, self._job = reader, job
        self._offset = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        size = min(len(buffer), 1 << 20)
        try:
            data = trio.from_thread.run(self._reader.read, self._job, self._offset, size)
        except trio.RunFinishedError:
            raise ShuttingDown("the mount is shutting down") from None
        buffer[: len(data)] = data
        self._offset += len(data)
        return len(data)


class Names:
    """Descriptions of the archives with jobs, and the namer the tree uses."""

    def __init__(
        self,
        disk: AsyncDisk,
        reader: Reader,
        probe: ProbeDescription,
        damage: DamagedJobs,
        inventory_file: Path | None = None,
        connections: int = 4,
    ) -> None:
        self._disk, self._reader, self._probe = disk, reader, probe
        self._damage = damage
        self._inventory_file = inventory_file
        self.descriptions: dict[str, str] = {}
        self.entries: dict[str, tuple[int, str]] = {}  # archive id -> size, tree hash
        self._entries_loaded = False
        self._probes = trio.CapacityLimiter(connections)
        self.versions = KnownVersions()
        self._scan_source: str | None = None
        self._scan_failed: set[str] = set()
        self._checked: set[str] = set()  # jobs compared with their inventory entry
        self._decoded: dict[str, Version] = {}  # archive id -> its description, decoded

    def namer(self, job: Job) -> Named | None:
        """The archive's path and mtime by its description, among the versions of its path
        (:mod:`glacierfs.names.versions`); None while the description is unknown. Asked
        for every archive at every rebuild, from the thread that builds the tree: each
        description is decoded once, when it is learnt."""
        archive_id = job.archive_id or ""
        version = self._decoded.get(archive_id)
        if version is None:
            return None
        return self.versions.name(archive_id, version.components), version.mtime

    def settled(self, job: Job) -> bool:
        """Whether the inventory named every version of the path of the job's archive: a
        name remembered from an earlier mount does not override this one's."""
        version = self._decoded.get(job.archive_id or "")
        return version is not None and self.versions.settled(version.components)

    def unknown(self, jobs: Iterable[Job]) -> set[str]:
        """The archives of these jobs whose description is not known."""
        return {
            job.archive_id
            for job in jobs
            if job.kind == "archive" and job.archive_id and job.archive_id not in self.descriptions
        }

    async def learn(self, jobs: Iterable[Job], headers: bool = True) -> bool:
        """Find descriptions for archive jobs without one; True when any was learnt.

        ``headers=False`` skips the per-job fetches of first leaves: the saved
        descriptions and the inventories only.
        """
        jobs = list(jobs)
        unknown = self.unknown(jobs)
        grouped: dict[str, list[Job]] = {}
        for job in jobs:
            if job.archive_id in unknown:
                grouped.setdefault(job.archive_id, []).append(job)
        missing: dict[str, Job | None] = {
            archive_id: probe_job(group, self._damage.skips)
            for archive_id, group in grouped.items()
        }
        await self._load_entries()
        unchecked = {
            job.archive_id: job
            for job in jobs
            if job.kind == "archive" and job.archive_id and job.archive_id not in self.entries
        }
        before = len(self.descriptions)
        if missing:
            saved = await self._disk.list_meta(DESCRIPTIONS_META)
            self._take(missing, saved.items())
        if missing or unchecked:
            if self._inventory_file is not None:
                await self._from_inventory_file(missing, unchecked)
            await self._from_inventory_jobs(missing, unchecked, jobs)
        await self._cross_check(jobs)
        if headers and missing:
            await self._from_headers(missing)
        scanned = await self._scan_versions(jobs)
        return len(self.descriptions) > before or scanned

    async def _load_entries(self) -> None:
        if self._entries_loaded:
            return
        saved = await self._disk.list_meta(ENTRIES_META)
        for archive_id, value in saved.items():
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], int):
                self.entries.setdefault(archive_id, (value[0], str(value[1])))
        self._entries_loaded = True

    async def _use(
        self, missing: dict[str, Job | None], unchecked: dict[str, Job], found: list[Entry]
    ) -> None:
        """Descriptions and entries from inventory entries of archives with jobs."""
        await self._remember(self._take(missing, [(e.archive_id, e.description) for e in found]))
        for entry in found:
            if unchecked.pop(entry.archive_id, None) is None:
                continue
            self.entries[entry.archive_id] = (entry.size, entry.tree_hash)
            await self._disk.put_meta(ENTRIES_META, entry.archive_id, [entry.size, entry.tree_hash])

    async def _cross_check(self, jobs: list[Job]) -> None:
        """Report each job whose record disagrees with its archive's inventory entry
        (each job once: a record does not change; the trio thread is let go every
        thousand jobs, so a list of 50,000 never holds reads up)."""
        for number, job in enumerate(jobs):
            if number % 1000 == 999:
                await trio.sleep(0)
            if job.job_id in self._checked:
                continue
            entry = self.entries.get(job.archive_id or "") if job.kind == "archive" else None
            if entry is not None:
                self._checked.add(job.job_id)
                for _, why in disagreements(job, *entry):
                    await self._reader.note_problem(job, why)

    def _take(
        self, missing: dict[str, Job | None], pairs: Iterable[tuple[str, object]]
    ) -> list[str]:
        learnt = []
        for archive_id, description in pairs:
            if archive_id in missing and isinstance(description, str):
                self.descriptions[archive_id] = description
                version = self._decoded[archive_id] = described(archive_id, description)
                self.versions.claim(version)
                del missing[archive_id]
                learnt.append(archive_id)
        return learnt

    async def _remember(self, archive_ids: list[str]) -> None:
        for archive_id in archive_ids:
            await self._disk.put_meta(DESCRIPTIONS_META, archive_id, self.descriptions[archive_id])

    async def _from_inventory_file(
        self, missing: dict[str, Job | None], unchecked: dict[str, Job]
    ) -> None:
        assert self._inventory_file is not None
        path = self._inventory_file

        def read() -> list[Entry]:
            with path.open("rb") as stream:
                return [
                    e for e in parse(stream) if e.archive_id in missing or e.archive_id in unchecked
                ]

        try:  # a user's inventory may be gigabytes: its parse is not waited for at exit
            found = await trio.to_thread.run_sync(read, abandon_on_cancel=True)
        except (OSError, GlacierfsError) as error:
            log.error("inventory %s not used: %s", path, error)
            return
        await self._use(missing, unchecked, found)

    async def _from_inventory_jobs(
        self, missing: dict[str, Job | None], unchecked: dict[str, Job], jobs: Iterable[Job]
    ) -> None:
        inventories = sorted(
            (j for j in jobs if j.kind == "inventory"), key=lambda j: j.completed, reverse=True
        )
        if not (missing or unchecked) or not inventories:
            return
        newest = inventories[0]
        done = await self._disk.get_meta(INVENTORIES_META, newest.job_id)
        if done == ENTRIES_KEPT:
            return

        def read() -> list[Entry]:
            stream = io.BufferedReader(ReaderStream(self._reader, newest), 1 << 20)
            return [
                e
                for e in parse(stream, newest.inventory_format)
                if e.archive_id in missing or e.archive_id in unchecked
            ]

        try:
            found = await trio.to_thread.run_sync(read)
        except ShuttingDown:
            return
        except GlacierfsError as error:
            log.error("inventory job %s not used for names: %s", newest.job_id, error)
            return
        await self._use(missing, unchecked, found)
        await self._disk.put_meta(INVENTORIES_META, newest.job_id, ENTRIES_KEPT)

    def _inventory(self, jobs: Iterable[Job]) -> tuple[str, Callable[[], Iterable[Entry]]] | None:
        """The inventory that names versions: (what it is, its entries as a stream)."""
        path = self._inventory_file
        if path is not None:

            def from_file() -> Iterator[Entry]:
                with path.open("rb") as stream:
                    yield from parse(stream)

            try:  # a file changed in place is another inventory
                stat = path.stat()
            except OSError:
                return None  # said when its descriptions are read
            return f"file:{path}:{stat.st_size}:{stat.st_mtime_ns}", from_file
        inventories = [j for j in jobs if j.kind == "inventory"]
        if not inventories:
            return None
        newest = max(inventories, key=lambda j: (j.completed, j.job_id))

        def from_job() -> Iterator[Entry]:
            stream = io.BufferedReader(ReaderStream(self._reader, newest), 1 << 20)
            yield from parse(stream, newest.inventory_format)

        return f"job:{newest.job_id}", from_job

    async def _scan_versions(self, jobs: Iterable[Job]) -> bool:
        """Read the inventory for the versions of paths not looked for yet; True if any."""
        inventory = self._inventory(jobs)
        if inventory is None:
            return False
        source, entries = inventory
        if source in self._scan_failed:
            return False
        if source != self._scan_source:
            self.versions.reset_scan()
            self._scan_source = source
            self.versions.load(await self._disk.get_meta(VERSIONS_META, source))
        paths = self.versions.unscanned()
        if not paths:
            return False
        try:  # a user's file may be gigabytes: its parse is not waited for at exit (a job's
            # is: its reads run in this task, see ReaderStream)
            found = await trio.to_thread.run_sync(
                lambda: versions_of(entries(), paths), abandon_on_cancel=source.startswith("file:")
            )
        except ShuttingDown:
            return False
        except (OSError, GlacierfsError) as error:
            self._scan_failed.add(source)
            log.error("inventory %s not used for versions: %s", source, error)
            return False
        self.versions.add_scan(paths, found)
        await self._disk.put_meta(VERSIONS_META, source, self.versions.saved())
        return True

    async def _from_headers(self, missing: dict[str, Job | None]) -> None:
        async with trio.open_nursery() as nursery:
            for job in list(missing.values()):
                if job is not None and job.size:
                    nursery.start_soon(self._from_header, missing, job)

    async def _from_header(self, missing: dict[str, Job | None], job: Job) -> None:
        archive_id = job.archive_id or ""
        async with self._probes:
            try:
                await self._reader.read(job, 0, 1)
                await self._damage.passed(job, 0, 0)
                description = self._reader.descriptions.get(archive_id)
                if description is None:  # the first leaf was cached: ask for the header
                    description = await trio.to_thread.run_sync(
                        self._probe,
                        job,
                        abandon_on_cancel=True,  # a request: not waited for
                    )
            except ShuttingDown:
                return
            except IntegrityError as error:
                await self._damage.mark(job, error, 0, min(job.size, MIB) - 1)
                log.info("job %s: description not learnt: %s", job.job_id, error)
                return
            except GlacierfsError as error:
                log.info("job %s: description not learnt: %s", job.job_id, error)
                return
        if archive_id in missing:
            self._take(missing, [(archive_id, description or "")])
            await self._remember([archive_id])
