"""The delivery record: which archives have left the cache for good, so that their bytes
may go first when the cache needs room.

An archive is *delivered* once a copy of it is somewhere the user wanted it: written
under ``--deliver-to``, taken by ``--deliver-exec`` (exit 0), or *released* by hand
(``glacierfs release``, for a user who copied it with rsync). Until then the bytes the
user paid for are in the cache's custody (see :mod:`glacierfs.custody`): never evicted
once no live job can send them again.

Where. A table ``delivered`` in the retrieval state, ``CACHE_DIR/retrieve/state.sqlite3``
(:mod:`.state`), not in the disk cache's index: the cache's index belongs to whoever
holds the cache's lock (a mount, for as long as it runs), while delivery is done by
``retrieve``, ``deliver`` and ``release``, which run beside a mount; the retrieval
state is the SQLite file (WAL) they already write beside it, and "delivery state lives
with the retrieval state" (issue 21). A mount only reads it (:func:`delivered_keys`,
read-only, no lock), at each look at what it may evict.

One row per archive of a vault: ``(vault, archive_id)``, the archive's tree hash and size
(so that its bytes' cache key, :attr:`Delivery.key`, is known without a job record), how
it was delivered (:data:`DELIVERED_TO`, :data:`DELIVERED_EXEC`, :data:`RELEASED`), where
(a path, a command, or what the user named), and when (this host's clock: shown, never
compared with the service's). Recording twice keeps the first row: delivered is
forever, and recording is idempotent, so a killed delivery that records again is fine.

API (stable: ``retrieve --deliver-to``/``--deliver-exec`` and ``deliver`` use it)::

    with DeliveryRecord.open(cache_root) as record:
        record.record(vault_arn, archive_id, tree_hash, size, DELIVERED_TO, str(dest))
        record.is_delivered(vault_arn, archive_id)      # -> bool
        record.delivery(vault_arn, archive_id)          # -> Delivery | None
        record.deliveries(vault_arn)                    # -> list[Delivery], oldest first
    delivered_keys(cache_root)                          # read-only: frozenset of cache keys
    read_deliveries(cache_root, vault_arn)              # read-only: list[Delivery]

``vault`` is the vault's ARN, as :class:`.state.State` and the mount's catalog name it.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from glacierfs.cacheroot import existing_root, open_root
from glacierfs.errors import ConfigError
from glacierfs.jobs import Job
from glacierfs.retrieve.state import STATE_DIR, STATE_FILE

DELIVERED_TO = "deliver-to"
"""Written under a directory (``--deliver-to``, ``deliver DIR``)."""
DELIVERED_EXEC = "deliver-exec"
"""Taken by a command that exited 0 (``--deliver-exec``, ``deliver --exec``)."""
RELEASED = "released"
"""Marked by hand (``glacierfs release``)."""

BUSY_TIMEOUT = 10.0
"""Seconds a write waits for another writer of the state (``retrieve`` commits briefly)."""

READ_TIMEOUT = 2.0
"""Seconds a read-only look waits: a mount must answer, not hang, on a busy state."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS delivered (
    vault TEXT NOT NULL, archive_id TEXT NOT NULL, tree_hash TEXT, size INTEGER NOT NULL,
    how TEXT NOT NULL, target TEXT NOT NULL, at REAL NOT NULL, key TEXT NOT NULL,
    PRIMARY KEY (vault, archive_id)
);
"""

_COLUMNS = "vault, archive_id, tree_hash, size, how, target, at"


@dataclass(frozen=True)
class Delivery:
    """One archive delivered (or released)."""

    vault: str
    archive_id: str
    tree_hash: str | None
    size: int
    how: str  # DELIVERED_TO, DELIVERED_EXEC or RELEASED
    target: str  # where it went: a path, a command line, or what the user named
    at: float  # this host's time

    @property
    def key(self) -> str:
        """The cache key of the archive's bytes (:attr:`glacierfs.jobs.Job.cache_key`)."""
        return archive_cache_key(self.vault, self.archive_id, self.tree_hash, self.size)


def archive_cache_key(vault: str, archive_id: str, tree_hash: str | None, size: int) -> str:
    """The cache key every job of this archive names its bytes by."""
    job = Job("", "archive", size, 0.0, 0.0, vault, archive_id, size, tree_hash)
    return job.cache_key


