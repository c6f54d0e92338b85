"""Retrievals in progress, for ``glacierfs status``: the jobs ``retrieve`` started on a
cache that are not done yet, and when each should be.

A mount lists only completed jobs; what is still on its way is known to the retrieval
state kept with the cache (:mod:`.state`). ``status`` reads that state without taking its
lock and without writing: a SQLite read-only connection, which in WAL mode reads the
last committed state while ``retrieve --follow`` keeps writing. A job the state still
holds as requested but the mount already lists has completed since: it is *ready*, with
the service's completion time; the others are *in progress*, expected within their
tier's typical times (:mod:`.pricing`) counted from when the service took the request.
Times are the service's, as the state records them, so they are shown as dates and
never compared with this host's clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from glacierfs.cacheroot import existing_root
from glacierfs.retrieve.pricing import PRICES
from glacierfs.retrieve.state import REQUESTED, STATE_DIR, STATE_FILE, Request, requests_in

BUSY_TIMEOUT = 2.0
"""Seconds to wait on a writer: WAL readers do not wait, but a checkpoint or a state
being created may hold the file briefly; status must answer, not hang."""

IN_PROGRESS, READY = "in progress", "ready"


@dataclass(frozen=True)
class Pending:
    """One job ``retrieve`` started (its ``request``) whose output is not saved yet."""

    request: Request
    state: str  # IN_PROGRESS or READY
    expected: tuple[float, float] | None  # when it should complete; None for an unknown tier
    completed: float | None  # the service's CompletionDate, once the mount lists the job

    def as_dict(self) -> dict[str, object]:
        r = self.request
        return {
            "job_id": r.job_id,
            "archive_id": r.archive_id,
            "path": r.path,
            "range": None if r.whole else [r.start, r.end],
            "size": r.size,
            "tier": r.tier,
            "requested": r.requested,
            "state": self.state,
            "expected": list(self.expected) if self.expected else None,
            "completed": self.completed,
        }


def pending(requests: Iterable[Request], completed: Mapping[str, float]) -> list[Pending]:
    """The requests not done yet, oldest first; ``completed`` maps the jobs the mount
    lists (completed ones) to their completion times. Saved, expired and failed
    requests are not pending: ``retrieve`` has dealt with them."""
    found = [_one(r, completed.get(r.job_id)) for r in requests if r.status == REQUESTED]
    return sorted(found, key=lambda p: (p.request.requested, p.request.job_id))


def _one(r: Request, done: float | None) -> Pending:
    expected: tuple[float, float] | None = None
    if done is not None:
        state, expected = READY, (done, done)
    else:
        state = IN_PROGRESS
        tier = PRICES.get(r.tier)
        if tier is not None:
            expected = (r.requested + tier.ready[0], r.requested + tier.ready[1])
    return Pending(r, state, expected, done)


def read_requests(cache_dir: Path, vault: str) -> list[Request]:
    """The vault's requests in the state kept in ``cache_dir``, read-only, no lock taken,
    through the held cache root (:mod:`glacierfs.cacheroot`), creating nothing; none when
    there is no state. Raises sqlite3.Error on a state that cannot be read, ConfigError
    on a cache directory or file that cannot be trusted."""
    root = existing_root(cache_dir)
    if root is None:
        return []
    with root:
        directory = root.existing_directory(STATE_DIR)
        if directory is None:
            return []
        with directory:
            try:
                db = directory.connect(STATE_FILE, readonly=True, timeout=BUSY_TIMEOUT)
            except FileNotFoundError:
                return []
    try:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        if "requests" not in tables:
            return []  # created, never written
        return requests_in(db, vault)
    finally:
        db.close()
