"""Delivery: each archive, once saved and verified, carried out of the cache to where the
user wants it (``--deliver-to DIR``: :mod:`.destination`; ``--deliver-exec CMD``:
:mod:`.execsink`), then recorded as delivered (:mod:`.delivered`), so that the cache may
free its bytes first and ``retrieve`` may request more.

An archive is delivered when every leaf is in the cache and the tree hash of their
digests is the archive's (from the inventory); each leaf read back is hashed again and
must match its digest, or nothing is delivered. An archive larger than the cache (it
comes in range jobs, :mod:`.pacing`) goes to a directory piece by piece: the leaves of
each saved piece are checked, written into the destination's part file, fsynced,
written down (:mod:`.progress_log`) and dropped from the cache; when every leaf is
written, the tree hash of all their digests is checked before the file takes its name.

Bytes come from the cache opened in this process (:class:`CacheSource`), for the
length of one pass, as saving opens it; when a mount holds the cache, from the mount's
``archives/`` files (:class:`MountSource`), where pieces of an archive larger than the
cache cannot be released, so they wait for the mount to end.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from glacierfs.cache.disk import DiskCache
from glacierfs.cacheroot import Held
from glacierfs.custody import Custody
from glacierfs.errors import GlacierfsError
from glacierfs.names.decoders import decode_description
from glacierfs.retrieve.cacheview import CacheIndex, archive_key
from glacierfs.retrieve.delivered import DELIVERED_EXEC, DELIVERED_TO, DeliveryRecord
from glacierfs.retrieve.destination import DeliveryFailed, Destination
from glacierfs.retrieve.execsink import ExecSink, backoff
from glacierfs.retrieve.holder import cache_holder, proven_mount
from glacierfs.retrieve.progress_log import GIVEN_UP, DeliveryLog
from glacierfs.retrieve.selection import Archive
from glacierfs.treehash import MIB, combine

Event = Callable[[str, str], None]


class CacheSource:
    """The cache, opened by this process for one pass."""

    def __init__(self, cache_root: Path, capacity: int) -> None:
        # No job listed: every leaf not delivered counts as custody, so opening the cache
        # to read from it never evicts what no one could send again.
        self.disk = DiskCache(cache_root, capacity, classes=Custody(cache_root).classes)

    def leaf(self, key: str, archive: Archive, index: int) -> bytes | None:
        return self.disk.get(key, index)

    def release(self, key: str, leaves: Sequence[int]) -> bool:
        for index in leaves:
            self.disk.drop(key, index)
        return True

    def close(self) -> None:
        self.disk.close()


class MountSource:
    """The cache of a running mount, read through its ``archives/`` files."""

    def __init__(self, mountpoint: Path) -> None:
        self.mountpoint = mountpoint

    def leaf(self, key: str, archive: Archive, index: int) -> bytes | None:
        try:
            fd = os.open(self.mountpoint / "archives" / archive.path, os.O_RDONLY)
        except OSError:
            return None
        try:
            return os.pread(fd, MIB, index * MIB)
        except OSError:
            return None
        finally:
            os.close(fd)

    def release(self, key: str, leaves: Sequence[int]) -> bool:
        return False  # the mount owns the cache; its custody rules keep these leaves

    def close(self) -> None:
        pass


Source = CacheSource | MountSource


def open_source(root: Held, capacity: int) -> Source:
    """The cache in-process when free, else the mount holding it, once proven."""
    holder = cache_holder(root)
    if holder is None:
        return CacheSource(root.path, capacity)
    return MountSource(proven_mount(root, holder))


def mtime_of(archive: Archive) -> float:
    """The mtime its description gives (as the mount shows it), else its creation."""
    decoded = decode_description(archive.description)
    return decoded.mtime if decoded.mtime is not None else archive.created


class Deliverer:
    """Delivery of a run's archives; also what the engine counts as out of the cache."""

    def __init__(
        self,
        root: Held,
        capacity: int,
        vault_arn: str,
        archives: Iterable[Archive],
        target: Destination | ExecSink,
        event: Event,
    ) -> None:
        self.root, self.capacity, self.vault_arn = root, capacity, vault_arn
        cache_root = root.path
        self.archives, self.target, self.event = list(archives), target, event
        self.record = DeliveryRecord.open(cache_root)
        self.log = DeliveryLog(cache_root, vault_arn)
        self._keys = {a.archive_id: archive_key(a, vault_arn) for a in self.archives}
        self._refresh()

    def _refresh(self) -> None:
        self._delivered = {d.archive_id for d in self.record.deliveries(self.vault_arn)}
        self._written = self.log.written()
        self._next_try = self.log.next_try()

    def close(self) -> None:
        self.record.close()
        self.log.close()

    # --- what the engine asks ------------------------------------------------------------

    def delivered(self, archive_id: str) -> bool:
        return archive_id in self._delivered

    def written(self, archive_id: str) -> frozenset[int]:
        return frozenset(self._written.get(archive_id, {}))

    def finished(self, archive_id: str) -> bool:
        return archive_id in self._delivered or self.given_up(archive_id)

    def given_up(self, archive_id: str) -> bool:
        return self._next_try.get(archive_id, 0.0) > GIVEN_UP

    def failing(self) -> set[str]:
        """Archives whose latest delivery failed (to be tried again, or given up)."""
        return set(self._next_try)

    def piecewise(self, archive: Archive) -> bool:
        """Whether the archive goes out piece by piece: larger than the cache, to a DIR."""
        return isinstance(self.target, Destination) and archive.size > self.capacity

    # --- a pass --------------------------------------------------------------------------

    def deliver(self, index: CacheIndex, eager: bool = False) -> int:
        """Deliver what the cache holds and is not delivered yet; how many archives.
        ``eager``: try those whose last delivery failed now, not after their backoff."""
        self._refresh()
        now, work = float("inf") if eager else time.time(), []
        for archive in self.archives:
            archive_id = archive.archive_id
            if self.finished(archive_id) or self._next_try.get(archive_id, 0.0) > now:
                continue
            digests = index.digests(self._keys[archive_id])
            written = self._written.get(archive_id, {})
            whole = len(set(digests) | set(written)) >= archive.leaves
            if whole or (self.piecewise(archive) and digests):
                work.append((archive, digests))
        if not work:
            return 0
        try:
            source = open_source(self.root, self.capacity)
        except GlacierfsError as error:
            self.event("note", f"not delivering now: {error}")
            return 0
        done = 0
        try:
            for archive, digests in work:
                done += self._one(source, archive, digests)
        finally:
            source.close()
            self._refresh()
        return done

    def _one(self, source: Source, archive: Archive, digests: dict[int, bytes]) -> int:
        try:
            if self.piecewise(archive):
                return self._pieces(source, archive, digests)
            return self._whole(source, archive, digests)
        except (DeliveryFailed, OSError) as error:
            why = str(error) if isinstance(error, DeliveryFailed) else error.strerror
            self._failed(archive, f"not delivered now: {why}")
            return 0

    def _leaves(
        self, source: Source, archive: Archive, digests: dict[int, bytes], wanted: range
    ) -> Iterator[bytes]:
        key = self._keys[archive.archive_id]
        for index in wanted:
            data = source.leaf(key, archive, index)
            expected = min(MIB, archive.size - index * MIB)
            if data is None or len(data) != expected:
                raise DeliveryFailed(f"{archive.path}: leaf {index} is no longer in the cache")
            if hashlib.sha256(data).digest() != digests[index]:
                raise DeliveryFailed(f"{archive.path}: leaf {index} read back wrong")
            yield data

    def _whole(self, source: Source, archive: Archive, digests: dict[int, bytes]) -> int:
        ordered = [digests[i] for i in range(archive.leaves)]
        if combine(ordered).hex() != archive.tree_hash:
            self._failed(archive, "its leaves in the cache are not the archive", forever=True)
            return 0
        leaves = self._leaves(source, archive, digests, range(archive.leaves))
        if isinstance(self.target, ExecSink):
            outcome = self.target.run(archive.path, leaves)
            if not outcome.ok:
                self._failed(archive, f"--deliver-exec failed: {outcome.why}")
                return 0
            return self._done(archive, DELIVERED_EXEC, self.target.describe())
        placed = self.target.whole(archive, leaves, mtime_of(archive))
        if placed.renamed:
            self.event("note", f"{archive.path}: another file has its name: as {placed.path}")
        return self._done(archive, DELIVERED_TO, str(self.target.root / placed.path))

    def _pieces(self, source: Source, archive: Archive, digests: dict[int, bytes]) -> int:
        assert isinstance(self.target, Destination)
        written = dict(self._written.get(archive.archive_id, {}))
        new = sorted(i for i in digests if i not in written)
        key = self._keys[archive.archive_id]
        if new and isinstance(source, MountSource):
            self.event("note", f"{archive.path}: pieces wait until the mount ends")
            return 0
        if new:
            fd = self.target.open_part(archive, resume=bool(written))
            try:
                for index in new:
                    (data,) = self._leaves(source, archive, digests, range(index, index + 1))
                    os.pwrite(fd, data, index * MIB)
                os.fsync(fd)
            finally:
                os.close(fd)
            self.log.wrote(archive.archive_id, {i: digests[i] for i in new})
            written.update({i: digests[i] for i in new})
        source.release(key, sorted(i for i in digests if i in written))
        if len(written) < archive.leaves:
            return 0
        ordered = [written[i] for i in range(archive.leaves)]
        if combine(ordered).hex() != archive.tree_hash:
            self.target.drop_part(archive)
            self.log.forget(archive.archive_id)
            self._failed(archive, "its pieces do not make the archive", forever=True)
            return 0
        fd = self.target.open_part(archive, resume=True)
        try:
            placed = self.target.finish_part(archive, fd, mtime_of(archive))
        finally:
            os.close(fd)
        self.log.forget(archive.archive_id)
        return self._done(archive, DELIVERED_TO, str(self.target.root / placed.path))

    def _done(self, archive: Archive, how: str, target: str) -> int:
        self.record.record(
            self.vault_arn, archive.archive_id, archive.tree_hash, archive.size, how, target
        )
        self.log.cleared(archive.archive_id)
        self.event(
            "delivered", f"{archive.path}: {'by' if how == DELIVERED_EXEC else 'to'} {target}"
        )
        return 1

    def _failed(self, archive: Archive, why: str, forever: bool = False) -> None:
        count = self.log.failures(archive.archive_id) + 1
        wait = float("inf") if forever else backoff(count)
        self.log.failed(archive.archive_id, why, wait, time.time())
        later = "given up" if forever else f"tried again in {wait:.0f} s"
        self.event("failed" if forever else "note", f"{archive.path}: {why} ({later})")
