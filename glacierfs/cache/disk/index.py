"""The cache's SQLite index: opened through the held directory, its schema and migrations.

SQLite takes a name, not a descriptor, so the index is named through the held ``v1``
directory and checked to be the very file opened by descriptor
(:meth:`glacierfs.cacheroot.Held.connect`).

WAL mode, ``synchronous = NORMAL``: a commit survives a crash of the process; a power
loss may lose the last commits, never corrupt the file. A power loss may also leave a
row whose bytes never reached the disk: every leaf is checked on its first read in a
DiskCache's lifetime (see :mod:`.leaves`).

A full or failing disk comes out of :meth:`Index.transaction` as :class:`Unwritable`,
which the cache turns into a put that returns False and one warning.
"""

from __future__ import annotations

import errno
import json
import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from glacierfs.cache.disk import granules
from glacierfs.cacheroot import Held
from glacierfs.errors import ConfigError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 3
"""1: leaves and metadata. 2: each leaf names its owners (migrated: owned by no job).
3: each leaf has the fast sums of its granules (migrated: none, filled in on first read)."""

INDEX = "index.sqlite3"

SHORT_OF_FILES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM})
UNWRITABLE_ERRNOS = SHORT_OF_FILES | {
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
    errno.EIO,
    errno.EFBIG,
}
_UNWRITABLE_SQLITE = frozenset(
    {
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_PERM,
    }
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS leaves (
    key TEXT NOT NULL, idx INTEGER NOT NULL, length INTEGER NOT NULL,
    digest BLOB NOT NULL, verified TEXT NOT NULL, used REAL NOT NULL,
    owners TEXT NOT NULL DEFAULT '', sums BLOB,
    PRIMARY KEY (key, idx)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS leaves_by_use ON leaves (used);
CREATE TABLE IF NOT EXISTS meta (
    namespace TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (namespace, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS session (pid INTEGER NOT NULL);
"""


class Unwritable(Exception):
    """The disk or the index refused a write: full, read-only or failing."""


class WriteHealth:
    """Whether the cache can be written: one warning when it cannot, until it can again."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._failing = False
        self.cause = ""  # the last refusal, for a one-line error

    def failed(self, error: Exception) -> None:
        self.cause = str(error)
        if not self._failing:
            self._failing = True
            log.warning(
                "disk cache %s cannot be written (%s): reading from the network without"
                " caching until it can",
                self._root,
                error,
            )

    @property
    def failing(self) -> bool:
        return self._failing

    def succeeded(self) -> None:
        if self._failing:
            self._failing = False
            log.info("disk cache %s can be written again: caching resumed", self._root)


class Index:
    """The SQLite connection and its write transactions. Not thread-safe: the
    DiskCache's lock guards it."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def execute(self, query: str, parameters: tuple[object, ...] = ()) -> sqlite3.Cursor:
        return self.db.execute(query, parameters)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction; a full or failing disk comes out as :class:`Unwritable`."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
            yield self.db
            self.db.execute("COMMIT")
        except BaseException as error:
            if self.db.in_transaction:
                with suppress(sqlite3.Error):
                    self.db.execute("ROLLBACK")
            if isinstance(error, sqlite3.Error) and _sqlite_unwritable(error):
                raise Unwritable(f"cache index: {error}") from error
            raise

    def close(self) -> None:
        self.db.close()


def open_index(directory: Held, path: Path) -> Index:
    """The index, in WAL mode, in the held ``directory`` (``path`` names it in messages);
    created 0600 (SQLite gives its -wal and -shm the same), migrated to this schema."""
    try:
        db = directory.connect(INDEX)
    except ConfigError as error:
        raise ConfigError(f"cache index {path}: {error}") from None
    except (OSError, sqlite3.Error) as error:
        raise ConfigError(f"cache index {path}: {error}") from error
    try:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")  # WAL: durable across crashes; see module
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, 1, 2, SCHEMA_VERSION):
            raise ConfigError(f"cache index {path} has schema {version}, not {SCHEMA_VERSION}")
        _migrate(db, version)
    except sqlite3.Error as error:
        db.close()
        message = f"cache index {path} is unusable ({error}); delete it to start afresh"
        raise ConfigError(message) from error
    except BaseException:
        db.close()
        raise
    return Index(db)


def _migrate(db: sqlite3.Connection, version: int) -> None:
    """Bring an index of schema ``version`` (0: new) to :data:`SCHEMA_VERSION`, in one
    transaction: a crash leaves the old schema whole, and no row or byte is lost.

    1 -> 2: rows gain owners, none: no job vouched for a leaf then, so each is earned
    again (see :mod:`.leaves`) before it is served. 2 -> 3: rows gain granule sums, none:
    each leaf is checked by its SHA-256 on its next read, and its sums filled in then.
    Sums of another algorithm than :data:`~.granules.ALGORITHM` are dropped likewise."""
    db.execute("BEGIN IMMEDIATE")
    try:
        if version == 1:
            db.execute("ALTER TABLE leaves ADD COLUMN owners TEXT NOT NULL DEFAULT ''")
        if version in (1, 2):
            db.execute("ALTER TABLE leaves ADD COLUMN sums BLOB")
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                db.execute(statement)
        _record_algorithm(db)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


_ALGORITHM_NAME = ("glacierfs.cache", "granule-sums")
"""Where the index names the algorithm of its sums, in the ``meta`` table."""


def _record_algorithm(db: sqlite3.Connection) -> None:
    query = "SELECT value FROM meta WHERE namespace = ? AND name = ?"
    row = db.execute(query, _ALGORITHM_NAME).fetchone()
    if row is not None and json.loads(row[0]) == granules.ALGORITHM:
        return
    db.execute("UPDATE leaves SET sums = NULL")
    text = json.dumps(granules.ALGORITHM)
    db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?, ?)", (*_ALGORITHM_NAME, text))


def _sqlite_unwritable(error: sqlite3.Error) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in _UNWRITABLE_SQLITE
