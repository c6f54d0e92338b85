"""Custody: which cached leaves may be evicted, derived from the job records and the
delivery record each time they change, never stored per leaf.

A cached leaf is

- *delivered* once its archive was delivered or released (:mod:`.retrieve.delivered`):
  a copy is where the user wanted it, so its bytes go first;
- *replaceable* while a live job can send it again: a job the service listed at its
  last answer, whose output does not expire within :data:`~.config.CUSTODY_MARGIN`
  by the service's clock;
- *in custody* otherwise: paid for, and no one can send it again without paying
  again. The cache never evicts it.

The disk cache never sees a job record (``cache/`` knows keys, leaves and owners): a
:class:`Custody` turns the live jobs into the leaf ranges of cache keys they cover, each
with the moment (the service's time) at which it stops being live, and the delivery
record into the set of delivered keys; it hands the cache that value
(:class:`~.cache.disk.classes.Classes`, with the service's clock as the Date of its
latest answer) through :meth:`Custody.classes`, which the cache calls at each choice of
victims. A mount updates it after each job listing (:meth:`Custody.update`), and a job
that expires between listings turns its leaves into custody at its moment without one.
Times are the service's, never this host's: an emulator's clock may run fast.

:func:`cache_classes` counts the bytes of each class in a cache directory, read-only,
beside whoever holds the cache: ``retrieve`` paces by it.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path

from glacierfs.cache.disk import LAYOUT
from glacierfs.cache.disk.classes import (
    CUSTODY,
    DELIVERED,
    REPLACEABLE,
    ClassBytes,
    Classes,
    Live,
)
from glacierfs.cacheroot import existing_root
from glacierfs.config import CUSTODY_MARGIN
from glacierfs.errors import ConfigError
from glacierfs.jobs import Job
from glacierfs.logs import LogOnce
from glacierfs.retrieve.delivered import delivered_keys

log = logging.getLogger(__name__)

INDEX = "index.sqlite3"


def live_ranges(jobs: Iterable[Job], margin: float = CUSTODY_MARGIN) -> dict[str, tuple[Live, ...]]:
    """The leaves each job covers, by cache key, each until the moment (the service's
    time) at which its job comes within ``margin`` of expiring."""
    ranges: defaultdict[str, list[Live]] = defaultdict(list)
    for job in jobs:
        end = job.first_leaf + job.leaves
        ranges[job.cache_key].append((job.first_leaf, end, job.expires - margin))
    return {key: tuple(found) for key, found in ranges.items()}


class Custody:
    """The classes of one cache directory's leaves, as the cache asks for them."""

    def __init__(
        self,
        cache_root: Path,
        service_time: Callable[[], float | None] = lambda: None,
        margin: float = CUSTODY_MARGIN,
    ) -> None:
        self._root = cache_root
        self._service_time = service_time
        self._margin = margin
        self._unread = LogOnce(log)
        # Until the first listing nothing is known to be live: all but delivered is custody.
        self._classes = Classes(self._delivered(frozenset()), {}, self.now)

    def now(self) -> float:
        """The service's time: the Date of its latest answer (this host's clock before
        the first). Every fetch is answered just before its leaves are put, and the job
        list every ``refresh`` seconds, so it is never far behind when the cache asks."""
        service = self._service_time()
        return time.time() if service is None else service

    def classes(self) -> Classes:
        """The latest classes (:data:`~.cache.disk.classes.ClassesOf`): at once, any thread."""
        return self._classes

    def update(self, live: Iterable[Job]) -> None:
        """The service has just listed ``live``: derive again. Reads the delivery record
        (blocking: call it from a worker thread)."""
        delivered = self._delivered(self._classes.delivered)
        self._classes = Classes(delivered, live_ranges(live, self._margin), self.now)

    def _delivered(self, before: frozenset[str]) -> frozenset[str]:
        try:
            return delivered_keys(self._root)
        except ConfigError as error:  # keep what was known: fewer leaves may go, none lost
            self._unread.warning("delivery", "%s: archives delivered before are kept", error)
            return before

    def archive_class(self, key: str, leaves: Iterable[int]) -> str:
        """The class of an archive whose cached leaves of ``key`` are ``leaves``: delivered,
        in custody if any of them is, else replaceable."""
        classes = self._classes
        now = classes.clock()
        kinds = {classes.of(key, leaf, now) for leaf in leaves}
        if key in classes.delivered:
            return DELIVERED
        return CUSTODY if CUSTODY in kinds or not kinds else REPLACEABLE


def cache_classes(
    cache_root: Path, live: Iterable[Job], service_now: float, margin: float = CUSTODY_MARGIN
) -> ClassBytes:
    """Bytes of each class in the disk cache of ``cache_root``, read-only, beside a mount:
    ``live`` are the jobs the service lists now (its time ``service_now``). An empty
    cache has none; ConfigError when the index cannot be read."""
    classes = Classes(delivered_keys(cache_root), live_ranges(live, margin), lambda: service_now)
    now = service_now
    path = cache_root / LAYOUT / INDEX
    sums: Counter[str] = Counter()
    try:  # through the held cache root, read-only, as cacheview reads it
        root = existing_root(cache_root)
        if root is None:
            return ClassBytes()
        with root:
            layout = root.existing_directory(LAYOUT)
            if layout is None:
                return ClassBytes()
            with layout:
                db = layout.connect(INDEX, readonly=True)
        try:
            for key, index, length in db.execute("SELECT key, idx, length FROM leaves"):
                sums[classes.of(key, index, now)] += length
        finally:
            db.close()
    except FileNotFoundError:
        return ClassBytes()
    except (OSError, sqlite3.Error) as error:
        raise ConfigError(f"cannot read the cache index {path}: {error}") from None
    return ClassBytes(sums[DELIVERED], sums[REPLACEABLE], sums[CUSTODY])
