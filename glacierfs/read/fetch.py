"""Fetch and verify: one range of a job's output streamed from the service into the disk
cache, checked, or an error.

Design.

* A fetch runs in a worker thread on one of the mount's connections, granted by the
  :class:`~glacierfs.read.scheduler.Scheduler` (demand first, then fair shares between
  streams; the request's ticket comes with its task, :data:`~.scheduler.REQUEST`).
  Before the GET it claims the range's leaves in the disk cache
  (:mod:`glacierfs.cache.disk.puts`: room reserved, leaves marked pending). Then, for
  each 1 MiB leaf of the body: ``readinto`` one of a few reusable 1 MiB buffers
  (:class:`Buffers`, one in use per connection, whatever the request size), SHA-256 of
  it, and ``pwrite`` into the cache file at its place, with the XXH3 sums of its
  granules. A leaf the cache already holds is hashed, never overwritten with
  unverified bytes.
* At the end of the body, the byte count is checked (:mod:`glacierfs.client`) and the
  leaf digests' root compared with ``x-amz-sha256-tree-hash``. A match commits every
  row in one transaction: the row is the commit point, and readers read the leaves from
  the cache file (they are in the page cache). A mismatch, a short body or a cut
  connection commits nothing: the written bytes are punched out, the claim given back,
  and the fetch retried (:mod:`glacierfs.retry`); if the mismatch persists, the read
  fails with EIO. A byte that failed its checksum is never committed nor returned.
* A range the cache cannot claim is not fetched here (:class:`DiskRefused`): the loader
  fetches it into memory, under its byte budget. Leaves the cache did not take after
  all (the disk filled up during the response, another digest is stored there) are
  kept in memory as ``bytes`` for the flight's waiters (:class:`Landed` ``held``).
* Each leaf comes back with its digest and how it was verified: ``block`` (it matched a
  response checksum) or ``size`` (only its length could be checked, where the spec
  promises no checksum). A range the spec says carries a checksum and arrives without
  one is as unproven as a corrupt one.
* Each response's timing (request sent, headers in, body read) feeds the mount's
  :class:`~glacierfs.read.link.LinkModel`, which sizes requests and read-ahead.
* What the service says twice is compared: an output whose whole length is not what the
  job's record says is a problem of the job, kept in its ledger, and no more requests
  are made for it. When the mount ends, a download's worker thread is abandoned; it
  ends on its own, committing or punching what it wrote.

Copies of each byte, from the socket to a FUSE reply (a cold read):

1. socket -> the connection's reusable buffer (``readinto``): needed, SHA-256 and XXH3
   read the bytes there, with no other copy and no fresh allocation;
2. buffer -> the cache file (``pwrite``, into the page cache): needed, it is the cache,
   and the way verified bytes reach readers, so no response is held in memory;
3. cache file -> a pooled reply buffer (a ``preadv`` of the bytes asked for, from the
   page cache, :mod:`glacierfs.cache.local`; a flight's waiters too, once it lands):
   needed while FUSE replies are Python buffers (an mmap would pin leaves against
   eviction and risk SIGBUS);
4. the FUSE reply (``writev`` to /dev/fuse): needed by the protocol.

Gone: the fresh ``bytes`` of each whole response and the per-leaf ``bytes`` copy into
the memory cache. Only the fallback (leaves the disk did not take) copies a leaf out of
the buffer, once, into the ``bytes`` its waiters read.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import trio

from glacierfs.cache.disk import DiskCache
from glacierfs.cache.disk.puts import Claim
from glacierfs.errors import (
    BadResponse,
    IntegrityError,
    JobExpired,
    SizeDisagreement,
    TransientServiceError,
)
from glacierfs.jobs import Job
from glacierfs.read.ledger import BLOCK, MISMATCH, SIZE, Ledger
from glacierfs.read.link import LinkModel
from glacierfs.read.scheduler import REQUEST, Scheduler
from glacierfs.retry import RetryPolicy, retrying
from glacierfs.stats import Stats
from glacierfs.treehash import MIB, combine, is_tree_hash_aligned
from glacierfs.wire import OutputPart


class Response(Protocol):
    """An open response (:class:`glacierfs.client.OutputStream`), its body still unread."""

    tree_hash: str | None
    description: str | None
    first_byte: float | None  # time.monotonic() when its headers arrived

    def readinto(self, view: memoryview) -> None: ...  # all of ``view``, or an error

    def finish(self) -> None: ...  # the count checked, the body at its end

    def close(self) -> None: ...


FetchPart = Callable[[Job, int, int], "Response | OutputPart"]
"""``(job, start, end)`` -> the response (or, from tests, its bytes); blocking, run in a
worker thread."""


class Whole:
    """A response whose bytes are all in memory (an :class:`OutputPart`), as a Response."""

    def __init__(self, part: OutputPart, what: str) -> None:
        self.tree_hash, self.description = part.tree_hash, part.description
        self.first_byte = part.first_byte
        self._data, self._at, self._what = memoryview(part.data), 0, what

    def readinto(self, view: memoryview) -> None:
        piece = self._data[self._at : self._at + len(view)]
        if len(piece) < len(view):
            sent = len(self._data)
            raise TransientServiceError(f"{self._what}: received {sent} bytes, fewer than asked")
        view[:] = piece
        self._at += len(view)

    def finish(self) -> None:
        if self._at != len(self._data):
            sent = len(self._data)
            raise TransientServiceError(f"{self._what}: received {sent} bytes, more than asked")

    def close(self) -> None:
        pass


class DiskRefused(Exception):
    """The disk cache cannot claim the range (no room beside the puts in progress, or the
    disk refuses): nothing was fetched; fetch it into memory instead."""


class Buffers:
    """Reusable 1 MiB buffers: one per fetch in progress (at most one per connection),
    kept for the next, so that no leaf allocates (and faults in) fresh memory."""

    def __init__(self) -> None:
        self._free: list[bytearray] = []
        self._lock = threading.Lock()

    def take(self) -> bytearray:
        with self._lock:
            return self._free.pop() if self._free else bytearray(MIB)

    def give(self, buffer: bytearray) -> None:
        with self._lock:
            self._free.append(buffer)


@dataclass(frozen=True)
class Sink:
    """Where a fetch writes its leaves: the cache object and first leaf, for ``owner``."""

    disk: DiskCache
    key: str
    first: int
    owner: str


@dataclass
class Landed:
    """A verified range: each leaf's digest and how it was verified (``block`` or
    ``size``); the offsets of the leaves now in the disk cache for the job (``stored``),
    and the bytes of those the cache did not take (``held``)."""

    digests: list[bytes]
    how: str
    stored: set[int] = field(default_factory=set)
    held: dict[int, bytes] = field(default_factory=dict)


class Fetcher:
    """Checked GETs of output ranges, at most ``connections`` at once, retried."""

    def __init__(
        self, fetch_part: FetchPart, connections: int, retry: RetryPolicy, stats: Stats
    ) -> None:
        self._fetch_part = fetch_part
        self.scheduler = Scheduler(connections, stats)
        self.link = LinkModel()
        self._retry = retry
        self._buffers = Buffers()
        self.stats = stats
        self.descriptions: dict[str, str] = {}  # archive id -> description, from headers

    async def fetch(
        self, job: Job, start: int, end: int, ledger: Ledger, sink: Sink | None = None
    ) -> Landed:
        """Bytes ``start..end`` of the output, checked and written to ``sink`` (without
        one, all held in memory); a size disagreement that persists is noted in
        ``ledger`` and fails with BadResponse."""
        what = f"job {job.job_id} bytes {start}-{end}"

        async def attempt() -> Landed:
            async with self.scheduler.connection(REQUEST.get()):
                # abandoned when cancelled (the mount ends): the thread ends on its own
                return await trio.to_thread.run_sync(
                    self._stream, job, start, end, sink, abandon_on_cancel=True
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

    def _stream(self, job: Job, start: int, end: int, sink: Sink | None) -> Landed:
        """In a worker thread: claim, GET, stream, check, then commit or give back."""
        size = end - start + 1
        lengths = [min(MIB, size - offset) for offset in range(0, size, MIB)]
        claim = sink.disk.begin_put(sink.key, sink.first, lengths, sink.owner) if sink else None
        if sink is not None and claim is None:
            raise DiskRefused(f"job {job.job_id} bytes {start}-{end}: the disk cache has no room")
        try:
            digests, held, tree_hash = self._receive(job, start, end, lengths, sink, claim)
            how = _verdict(job, start, end, tree_hash, digests)
        except BaseException:
            if sink is not None and claim is not None:
                sink.disk.abandon(claim)
            raise
        stored = sink.disk.commit(claim, digests, how) if sink and claim else set()
        return Landed(digests, how, stored, held)

    def _receive(
        self,
        job: Job,
        start: int,
        end: int,
        lengths: list[int],
        sink: Sink | None,
        claim: Claim | None,
    ) -> tuple[list[bytes], dict[int, bytes], str | None]:
        """The body, leaf by leaf through one reusable buffer: each leaf's digest, the
        leaves the cache did not take, and the response's tree hash header."""
        sent = time.monotonic()
        part = self._fetch_part(job, start, end)
        what = f"job {job.job_id} bytes {start}-{end}"
        response: Response = Whole(part, what) if isinstance(part, OutputPart) else part
        buffer = self._buffers.take()
        try:
            if job.archive_id and response.description is not None:
                self.descriptions[job.archive_id] = response.description
            self.stats.requests += 1
            digests: list[bytes] = []
            held: dict[int, bytes] = {}
            for n, length in enumerate(lengths):
                view = memoryview(buffer)[:length]
                response.readinto(view)
                self.stats.bytes_fetched += length
                digest = hashlib.sha256(view).digest()
                digests.append(digest)
                if (
                    sink is None
                    or claim is None
                    or not sink.disk.write_leaf(claim, n, view, digest)
                ):
                    held[n] = bytes(view)  # the fallback: the disk did not take this leaf
            response.finish()
            self.heard(sent, response.first_byte, time.monotonic(), sum(lengths))
        finally:
            response.close()
            self._buffers.give(buffer)
        return digests, held, response.tree_hash

    def heard(self, sent: float, first_byte: float | None, last_byte: float, size: int) -> None:
        """A response's timing (``time.monotonic`` seconds: request sent, headers in, body
        read) for the link model; a response with no header time tells nothing."""
        if first_byte is not None:
            self.link.record(first_byte - sent, size, last_byte - first_byte)


