"""What ``retrieve`` asked for, kept with the cache: which archive, which range, at which
tier, when (by the service's clock), by which job, and what became of it.

Where. ``CACHE_DIR/retrieve/state.sqlite3``, its own SQLite file (WAL) beside the disk
cache, not inside the cache's index: a mount holds the cache's lock for as long as it
runs, and ``retrieve`` must work beside a mount as well as without one. So the state has
its own lock, ``CACHE_DIR/retrieve/lock``, taken (``flock``) by a run that may start
jobs, for its whole life: two runs on one cache never request the same archive twice.
A ``--dry-run`` beside a running one reads the state and changes nothing. The cache
itself is only read (:mod:`.cacheview`) or written through its owner (:mod:`.save`).
Every file here is opened through the held cache root (:mod:`glacierfs.cacheroot`), after
the root passed its checks: a refused run creates nothing.

Crashes. A job is written down in two steps: an *intent* (archive, range, tier, time)
is committed before InitiateJob is sent, and replaced by the job's row once the
service answers with its id. A run killed in between leaves an intent; the next run
finds the job it may have started among the service's live jobs (ListJobs lists jobs
in progress at once) and adopts it, or drops the intent. Either way no archive is
requested again while a job of it is live, as planning also skips every archive a live
job covers, whoever started it.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from glacierfs.cacheroot import Held
from glacierfs.errors import ConfigError
from glacierfs.retrieve.pacing import Requested, Unit

STATE_DIR = "retrieve"
STATE_FILE = "state.sqlite3"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    job_id TEXT PRIMARY KEY, vault TEXT NOT NULL, archive_id TEXT NOT NULL,
    path TEXT NOT NULL, start INTEGER NOT NULL, end INTEGER NOT NULL, whole INTEGER NOT NULL,
    tier TEXT NOT NULL, requested REAL NOT NULL, again INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'requested', failures INTEGER NOT NULL DEFAULT 0,
    note TEXT
);
CREATE INDEX IF NOT EXISTS requests_by_archive ON requests (vault, archive_id);
CREATE TABLE IF NOT EXISTS intents (
    id INTEGER PRIMARY KEY, vault TEXT NOT NULL, archive_id TEXT NOT NULL, path TEXT NOT NULL,
    start INTEGER NOT NULL, end INTEGER NOT NULL, whole INTEGER NOT NULL, tier TEXT NOT NULL,
    noted REAL NOT NULL, again INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS facts (name TEXT PRIMARY KEY, value REAL NOT NULL);
"""

REQUESTED, SAVED, EXPIRED, FAILED = "requested", "saved", "expired", "failed"


@dataclass(frozen=True)
class Request:
    """One job this cache's runs started."""

    job_id: str
    archive_id: str
    path: str
    start: int
    end: int
    whole: bool
    tier: str
    requested: float
    again: bool  # it replaced a job that expired before its output was saved
    status: str
    failures: int

    @property
    def size(self) -> int:
        return self.end - self.start + 1


@dataclass(frozen=True)
class Intent:
    id: int
    archive_id: str
    path: str
    start: int
    end: int
    whole: bool
    tier: str
    noted: float
    again: bool


