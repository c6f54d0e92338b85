"""Inline reads of committed leaves: one dict lookup and one ``preadv`` on the trio thread.

Design. A warm read should cost what it asks for. :class:`LocalReads` keeps, per object a
mount reads, a view of its committed leaves as the disk cache's index had them (length,
the XXH3 sums of their 64 KiB granules, which granules were checked in this mount), and
its data file, held open. A read of bytes in leaves of the view then needs no SQLite and
no lock: it reads the bytes asked for with ``preadv(..., RWF_NOWAIT)`` into a pooled
buffer, on the trio thread; only what the page cache does not hold goes to a worker
thread (under AsyncDisk's limiter). Granules not yet checked in this mount are read whole
(the request rounded out to 64 KiB, within its leaves), their sums checked inline (about
2 us per granule), and marked; a mismatch or a short read drops the leaf as
:mod:`glacierfs.cache.disk.reads` does (row removed, bytes punched, one warning) and the
caller fetches it again. A leaf whose row has no sums (written before schema 3) is not in
the view: the caller's whole-leaf path checks its SHA-256 and fills its sums in.

Why no byte of a leaf removed meanwhile is served. The disk cache keeps two rules
(:mod:`glacierfs.cache.disk.leaves`, :mod:`glacierfs.cache.disk.puts`): the bytes of a
leaf with a row never change while the row exists (a put writes only leaves without
rows; a replaced leaf is removed first), and every removal bumps its object's generation
*before* it punches a hole, deletes the file, or lets a put rewrite the bytes. A view is
taken with the generation it was read at, and every read compares the generation after
its ``preadv`` returned: equal means no removal had started when the bytes were read, so
they are the bytes of the rows the view holds, checked or checkable against their sums;
otherwise the bytes are thrown away and the view is taken again. The data file stays
held (a use of its :class:`~glacierfs.cache.disk.blocks.Handle`) for as long as the view
or a read in a worker thread uses its descriptor, so the descriptor cannot be closed and
its number reused for another file under a read; a deleted file's descriptor still reads
the old inode, which the generation check then refuses.

Bytes are read into pooled reply buffers (:mod:`glacierfs.cache.replies`).

Sequential readers. The reader hints the leaves ahead of a streak to the page cache
(:meth:`LocalReads.hint`: ``posix_fadvise(WILLNEED)`` in a worker thread), so that the
next reads find their pages and stay on the trio thread.
"""

from __future__ import annotations

import errno
import logging
import os
from collections import OrderedDict
from collections.abc import Sequence

import trio

from glacierfs.cache import views
from glacierfs.cache.disk.blocks import Handle
from glacierfs.cache.disk.reads import Reads, Snapshot
from glacierfs.cache.replies import SMALLEST, ReplyPool
from glacierfs.cache.views import Leaf, View
from glacierfs.treehash import MIB

log = logging.getLogger(__name__)

_NOWAIT = os.RWF_NOWAIT

VIEW_LEAVES = 256
"""Rows loaded into a view at a time (aligned): one thread hop per 256 MiB of a sequential
reader, and a few KiB of memory each (128 bytes of sums a leaf)."""

VIEW_OBJECTS = 64
"""Objects with a view at once, each holding its data file open: well under the disk
cache's 256 open files."""

READ_ATTEMPTS = 4
"""Reads raced by a removal in their object (or missing a leaf the view lacked) before the
caller's own path takes over."""

HINT_BATCH = 8
"""Leaves hinted to the page cache at a time: a worker thread per 8 MiB a streak reads,
not one per read (a thread hop costs more CPU than the hint)."""

TOUCH_BATCH = 256
"""Leaves read inline whose last use is given to the eviction order in one worker thread
(or, when reads keep to fewer leaves, :data:`TOUCH_READS` reads)."""

TOUCH_READS = 4096
"""Reads after which the leaves they touched are given to the eviction order anyway."""


class _Raced(Exception):
    """A removal in the object overlapped the read: take the view again."""