def _verdict(job: Job, start: int, end: int, tree_hash: str | None, digests: list[bytes]) -> str:
    """How the leaves are verified (``block`` or ``size``), or IntegrityError."""
    if tree_hash is None and job.checksums_due and is_tree_hash_aligned(start, end, job.size):
        # The spec says this response carries a checksum: without one, its bytes are
        # as unproven as corrupt ones (retried, then EIO), never served on their size.
        raise IntegrityError(
            f"job {job.job_id} bytes {start}-{end}: no x-amz-sha256-tree-hash, "
            "though the range is tree-hash aligned"
        )
    if tree_hash is None:
        return SIZE
    received = combine(digests).hex()
    if received != tree_hash:
        raise IntegrityError(
            f"job {job.job_id} bytes {start}-{end}: checksum mismatch: "
            f"expected {tree_hash}, received {received}"
        )
    return BLOCK


async def _size_disagreement(job: Job, error: SizeDisagreement, ledger: Ledger) -> BadResponse:
    if job.kind == "inventory":
        field_name = "InventorySizeInBytes"
    else:
        field_name = "ArchiveSizeInBytes" if job.whole_archive else "RetrievalByteRange"
    problem = f"{field_name} says {job.size} bytes, the service sends {error.sent}"
    await ledger.record(job, MISMATCH, problem)  # no more requests for it
    return BadResponse(f"job {job.job_id}: {problem}")
