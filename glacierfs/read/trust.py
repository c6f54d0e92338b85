"""Trust in cached bytes: which job may read which leaf, and what each job's output is worth.

Design.

* A job record is untrusted: it can name any archive, ArchiveId and tree hashes and
  all, and the cache keeps an archive's bytes under that name. So a leaf is good for
  the job that fetched it (its response's checksum matched, or its length where no
  checksum is due), whichever path fetched it (a read, the name probe, ``retrieve``'s
  saver), and the disk cache's index names its owners (:mod:`glacierfs.cache.disk`;
  :attr:`Job.owner` is the job). Another job of the same archive fetches its own copy
  (the same digest costs it no disk write), so no job is judged by another's bytes.
* A leaf becomes the archive's, good for every job, vault and endpoint naming the archive,
  once the tree hash of all the archive's leaf digests equals the archive's tree hash:
  then the bytes are the archive, whoever fetched them. Likewise a job owns leaves others
  fetched when, together, they make up its output and their tree hash is its own
  ``SHA256TreeHash``. Both are proofs over digests the index holds: no byte is read again.
* A job's *view* is the digest of each leaf its readers were handed. The verdict is
  reached on the view (a leaf read once is judged as it was read), and a leaf handed to
  a job with another digest than before (a row another job replaced, say) is itself a
  mismatch: no reader of a job ever gets a file made of two jobs' bytes unnoticed.
* Once every leaf of an output is good for its job, the job gets a verdict: ``tree-hash``
  (the leaves' tree hash is the record's), ``mismatch`` (it is not; or the record
  contradicts itself), else ``blocks`` (every leaf matched a response checksum) or ``size``.
  ``mismatch`` is final: the read that completes the output fails with EIO, and so does
  every later read of that job.
* An archive's file read through several jobs is judged as one output too: the
  leaves its readers were handed, in the archive's own view, against the archive's
  tree hash (:meth:`Trust.check_archive`); a mismatch refuses the file, not the jobs.
* What the service says twice is compared: a job's record against itself and against its
  archive's inventory entry, an output's stated size against the bytes sent. A
  disagreement is a *problem*: logged as an error once, kept in the cache's metadata,
  shown by ``status``, and the job's verdict is ``mismatch``: every read fails.

:class:`Trust` answers the reader's questions (may this job read this leaf; does what
just arrived complete the job's output, and is it right);
:class:`~glacierfs.read.ledger.Ledger` keeps the verdicts and problems of jobs, in memory
and in the cache's metadata, so that a remount knows them; :class:`View` is what one
job's readers were handed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import trio

from glacierfs.cache.aio import AsyncDisk
from glacierfs.cache.disk import SHARED, LeafRow, merged
from glacierfs.cache.memory import MemoryCache
from glacierfs.jobs import Job, contradictions
from glacierfs.read.ledger import BLOCK, BLOCKS, MISMATCH, SIZE, TREE_HASH, Ledger
from glacierfs.treehash import combine

log = logging.getLogger(__name__)

INLINE_ROOT = 1024
"""Leaves whose tree hash is combined on the trio loop (about 1 ms); more go to a thread."""


@dataclass
class ObjectState:
    """What is known of one cache object: its leaves as the disk cache's index has them
    (digest, how checked, owners), and the jobs that read it in this mount."""

    digests: dict[int, LeafRow]
    jobs: dict[str, Job] = field(default_factory=dict)  # by ident
    frontier: int = 0  # every leaf below it was present when last looked


def slot(job: Job) -> str:
    """The key of a job's leaves in memory and in flight: its own, since a leaf there
    was checked for the job that fetched or loaded it."""
    return f"{job.cache_key}#{job.owner}"


def usable(job: Job, state: ObjectState, leaf: int) -> bool:
    """Whether the cached leaf is good for the job: shared, or owned by it."""
    row = state.digests.get(leaf)
    return row is not None and row.usable_by(job.owner)


def present(job: Job, state: ObjectState) -> Iterable[int]:
    """The leaves of the job's output the cache holds rows for: walked through the rows
    when they are fewer than the output's leaves, so that a question about a 40 TiB
    output costs what is cached, not its 40 million leaves."""
    first, stop = job.first_leaf, job.first_leaf + job.leaves
    if job.leaves <= len(state.digests):
        return (leaf for leaf in range(first, stop) if leaf in state.digests)
    return sorted(leaf for leaf in state.digests if first <= leaf < stop)


def after_put(job: Job, state: ObjectState, leaf: int, digest: bytes, how: str) -> LeafRow:
    """The leaf's row once the job's put of it is done, as the disk cache makes it."""
    old = state.digests.get(leaf)
    return merged(old, digest, how, job.owner) or old or LeafRow(digest, how, job.owner)


def needs_root(job: Job) -> bool:
    """Whether the job's verdict compares the output's tree hash with the record."""
    return job.tree_hash is not None or (job.whole_archive and job.archive_tree_hash is not None)


def judge(job: Job, hows: Sequence[str], root: bytes | None) -> tuple[str, str | None]:
    """The verdict on a job's whole output (``hows``: how each leaf was verified;
    ``root``: their tree hash, when :func:`needs_root`), and for a mismatch, the field
    that disagreed and how."""
    if root is not None:
        found = root.hex()
        if job.tree_hash is not None and found != job.tree_hash:
            return MISMATCH, f"SHA256TreeHash is {job.tree_hash}, the output's tree hash {found}"
        if job.whole_archive and job.archive_tree_hash not in (None, found):
            return MISMATCH, (
                f"ArchiveSHA256TreeHash is {job.archive_tree_hash}, the output's tree hash {found}"
            )
        return TREE_HASH, None
    return (BLOCKS if hows and all(how == BLOCK for how in hows) else SIZE), None


async def root_of(digests: Sequence[bytes]) -> bytes:
    """Their tree hash; in a worker thread unless there are few (a hash of 64 bytes is
    about a microsecond: a thread costs more up to thousands of leaves)."""
    if len(digests) <= INLINE_ROOT:
        return combine(digests)
    return await trio.to_thread.run_sync(combine, digests)


def how_verified(row: LeafRow) -> str:
    """A shared leaf is covered by its archive's tree hash: as good as a checksum."""
    return BLOCK if row.owners == SHARED else row.verified