class LocalReads:
    """The inline reads of one mount (see the module). Trio thread only, but for the
    worker threads it starts itself."""

    def __init__(self, reads: Reads, limiter: trio.CapacityLimiter) -> None:
        self._reads = reads
        self._limiter = limiter
        self._views: OrderedDict[str, View] = OrderedDict()
        self._unused: list[Handle] = []  # held by views gone stale: released at the next load
        self._nowait = True  # False where the filesystem refuses RWF_NOWAIT
        self._nursery: trio.Nursery | None = None
        self.pool = ReplyPool()
        self.bytes_read = 0  # asked of the data files (status adds it to the disk cache's)
        self.inline = 0  # reads served without a worker thread
        self.threaded = 0  # reads that needed one (page cache misses)
        self._touched: set[tuple[str, int]] = set()  # read inline, last use not yet noted
        self._reads_untouched = 0  # reads since the eviction order last learnt of them

    def counts(self) -> dict[str, int]:
        """Reads served inline, and those that needed a worker thread (the page cache did
        not hold their bytes): the mount's status shows them."""
        return {"disk_reads_inline": self.inline, "disk_reads_threaded": self.threaded}

    def hint_in(self, nursery: trio.Nursery) -> None:
        """Where :meth:`hint` runs its worker threads; without it, hints are skipped."""
        self._nursery = nursery

    def close(self) -> None:
        """Let go of the data files held by views (the mount is ending)."""
        held = self._unused + [v.handle for v in self._views.values() if v.handle and not v.busy]
        self._views.clear()
        self._unused = []
        self._reads.release(held)
        self._reads.touch(self._touched)
        self._touched = set()

    # --- reading ---------------------------------------------------------------------

    async def read(
        self, key: str, offset: int, end: int, digests: Sequence[bytes]
    ) -> memoryview | None:
        """Bytes ``[offset, end)`` of object ``key`` (leaf ``i`` at ``i * MIB``), checked,
        if the leaves they touch are in the cache with these ``digests`` (the caller's
        word for them: whom they are good for is the caller's business). None when a
        leaf is not in the cache with sums and that digest, or was damaged (dropped:
        the caller fetches it), or reads kept racing removals."""
        first, stop = offset // MIB, (end - 1) // MIB + 1
        for _ in range(READ_ATTEMPTS):
            view = self._views.get(key)
            if (
                view is None
                or view.generation != self._reads.generation(key)
                or any(i not in view.leaves for i in range(first, stop))
            ):
                view = await self._load(key, first, stop)
                if view is None:
                    return None
            self._views.move_to_end(key)
            if not views.holds(view, first, digests):
                return None  # not in the cache with sums, or with other bytes (another job's)
            try:
                data = await self._read_span(key, view, offset, end)
            except _Raced:
                self._retire(key, view)
                continue
            if data is not None:
                self._note_use(key, first, stop)
            return data
        return None

    def read_now(
        self, key: str, offset: int, end: int, digests: Sequence[bytes]
    ) -> memoryview | None:
        """What :meth:`read` gives, when it can be had at once: the view holds the leaves
        and the page cache the bytes (any granule unchecked is checked here too). None:
        ask :meth:`read`, which does the rest (loads, worker threads, drops).

        The generation is compared once, after the ``preadv``: it only grows, so a view
        stale before the read is refused then too."""
        view = self._views.get(key)
        if view is None or view.handle is None or not self._nowait:
            return None
        span = views.plan(view, offset, end, digests)
        if span is None:
            return None  # not in the view with sums, or with other bytes (another job's)
        lo, hi, unchecked = span
        buffer = bytearray(hi - lo) if hi - lo < SMALLEST else self.pool.take(hi - lo)
        data = memoryview(buffer)
        if len(buffer) != hi - lo:
            data = data[: hi - lo]
        try:
            got = os.preadv(view.handle.fd, [data], lo, _NOWAIT)
        except OSError:  # EAGAIN: not in the page cache; any other: :meth:`read` sees it
            got = -1
        if (
            got != hi - lo
            or self._reads.generation(key) != view.generation
            or (unchecked and views.check(view, data, lo, unchecked) is not None)
        ):
            self.pool.give(buffer)
            return None
        self.bytes_read += hi - lo
        self.inline += 1
        self._views.move_to_end(key)
        self._note_use(key, offset // MIB, (end - 1) // MIB + 1)
        return data if lo == offset and hi == end else data[offset - lo : end - lo]

    def _note_use(self, key: str, first: int, stop: int) -> None:
        """The eviction order learns of inline reads in batches, off the trio thread."""
        if stop == first + 1:
            self._touched.add((key, first))
        else:
            self._touched.update((key, index) for index in range(first, stop))
        self._reads_untouched += 1
        if len(self._touched) >= TOUCH_BATCH or self._reads_untouched >= TOUCH_READS:
            self._flush_touches()

    def _flush_touches(self) -> None:
        if self._nursery is not None:
            touched, self._touched, self._reads_untouched = self._touched, set(), 0
            self._nursery.start_soon(self._flush_touched, touched)

    async def _flush_touched(self, touched: set[tuple[str, int]]) -> None:
        await trio.to_thread.run_sync(self._reads.touch, touched, limiter=self._limiter)

    async def _read_span(self, key: str, view: View, offset: int, end: int) -> memoryview | None:
        if views.spans(view, offset, end) is None or view.handle is None:
            return None
        cover = views.cover(view, offset, end)
        lo, hi = (offset, end) if not cover else (cover[0], cover[1])
        buffer = self.pool.take(hi - lo)
        data = memoryview(buffer)[: hi - lo]
        got = await self._pread(view, view.handle.fd, data, lo)
        self.bytes_read += hi - lo
        if self._reads.generation(key) != view.generation:
            raise _Raced
        if got < hi - lo:
            await self._drop(key, view, (lo + got) // MIB)
            return None
        if cover:
            bad = views.check(view, data, lo, cover[2])
            if bad is not None:
                await self._drop(key, view, bad)
                return None
        return data[offset - lo : end - lo]

    async def _pread(self, view: View, fd: int, data: memoryview, offset: int) -> int:
        """Bytes read into ``data`` from ``offset``: from the page cache on this thread,
        the rest in a worker thread; short only at the end of the file or on an error."""
        got = 0
        if self._nowait:
            try:
                got = os.preadv(fd, [data], offset, os.RWF_NOWAIT)
            except BlockingIOError:
                pass
            except OSError as error:
                if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                    log.debug("disk cache: inline read at %d: %s", offset, error)
                    return 0
                self._nowait = False
        if got == len(data):
            self.inline += 1
            return got
        self.threaded += 1
        view.busy += 1
        try:
            rest = await trio.to_thread.run_sync(
                _read_fully, fd, data[got:], offset + got, limiter=self._limiter
            )
        finally:
            self._done_with(view)
        return got + rest

    async def _drop(self, key: str, view: View, index: int) -> None:
        """The leaf ``index`` read short or failed its sums: dropped (unless raced)."""
        view.leaves.pop(index, None)
        await trio.to_thread.run_sync(
            self._reads.drop_damaged, key, index, view.generation, limiter=self._limiter
        )

    # --- views -----------------------------------------------------------------------

    async def _load(self, key: str, first: int, stop: int) -> View | None:
        """The view of ``key`` with leaves ``[first, stop)`` loaded (those with rows)."""
        view = self._views.get(key)
        if view is not None and view.generation != self._reads.generation(key):
            self._retire(key, view)
            view = None
        lo = first - first % VIEW_LEAVES
        hi = max(stop, lo + VIEW_LEAVES)
        hold = view is None or view.handle is None
        unused, self._unused = self._unused, []
        snap = await trio.to_thread.run_sync(
            self._snapshot, key, lo, hi, hold, unused, limiter=self._limiter
        )
        view = self._views.get(key)
        if view is not None and view.generation == snap.generation:
            if view.handle is None:
                view.handle, snap.handle = snap.handle, None
        else:
            if view is not None:
                self._retire(key, view)
            if not hold or snap.generation != self._reads.generation(key):
                if snap.handle is not None:
                    self._unused.append(snap.handle)
                return None  # moved during the load: the caller tries again
            view = self._views[key] = View(snap.generation, snap.handle)
            snap.handle = None
            while len(self._views) > VIEW_OBJECTS:
                old_key, old = next(iter(self._views.items()))
                self._retire(old_key, old)
        if snap.handle is not None:
            self._unused.append(snap.handle)
        for index, (length, digest, sums) in snap.rows.items():
            if sums is not None and index not in view.leaves:
                view.leaves[index] = Leaf(length, digest, sums)
        return view

    def _snapshot(self, key: str, lo: int, hi: int, hold: bool, unused: list[Handle]) -> Snapshot:
        """In a worker thread: release what stale views held, then take the rows."""
        self._reads.release(unused)
        return self._reads.snapshot(key, lo, hi, hold)

    def _retire(self, key: str, view: View) -> None:
        if self._views.get(key) is view:
            del self._views[key]
        view.stale = True
        self._done_with(view, 0)

    def _done_with(self, view: View, count: int = 1) -> None:
        view.busy -= count
        if view.stale and not view.busy and view.handle is not None:
            self._unused.append(view.handle)
            view.handle = None

    # --- hints -----------------------------------------------------------------------

    def hint(self, key: str, first: int, stop: int, *, final: bool = False) -> None:
        """A streak reads on to leaf ``stop``: ask the page cache for the leaves of
        ``[first, stop)`` present in the view and not hinted lately, in batches of
        :data:`HINT_BATCH` leaves (``final``: ``stop`` ends the object, hint the rest)."""
        view = self._views.get(key)
        if view is None or view.handle is None or self._nursery is None:
            return
        if first in view.hinted:
            first = view.hinted.stop
        if stop - first < HINT_BATCH and not final and view.hinted:  # the first goes now
            return
        runs = views.present_runs(view, first, stop)
        if not runs:
            return
        view.hinted = range(runs[0][0], runs[-1][1])
        view.busy += 1
        self._nursery.start_soon(self._advise, view, view.handle.fd, runs)

    async def _advise(self, view: View, fd: int, runs: list[tuple[int, int]]) -> None:
        try:
            await trio.to_thread.run_sync(_will_need, fd, runs, limiter=self._limiter)
        finally:
            self._done_with(view)


def _read_fully(fd: int, data: memoryview, offset: int) -> int:
    """Read into ``data`` from ``offset``, short reads carried on; bytes read."""
    done = 0
    while done < len(data):
        try:
            count = os.preadv(fd, [data[done:]], offset + done)
        except OSError as error:
            log.debug("disk cache: reading %d bytes at %d: %s", len(data), offset, error)
            break
        if count <= 0:
            break
        done += count
    return done


def _will_need(fd: int, runs: list[tuple[int, int]]) -> None:
    for first, stop in runs:
        try:
            os.posix_fadvise(fd, first * MIB, (stop - first) * MIB, os.POSIX_FADV_WILLNEED)
        except OSError as error:
            log.debug("disk cache: read-ahead hint: %s", error)
            return