class DeliveryRecord:
    """The delivery record of one cache directory, open for writing."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    @classmethod
    def open(cls, cache_root: Path) -> DeliveryRecord:
        """Open (creating if need be) the record in ``cache_root``'s retrieval state,
        through the held cache root (:mod:`glacierfs.cacheroot`); ConfigError in one line
        when it cannot be."""
        directory = cache_root / STATE_DIR
        try:
            with open_root(cache_root) as root, root.directory(STATE_DIR) as state:
                db = state.connect(STATE_FILE, timeout=BUSY_TIMEOUT)
            try:
                db.execute("PRAGMA journal_mode = WAL")
                db.executescript(_SCHEMA)
            except BaseException:
                db.close()
                raise
        except (OSError, sqlite3.Error) as error:
            raise ConfigError(f"delivery record in {directory}: {error}") from None
        return cls(db)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> DeliveryRecord:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def record(
        self,
        vault: str,
        archive_id: str,
        tree_hash: str | None,
        size: int,
        how: str,
        target: str,
        at: float | None = None,
    ) -> bool:
        """Note the archive as delivered; False when it already was (the first row stays)."""
        key = archive_cache_key(vault, archive_id, tree_hash, size)
        when = time.time() if at is None else at
        try:
            cursor = self._db.execute(
                f"INSERT OR IGNORE INTO delivered ({_COLUMNS}, key)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (vault, archive_id, tree_hash, size, how, target, when, key),
            )
        except sqlite3.Error as error:
            raise ConfigError(f"delivery record: {error}") from None
        return cursor.rowcount > 0

    def delivery(self, vault: str, archive_id: str) -> Delivery | None:
        rows = _select(self._db, "WHERE vault = ? AND archive_id = ?", (vault, archive_id))
        return rows[0] if rows else None

    def is_delivered(self, vault: str, archive_id: str) -> bool:
        return self.delivery(vault, archive_id) is not None

    def deliveries(self, vault: str | None = None) -> list[Delivery]:
        """The archives delivered (of ``vault``, or of every vault), oldest first."""
        return _select(self._db, *_of_vault(vault))


def read_deliveries(cache_root: Path, vault: str | None = None) -> list[Delivery]:
    """The deliveries recorded in ``cache_root``, read-only, no lock taken, nothing
    written; none when there is no record yet. ConfigError when it cannot be read."""
    db = _read_only(cache_root)
    if db is None:
        return []
    try:
        return _select(db, *_of_vault(vault))
    finally:
        db.close()


def delivered_keys(cache_root: Path) -> frozenset[str]:
    """The cache keys of every archive delivered from ``cache_root``, read-only."""
    return frozenset(d.key for d in read_deliveries(cache_root))


def _read_only(cache_root: Path) -> sqlite3.Connection | None:
    """The record, read-only through the held cache root; None when there is none. Creates
    nothing."""
    path = cache_root / STATE_DIR / STATE_FILE
    try:
        root = existing_root(cache_root)
        if root is None:
            return None
        with root:
            state = root.existing_directory(STATE_DIR)
            if state is None:
                return None
            with state:
                db = state.connect(STATE_FILE, readonly=True, timeout=READ_TIMEOUT)
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    except FileNotFoundError:
        return None
    except (OSError, sqlite3.Error) as error:
        raise ConfigError(f"delivery record {path}: {error}") from None
    if "delivered" not in tables:
        db.close()
        return None
    return db


def _of_vault(vault: str | None) -> tuple[str, tuple[str, ...]]:
    return ("", ()) if vault is None else ("WHERE vault = ?", (vault,))


def _select(db: sqlite3.Connection, where: str, parameters: tuple[str, ...]) -> list[Delivery]:
    query = f"SELECT {_COLUMNS} FROM delivered {where} ORDER BY at, vault, archive_id"
    try:
        rows = db.execute(query, parameters).fetchall()
    except sqlite3.Error as error:
        raise ConfigError(f"delivery record: {error}") from None
    return [Delivery(r[0], r[1], r[2], int(r[3]), r[4], r[5], float(r[6])) for r in rows]