class State:
    """The retrieval state of one vault in one cache directory."""

    def __init__(self, root: Held, vault: str) -> None:
        self.vault = vault
        directory = root.directory(STATE_DIR)
        self.directory = directory
        self.path = directory.path / STATE_FILE
        self._lock_fd: int | None = None
        try:
            self._db = directory.connect(STATE_FILE, timeout=30)
            try:
                self._db.execute("PRAGMA journal_mode = WAL")
                self._db.executescript(_SCHEMA)
                self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            except BaseException:
                self._db.close()
                raise
        except (OSError, sqlite3.Error) as error:
            directory.close()
            raise ConfigError(f"retrieval state {self.path}: {error}") from None
        except BaseException:
            directory.close()
            raise

    def close(self) -> None:
        self._db.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        self.directory.close()

    def __enter__(self) -> State:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def try_lock(self) -> bool:
        """Hold the state if no other run does; whether it is held now."""
        try:
            self.lock()
        except ConfigError:
            return False
        return True

    def lock(self) -> None:
        """Hold the state for this run (released at close); ConfigError if another has it."""
        try:
            fd = self.directory.open("lock", os.O_RDWR | os.O_CREAT)
        except OSError as error:
            raise ConfigError(f"{self.directory.path / 'lock'}: {error.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise ConfigError(
                f"another glacierfs retrieve (pid {owner}) is running on this cache"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction; a disk that refuses it (full, read-only) is one line."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.Error as error:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise ConfigError(f"retrieval state {self.path}: {error}") from None

    # --- requests ---------------------------------------------------------------------

    def intend(self, unit: Unit, tier: str, now: float, again: bool) -> int:
        """Note, before InitiateJob, that this unit is about to be requested."""
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO intents (vault, archive_id, path, start, end, whole, tier, noted,"
                " again) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (self.vault, unit.archive.archive_id, unit.archive.path, unit.start, unit.end,
                 int(unit.whole), tier, now, int(again)),
            )  # fmt: skip
            return int(cursor.lastrowid or 0)

    def requested(self, intent: int, job_id: str, answered: float | None = None) -> None:
        """The service answered the intent with ``job_id`` (at ``answered``, its time: the
        request is dated by the later of that and the intent's, since the clock known
        when the intent was noted may have been a look's, minutes or hours before)."""
        with self._transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO requests (job_id, vault, archive_id, path, start, end,"
                " whole, tier, requested, again) SELECT ?, vault, archive_id, path, start, end,"
                " whole, tier, MAX(noted, ?), again FROM intents WHERE id = ?",
                (job_id, answered if answered is not None else 0.0, intent),
            )
            db.execute("DELETE FROM intents WHERE id = ?", (intent,))

    def drop_intent(self, intent: int) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM intents WHERE id = ?", (intent,))

    def intents(self) -> list[Intent]:
        rows = self._db.execute(
            "SELECT id, archive_id, path, start, end, whole, tier, noted, again FROM intents"
            " WHERE vault = ? ORDER BY id",
            (self.vault,),
        )
        return [
            Intent(r[0], r[1], r[2], r[3], r[4], bool(r[5]), r[6], r[7], bool(r[8])) for r in rows
        ]

    def requests(self) -> list[Request]:
        return requests_in(self._db, self.vault)

    def mark(self, job_id: str, status: str, note: str | None = None) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE requests SET status = ?, note = COALESCE(?, note) WHERE job_id = ?",
                (status, note, job_id),
            )

    def failed_once(self, job_id: str) -> int:
        """Count one more failure to save the job's output; the count so far."""
        with self._transaction() as db:
            db.execute("UPDATE requests SET failures = failures + 1 WHERE job_id = ?", (job_id,))
            row = db.execute("SELECT failures FROM requests WHERE job_id = ?", (job_id,)).fetchone()
        return int(row[0]) if row else 0

    def history(self) -> list[Requested]:
        """Every request's moment and size, for the daily cap."""
        return [Requested(r.requested, r.size) for r in self.requests()] + [
            Requested(i.noted, i.end - i.start + 1) for i in self.intents()
        ]

    # --- facts about this host ----------------------------------------------------------

    def fact(self, name: str) -> float | None:
        row = self._db.execute("SELECT value FROM facts WHERE name = ?", (name,)).fetchone()
        return None if row is None else float(row[0])

    def set_fact(self, name: str, value: float) -> None:
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO facts VALUES (?, ?)", (name, value))


def requests_in(db: sqlite3.Connection, vault: str) -> list[Request]:
    """The vault's requests, oldest first, from a state database (also read read-only by
    :mod:`glacierfs.retrieve.pending`)."""
    rows = db.execute(
        "SELECT job_id, archive_id, path, start, end, whole, tier, requested, again, status,"
        " failures FROM requests WHERE vault = ? ORDER BY requested, job_id",
        (vault,),
    )
    return [
        Request(r[0], r[1], r[2], r[3], r[4], bool(r[5]), r[6], r[7], bool(r[8]), r[9], r[10])
        for r in rows
    ]
