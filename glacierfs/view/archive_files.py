"""Reading ``archives/PATH``: the archive, through the jobs that cover it.

A read is cut into pieces, one per run of leaves read through the same job
(:func:`glacierfs.view.archives.plan`), and each piece is read through the reader as a
read of that job's file would be, with a prefetcher per job so that read-ahead
follows each job's own output. The reader's internals are not reached into: which
job a cached leaf is served to is asked of it (:meth:`Reader.leaf_cached`),
so that a leaf is read through the job it was fetched for.

Reads of jobs (of their own files too) pass through :meth:`ArchiveFiles.read_job`,
which remembers checksum failures (:mod:`glacierfs.view.damage`).

An archive's file is judged as a whole, whichever jobs its leaves came through: each
leaf handed out is noted in the archive's own view, and the read that completes it
compares their tree hash with the archive's (:meth:`Reader.hand_archive`). A mismatch
fails that read and every later one (no job is blamed: each may hold its own word). A
job whose verdict is ``mismatch`` serves no leaf another job of the archive covers,
and an archive some leaf of which only such jobs cover is not opened.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

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

    async def check(self, archive: Archive) -> None:
        """Raise IntegrityError when the archive, or some leaf of it, cannot be read
        but through jobs whose verdict is ``mismatch``."""
        await self.reader.verdicts.check(archive.whole())
        if len(archive.jobs) == 1:
            await self.reader.verdicts.check(archive.jobs[0])
            return
        refused: IntegrityError | None = None
        for job in archive.jobs:
            try:
                await self.reader.verdicts.check(job)
            except IntegrityError as error:
                refused = error
        if refused is not None and not covered(archive, self.reader.verdicts.refused):
            raise refused

    def _bad(self, job: Job, leaf: int) -> bool:
        return self.reader.verdicts.refused(job) or self.damage.bad(job, leaf)

    async def read(
        self, archive: Archive, offset: int, size: int, prefetchers: dict[str, Prefetcher]
    ) -> bytes | memoryview:
        whole = archive.whole()
        await self.reader.verdicts.check(whole)
        cached = await self._served_from_cache(archive, offset, size)
        pieces = plan(
            archive,
            offset,
            size,
            lambda job, leaf: (job.job_id, leaf) in cached,
            self._bad,
            self.reader.verdicts.proven,
        )
        parts = []
        for job, start, length in pieces:
            prefetcher = prefetchers.get(job.job_id)
            if prefetcher is None:
                prefetcher = prefetchers[job.job_id] = self.reader.settings.prefetcher()
            parts.append(await self.read_job(job, start, length, prefetcher))
        if len(archive.jobs) > 1:  # one job: its own verdict is the archive's
            await self.reader.verdicts.hand_archive(whole, [(job, s, n) for job, s, n in pieces])
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
        cached = await self.reader.cached_bytes(whole, archive.jobs)
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
        return found | await self.custody_xattr(whole, archive.jobs)

    async def custody_xattr(self, job: Job, through: Sequence[Job] = ()) -> dict[str, bytes]:
        """``user.glacierfs.custody``: whether the job's cached bytes are delivered, in
        custody or replaceable (:mod:`glacierfs.custody`); none when no one says."""
        if self.custody is None:
            return {}
        leaves = await self.reader.cached_leaves(job, through)
        return {CUSTODY_XATTR: self.custody.archive_class(job.cache_key, leaves).encode()}


def covered(archive: Archive, refused: Callable[[Job], bool]) -> bool:
    """Whether jobs ``refused`` does not refuse cover every leaf of the archive (an
    empty one: whether there is such a job), in sorted runs of leaves, not leaf by leaf."""
    spans = []
    for job in archive.jobs:
        if refused(job):
            continue
        end = job.range_start + job.size
        stop = archive.leaves if end >= archive.size else end // MIB
        spans.append((-(-job.range_start // MIB), stop))
    if not archive.leaves:
        return bool(spans)
    reached = 0
    for first, stop in sorted(spans):
        if first > reached:
            break
        reached = max(reached, stop)
    return reached >= archive.leaves
