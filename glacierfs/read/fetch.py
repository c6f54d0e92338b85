"""Fetch and verify: one range of a job's output from the service, checked, or an error.

Design.

* A fetch runs in a worker thread on one of the mount's connections, granted by the
  :class:`~glacierfs.read.scheduler.Scheduler` (demand first, then fair shares between
  streams; the request's ticket comes with its task, :data:`~.scheduler.REQUEST`): the
  GET, the byte count checks (:mod:`glacierfs.client`), the leaf hashes, and the
  comparison of their root with ``x-amz-sha256-tree-hash``. A mismatch is retried
  (:mod:`glacierfs.retry`) and, if it persists, fails the read with EIO: a byte that
  failed its checksum is never returned and never cached.
* Each leaf comes back with its digest and how it was verified: ``block`` (it matched a
  response checksum) or ``size`` (only its length could be checked, where the spec
  promises no checksum). A range the spec says carries a checksum and arrives without
  one is as unproven as a corrupt one.
* Each response's timing (request sent, headers in, body read) feeds the mount's
  :class:`~glacierfs.read.link.LinkModel`, which sizes requests and read-ahead.
* What the service says twice is compared: an output whose whole length is not what the
  job's record says is a problem of the job, kept in its ledger, and no more requests
  are made for it. When the mount ends, a download's worker thread is abandoned and its
  bytes dropped.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import trio

from glacierfs.client import OutputPart
from glacierfs.errors import BadResponse, IntegrityError, JobExpired, SizeDisagreement
from glacierfs.jobs import Job
from glacierfs.read.ledger import BLOCK, MISMATCH, SIZE, Ledger
from glacierfs.read.link import LinkModel
from glacierfs.read.scheduler import REQUEST, Scheduler
from glacierfs.retry import RetryPolicy, retrying
from glacierfs.stats import Stats
from glacierfs.treehash import combine, is_tree_hash_aligned, leaf_digests

FetchPart = Callable[[Job, int, int], OutputPart]
"""``(job, start, end)`` -> the bytes; blocking, run in a worker thread."""

Fetched = tuple[bytes, list[bytes], str]
"""The bytes, each leaf's digest, and how they were verified (``block`` or ``size``)."""


class Fetcher:
    """Checked GETs of output ranges, at most ``connections`` at once, retried."""

    def __init__(
        self, fetch_part: FetchPart, connections: int, retry: RetryPolicy, stats: Stats
    ) -> None:
        self._fetch_part = fetch_part
        self.scheduler = Scheduler(connections)
        self.link = LinkModel()
        self._retry = retry
        self.stats = stats
        self.descriptions: dict[str, str] = {}  # archive id -> description, from headers

    async def fetch(self, job: Job, start: int, end: int, ledger: Ledger) -> Fetched:
        """Bytes ``start..end`` of the output, checked; a size disagreement that persists
        is noted in ``ledger`` and fails with BadResponse."""
        what = f"job {job.job_id} bytes {start}-{end}"

        async def attempt() -> Fetched:
            async with self.scheduler.connection(REQUEST.get()):
                # abandoned when cancelled (the mount ends): its bytes are dropped
                return await trio.to_thread.run_sync(
                    self._fetch_and_hash, job, start, end, abandon_on_cancel=True
                )

        def counted(error: Exception) -> None:
            self.stats.retries += 1
            if isinstance(error, IntegrityError):
                self.stats.checksum_failures += 1

        try:
            return await retrying(attempt, self._retry, what, counted)
        except IntegrityError:
            self.stats.checksum_failures += 1
            raise
        except JobExpired as error:
            what = f"archive {job.archive_id}" if job.kind == "archive" else "the inventory"
            raise JobExpired(
                f"job {job.job_id}: the output expired at the service; cached bytes are "
                f"still served, the rest needs a new retrieval job of {what}"
            ) from error
        except SizeDisagreement as error:
            raise await _size_disagreement(job, error, ledger) from None

    def _fetch_and_hash(self, job: Job, start: int, end: int) -> Fetched:
        """In a worker thread: one GET, its leaf hashes, and their check."""
        sent = time.monotonic()
        part = self._fetch_part(job, start, end)
        self.heard(sent, part.first_byte, time.monotonic(), len(part.data))
        if job.archive_id and part.description is not None:
            self.descriptions[job.archive_id] = part.description
        self.stats.requests += 1
        self.stats.bytes_fetched += len(part.data)
        digests = leaf_digests(part.data)
        if (
            part.tree_hash is None
            and job.checksums_due
            and is_tree_hash_aligned(start, end, job.size)
        ):
            # The spec says this response carries a checksum: without one, its bytes are
            # as unproven as corrupt ones (retried, then EIO), never served on their size.
            raise IntegrityError(
                f"job {job.job_id} bytes {start}-{end}: no x-amz-sha256-tree-hash, "
                "though the range is tree-hash aligned"
            )
        if part.tree_hash is None:
            return part.data, digests, SIZE
        received = combine(digests).hex()
        if received != part.tree_hash:
            raise IntegrityError(
                f"job {job.job_id} bytes {start}-{end}: checksum mismatch: "
                f"expected {part.tree_hash}, received {received}"
            )
        return part.data, digests, BLOCK

    def heard(self, sent: float, first_byte: float | None, last_byte: float, size: int) -> None:
        """A response's timing (``time.monotonic`` seconds: request sent, headers in, body
        read) for the link model; a response with no header time tells nothing."""
        if first_byte is not None:
            self.link.record(first_byte - sent, size, last_byte - first_byte)


async def _size_disagreement(job: Job, error: SizeDisagreement, ledger: Ledger) -> BadResponse:
    if job.kind == "inventory":
        field_name = "InventorySizeInBytes"
    else:
        field_name = "ArchiveSizeInBytes" if job.whole_archive else "RetrievalByteRange"
    problem = f"{field_name} says {job.size} bytes, the service sends {error.sent}"
    await ledger.record(job, MISMATCH, problem)  # no more requests for it
    return BadResponse(f"job {job.job_id}: {problem}")
