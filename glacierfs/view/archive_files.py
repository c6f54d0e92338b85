"""Reading ``archives/PATH``: the archive, through the jobs that cover it.

A read is cut into pieces, one per run of leaves read through the same job
(:func:`glacierfs.view.archives.plan`), and each piece is read through the reader as a
read of that job's file would be, with a prefetcher per job so that read-ahead
follows each job's own output. The reader's internals are not reached into: which
job a cached leaf is served to is asked of it (:meth:`Reader.leaf_cached`),
so that a leaf is read through the job it was fetched for.

Reads of jobs (of their own files too) pass through :meth:`ArchiveFiles.read_job`,
which remembers checksum failures (:mod:`glacierfs.view.damage`).
"""

from __future__ import annotations

import time

from glacierfs.custody import Custody
from glacierfs.errors import IntegrityError
from glacierfs.jobs import Job
from glacierfs.read.prefetch import Prefetcher
from glacierfs.read.reader import Reader
from glacierfs.treehash import MIB
from glacierfs.view.archives import Archive, plan
from glacierfs.view.damage import DamagedJobs

CACHED, PARTLY_CACHED, REMOTE = "cached", "partly-cached", "remote"
CUSTODY_XATTR = "user.glacierfs.custody"


class ArchiveFiles:
    def __init__(self, reader: Reader, damage: DamagedJobs, custody: Custody | None = None) -> None:
        self.reader, self.damage, self.custody = reader, damage, custody

    def read_job_now(
        self, job: Job, offset: int, size: int, prefetcher: Prefetcher | None = None
    ) -> bytes | memoryview | None:
        """:meth:`read_job`'s bytes when the disk cache serves them at once, else None
        (a job with damage on record always takes :meth:`read_job`)."""
        if job.job_id in self.damage.known:
            return None
        return self.reader.read_now(job, offset, size, prefetcher)

    def read_now(
        self, archive: Archive, offset: int, size: int, prefetchers: dict[str, Prefetcher]
    ) -> bytes | memoryview | None:
        """:meth:`read`'s bytes when one job covers the archive and the disk cache serves
        them at once, else None."""
        if len(archive.jobs) != 1:
            return None  # which job serves each leaf is for :meth:`read` to choose
        job = archive.jobs[0]
        prefetcher = prefetchers.get(job.job_id)
        if prefetcher is None:
            prefetcher = prefetchers[job.job_id] = self.reader.settings.prefetcher()
        size = min(size, archive.size - offset)
        return self.read_job_now(job, offset - job.range_start, size, prefetcher)

    async def read_job(
        self, job: Job, offset: int, size: int, prefetcher: Prefetcher | None = None
    ) -> bytes | memoryview:
        try:
            data = await self.reader.read(job, offset, size, prefetcher)
        except IntegrityError as error:
            await self.damage.mark(job, error, offset, min(offset + size, job.size) - 1)
            raise
        if data and job.job_id in self.damage.known:
            await self.damage.passed(job, offset, offset + len(data) - 1)
        return data

    async def read(
        self, archive: Archive, offset: int, size: int, prefetchers: dict[str, Prefetcher]
    ) -> bytes | memoryview:
        cached = await self._served_from_cache(archive, offset, size)
        pieces = plan(
            archive, offset, size, lambda job, leaf: (job.job_id, leaf) in cached, self.damage.bad
        )
        parts = []
        for job, start, length in pieces:
            prefetcher = prefetchers.get(job.job_id)
            if prefetcher is None:
                prefetcher = prefetchers[job.job_id] = self.reader.settings.prefetcher()
            parts.append(await self.read_job(job, start, length, prefetcher))
        if len(parts) == 1:
            return parts[0]
        return b"".join(parts)

    async def _served_from_cache(
        self, archive: Archive, offset: int, size: int
    ) -> set[tuple[str, int]]:
        """``(job id, leaf)`` for each leaf of the span the cache serves to that job."""
        found: set[tuple[str, int]] = set()
        end = min(offset + size, archive.size)
        for leaf in range(offset // MIB, -(-end // MIB)):
            covering = archive.covering(leaf)
            if len(covering) < 2:
                continue  # no choice to make
            for job in covering:
                if await self.reader.leaf_cached(job, leaf):
                    found.add((job.job_id, leaf))
        return found

    async def xattrs(self, archive: Archive) -> dict[str, bytes]:
        whole = archive.whole()
        cached = await self.reader.cached_bytes(whole)
        state = CACHED if cached >= archive.size else PARTLY_CACHED if cached else REMOTE
        values = {
            "user.glacier.archive_id": archive.archive_id,
            "user.glacier.jobs": " ".join(job.job_id for job in archive.jobs),
            "user.glacier.tree_hash": archive.tree_hash,
            "user.glacier.expires": time.strftime(
                "%Y-%m-%dT%H:%M:%SZ", time.gmtime(archive.expires)
            ),
            "user.glacierfs.state": state,
            "user.glacierfs.cached": str(cached),
            "user.glacierfs.verified": await self.reader.verification(whole),
        }
        found = {name: value.encode() for name, value in values.items() if value}
        return found | await self.custody_xattr(whole)

    async def custody_xattr(self, job: Job) -> dict[str, bytes]:
        """``user.glacierfs.custody``: whether the job's cached bytes are delivered, in
        custody or replaceable (:mod:`glacierfs.custody`); none when no one says."""
        if self.custody is None:
            return {}
        leaves = await self.reader.cached_leaves(job)
        return {CUSTODY_XATTR: self.custody.archive_class(job.cache_key, leaves).encode()}
