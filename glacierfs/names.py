"""Where archive names come from: descriptions, decoded into safe paths.

An archive's description (often the original path, in an upload tool's format) comes
from, in order: an inventory file the user gave (``-o inventory=PATH``); the newest
inventory job of the vault, read through the mount's own cache (so fetched once);
or the ``x-amz-archive-description`` header that comes with the output's first leaf,
read through the cache (so it is not fetched again when the file is read); only when
that leaf is cached already does a one-byte request ask for the header.
Every description learnt is kept in the cache's metadata, so none is asked twice.
Only the descriptions of archives that have jobs are kept in memory, whatever the
size of the inventory.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterable
from pathlib import Path

import trio

from glacierfs.descriptions import decode_description
from glacierfs.diskcache import DiskCache
from glacierfs.errors import GlacierfsError, ShuttingDown
from glacierfs.inventory import parse
from glacierfs.jobs import Job
from glacierfs.naming import safe_components
from glacierfs.reader import Reader

log = logging.getLogger(__name__)

DESCRIPTIONS_META = "descriptions"
INVENTORIES_META = "inventories-read"

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
        disk: DiskCache,
        reader: Reader,
        probe: ProbeDescription,
        inventory_file: Path | None = None,
    ) -> None:
        self._disk, self._reader, self._probe = disk, reader, probe
        self._inventory_file = inventory_file
        self.descriptions: dict[str, str] = {}
        self._probes = trio.CapacityLimiter(4)

    def namer(self, job: Job) -> tuple[tuple[str, ...], float | None]:
        description = self.descriptions.get(job.archive_id or "")
        if not description:
            return (), None
        decoded = decode_description(description)
        if decoded.path is None or decoded.is_directory:
            return (), decoded.mtime
        return safe_components(decoded.path), decoded.mtime

    async def learn(self, jobs: Iterable[Job], headers: bool = True) -> bool:
        """Find descriptions for archive jobs without one; True when any was learnt.

        ``headers=False`` skips the per-job fetches of first leaves: the saved
        descriptions and the inventories only.
        """
        wanted = {job.archive_id: job for job in jobs if job.kind == "archive" and job.archive_id}
        missing = {a: j for a, j in wanted.items() if a not in self.descriptions}
        if not missing:
            return False
        before = len(self.descriptions)
        saved = await trio.to_thread.run_sync(self._disk.list_meta, DESCRIPTIONS_META)
        self._take(missing, saved.items())
        if self._inventory_file is not None:
            await self._from_inventory_file(missing)
        await self._from_inventory_jobs(missing, jobs)
        if headers:
            await self._from_headers(missing)
        return len(self.descriptions) > before

    def _take(self, missing: dict[str, Job], pairs: Iterable[tuple[str, object]]) -> list[str]:
        learnt = []
        for archive_id, description in pairs:
            if archive_id in missing and isinstance(description, str):
                self.descriptions[archive_id] = description
                del missing[archive_id]
                learnt.append(archive_id)
        return learnt

    async def _remember(self, archive_ids: list[str]) -> None:
        for archive_id in archive_ids:
            await trio.to_thread.run_sync(
                self._disk.put_meta, DESCRIPTIONS_META, archive_id, self.descriptions[archive_id]
            )

    async def _from_inventory_file(self, missing: dict[str, Job]) -> None:
        assert self._inventory_file is not None
        path = self._inventory_file

        def read() -> list[tuple[str, str]]:
            with path.open("rb") as stream:
                return [
                    (e.archive_id, e.description) for e in parse(stream) if e.archive_id in missing
                ]

        try:  # a user's inventory may be gigabytes: its parse is not waited for at exit
            found = await trio.to_thread.run_sync(read, abandon_on_cancel=True)
        except (OSError, GlacierfsError) as error:
            log.error("inventory %s not used: %s", path, error)
            return
        await self._remember(self._take(missing, found))

    async def _from_inventory_jobs(self, missing: dict[str, Job], jobs: Iterable[Job]) -> None:
        inventories = sorted(
            (j for j in jobs if j.kind == "inventory"), key=lambda j: j.completed, reverse=True
        )
        if not missing or not inventories:
            return
        newest = inventories[0]
        done = await trio.to_thread.run_sync(self._disk.get_meta, INVENTORIES_META, newest.job_id)
        if done:
            return

        def read() -> list[tuple[str, str]]:
            stream = io.BufferedReader(ReaderStream(self._reader, newest), 1 << 20)
            return [
                (e.archive_id, e.description)
                for e in parse(stream, newest.inventory_format)
                if e.archive_id in missing
            ]

        try:
            found = await trio.to_thread.run_sync(read)
        except ShuttingDown:
            return
        except GlacierfsError as error:
            log.error("inventory job %s not used for names: %s", newest.job_id, error)
            return
        await self._remember(self._take(missing, found))
        await trio.to_thread.run_sync(self._disk.put_meta, INVENTORIES_META, newest.job_id, True)

    async def _from_headers(self, missing: dict[str, Job]) -> None:
        async with trio.open_nursery() as nursery:
            for job in list(missing.values()):
                if job.size:
                    nursery.start_soon(self._from_header, missing, job)

    async def _from_header(self, missing: dict[str, Job], job: Job) -> None:
        archive_id = job.archive_id or ""
        async with self._probes:
            try:
                await self._reader.read(job, 0, 1)
                description = self._reader.descriptions.get(archive_id)
                if description is None:  # the first leaf was cached: ask for the header
                    description = await trio.to_thread.run_sync(
                        self._probe,
                        job,
                        abandon_on_cancel=True,  # a request: not waited for
                    )
            except ShuttingDown:
                return
            except GlacierfsError as error:
                log.info("job %s: description not learnt: %s", job.job_id, error)
                return
        if archive_id in missing:
            self._take(missing, [(archive_id, description or "")])
            await self._remember([archive_id])