class View:
    """The digests of the leaves a job's readers were handed, in one buffer (32 bytes a
    leaf of the output, allocated on the first leaf handed out: 32 MiB for a TiB read in
    a mount, 32 KiB for a GiB)."""

    _UNSEEN = bytes(32)

    def __init__(self, job: Job) -> None:
        self._first = job.first_leaf
        self._digests = bytearray(32 * job.leaves)

    def get(self, leaf: int) -> bytes | None:
        at = (leaf - self._first) * 32
        digest = bytes(self._digests[at : at + 32]) if 0 <= at < len(self._digests) else b""
        return None if digest in (b"", self._UNSEEN) else digest

    def see(self, leaf: int, digest: bytes) -> bool:
        """Note a leaf handed out; False when another digest was handed out before."""
        at = (leaf - self._first) * 32
        if not 0 <= at < len(self._digests):
            return True
        seen = self._digests[at : at + 32]
        if seen == self._UNSEEN:
            self._digests[at : at + 32] = digest
            return True
        return seen == digest


class Trust:
    """Who may read which leaf, and each job's verdict, for the reader (see the module)."""

    def __init__(self, disk: AsyncDisk, memory: MemoryCache) -> None:
        self._disk, self._memory = disk, memory
        self.ledger = Ledger(disk)
        self._views: dict[str, View] = {}  # job ident -> what its readers were handed
        self._changed: dict[str, int] = {}  # job ident -> a leaf that came back changed
        self._frontiers: dict[str, int] = {}  # job ident -> output leaves below it were known
        self._settled: set[str] = set()  # job idents judged on leaves good for them

    def see(self, job: Job, leaf: int, digest: bytes) -> None:
        """Note a leaf handed to the job's readers (see :class:`View`)."""
        view = self._views.get(job.ident)
        if view is None:
            view = self._views[job.ident] = View(job)
        if not view.see(leaf, digest):
            self._changed.setdefault(job.ident, leaf)

    def unchanged(self, job: Job) -> bool:
        """Whether every leaf handed to the job's readers came with the bytes first handed."""
        return job.ident not in self._changed

    async def check_handed(self, job: Job) -> None:
        """Raise IntegrityError when the job's readers got a leaf that changed."""
        if job.ident in self._changed:
            leaf = self._changed[job.ident] - job.first_leaf
            why = (
                f"leaf {leaf} of the output came with other bytes than before "
                "(another job's, under the same archive tree hash)"
            )
            await self.ledger.record(job, MISMATCH, why)
        self.ledger.refuse(job)

    async def check_archive(self, whole: Job, handed: Sequence[tuple[Job, int]]) -> None:
        """Leaves of an archive's file handed out, each through a job of it (the digest
        that job's readers were handed): note them in the archive's view, and once it
        holds every leaf, compare their tree hash with the archive's. Raise
        IntegrityError when the archive is ``mismatch``, now or before."""
        view = self._views.get(whole.ident)
        if view is None:
            view = self._views[whole.ident] = View(whole)
        for job, leaf in handed:
            seen = self._views.get(job.ident)
            digest = seen.get(leaf) if seen is not None else None
            if digest is not None and not view.see(leaf, digest):
                self._changed.setdefault(whole.ident, leaf)
        await self.check_handed(whole)
        at, stop = self._frontiers.get(whole.ident, 0), whole.leaves
        while at < stop and view.get(at) is not None:
            at += 1
        self._frontiers[whole.ident] = at
        if at < stop or whole.tree_hash is None or whole.ident in self._settled:
            return
        root = await root_of([view.get(leaf) or b"" for leaf in range(stop)])
        self._settled.add(whole.ident)
        if root.hex() != whole.tree_hash:
            why = f"its leaves' tree hash is {root.hex()}, the archive's {whole.tree_hash}"
            await self.ledger.record(whole, MISMATCH, why)
            self.ledger.refuse(whole)

    async def first_look(self, job: Job, state: ObjectState) -> None:
        """What is known of a job the first time this mount reads it: saved verdicts and
        problems, what its record says against itself, and what its cached leaves prove."""
        await self.ledger.load(job)
        for _, why in contradictions(job):
            await self.ledger.record(job, MISMATCH, why)
        await self.check_whole(job, state)

    async def check_whole(self, job: Job, state: ObjectState) -> None:
        """Share the archive if its leaves prove it whole, then judge the job's output."""
        if await self._share_if_whole(job, state):
            for other in list(state.jobs.values()):
                if other is not job:
                    await self.judge(other, state)
        await self.judge(job, state)

    async def _share_if_whole(self, job: Job, state: ObjectState) -> bool:
        """When all the archive's leaves are in and their tree hash is the archive's,
        make them good for every job; True when that happened now."""
        count = job.archive_leaves if job.shareable else 0
        while state.frontier < count and state.frontier in state.digests:
            state.frontier += 1  # so that checking after every fetch costs O(1) until whole
        if not count or state.frontier < count:
            return False
        rows = [state.digests.get(i) for i in range(count)]
        present = [row for row in rows if row is not None]
        if len(present) < count:  # some went since
            state.frontier = rows.index(None)
            return False
        if all(row.owners == SHARED for row in present):
            return False
        digests = [row.digest for row in present]
        root = await root_of(digests)
        if root.hex() != job.archive_tree_hash:
            return False
        if not await self._disk.share(job.cache_key, digests):
            return False
        for i, digest in enumerate(digests):
            row = state.digests.get(i)
            if row is not None and row.digest == digest:
                state.digests[i] = row._replace(owners=SHARED)
        log.info(
            "archive %s: its %d leaves match its tree hash: they serve every job of it",
            job.archive_tree_hash,
            count,
        )
        return True

    async def judge(
        self, job: Job, state: ObjectState, landing: dict[int, LeafRow] | None = None
    ) -> str | None:
        """The job's verdict once every leaf of its output is good for it (counting the
        rows of ``landing``, leaves about to be handed out); None before."""
        known = self.ledger.verdict(job)
        if known == MISMATCH or (known == TREE_HASH and job.ident in self._settled):
            return known
        if not self._may_be_whole(job, state, landing or {}):
            return None
        found = self._output(job, state, landing or {})
        if found is None:
            return None
        digests, hows, strangers = found
        root = await root_of(digests) if needs_root(job) else None
        verdict, why = judge(job, hows, root)
        if strangers and not await self._adopt(job, state, strangers, verdict):
            return None  # others' leaves that prove nothing for this job: it fetches its own
        self._settled.add(job.ident)  # a verdict saved by an earlier mount is confirmed
        await self.ledger.record(job, verdict, why)
        if verdict == MISMATCH:
            await self._drop_unproven(job, state)
        return verdict

    def _may_be_whole(self, job: Job, state: ObjectState, landing: dict[int, LeafRow]) -> bool:
        """Whether every leaf of the output may be known, in O(1) a call on the whole
        while they come in order: leaves known stay known, or :meth:`_output` says so."""
        view = self._views.get(job.ident)
        at, stop = self._frontiers.get(job.ident, job.first_leaf), job.first_leaf + job.leaves
        while at < stop and (
            at in landing or at in state.digests or (view is not None and view.get(at))
        ):
            at += 1
        self._frontiers[job.ident] = at
        return at >= stop

    def _output(
        self, job: Job, state: ObjectState, landing: dict[int, LeafRow]
    ) -> tuple[list[bytes], list[str], list[tuple[int, LeafRow]]] | None:
        """The job's output as its readers were and will be handed it: each leaf's digest
        and how it was verified, and the leaves only other jobs vouch for so far; None
        while a leaf is missing. A leaf handed out counts as it was, whatever its row
        says since (another job may have replaced it)."""
        view = self._views.get(job.ident)
        digests, hows, strangers = [], [], []
        for leaf in range(job.first_leaf, job.first_leaf + job.leaves):
            seen = view.get(leaf) if view else None
            row = landing.get(leaf) or state.digests.get(leaf)
            if seen is not None:
                digests.append(seen)
                hows.append(how_verified(row) if row and row.digest == seen else SIZE)
                continue
            if row is None:
                self._frontiers[job.ident] = leaf
                return None
            digests.append(row.digest)
            hows.append(how_verified(row))
            if not row.usable_by(job.owner):
                strangers.append((leaf, row))
        return digests, hows, strangers

    async def _adopt(
        self, job: Job, state: ObjectState, strangers: list[tuple[int, LeafRow]], verdict: str
    ) -> bool:
        """Make leaves others fetched good for the job too, when they prove its output:
        their tree hash is its record's; or (leaves cached before owners were kept, for a
        job whose record has no hash to check) the job's output is nothing else."""
        legacy = not needs_root(job) and all(row.owners == "" for _, row in strangers)
        if verdict != TREE_HASH and not legacy:
            return False
        for leaf, row in strangers:
            adopted = await self._disk.adopt(job.cache_key, leaf, [row.digest], job.owner)
            if not adopted:
                return False
            state.digests[leaf] = merged(row, row.digest, row.verified, job.owner) or row
        return True

    async def _drop_unproven(self, job: Job, state: ObjectState) -> None:
        """After a mismatch, drop the job's leaves that no matching checksum covers."""
        for leaf in range(job.first_leaf, job.first_leaf + job.leaves):
            row = state.digests.get(leaf)
            if row is None or row.owners == SHARED or row.verified != SIZE:
                continue
            if not row.usable_by(job.owner):
                continue
            rest = " ".join(o for o in row.owners.split() if o != job.owner)
            if rest:
                state.digests[leaf] = row._replace(owners=rest)
            else:
                del state.digests[leaf]
            self._memory.discard(slot(job), leaf)
            await self._disk.disown(job.cache_key, leaf, job.owner)

    async def verification(self, job: Job, state: ObjectState) -> str:
        """``tree-hash``, ``mismatch``, ``blocks``, ``size``, or ``none`` (nothing read)."""
        await self.judge(job, state)
        hows = {
            how_verified(row)
            for leaf in present(job, state)
            if (row := state.digests[leaf]).usable_by(job.owner)
        }
        return self.ledger.verification(job, hows)
