"""The inventory a run works from, stored on disk and queried in batches.

A vault can hold ten million archives: more than ``retrieve`` may hold in memory as
objects. So the inventory is read once, as a stream, into a SQLite file beside the
retrieval state (``retrieve/inventory-<vault>.sqlite3``), one row per ArchiveId with
its decoded path, size, dates, tree hash and description; selection, planning and
saving read it back in batches (:data:`BATCH` rows), so what a run holds is bounded
by the batch, not by the vault. A later run whose inventory is the same (the same
file, unchanged; the same inventory job) uses the store as it is, without reading
the inventory again.

Names are those the mount gives (:mod:`glacierfs.names`): each description decoded
and made safe, then made unique by :func:`glacierfs.names.streamed.renamed`, which
reads the wanted paths in order from the store's index and names what
:func:`glacierfs.names.safe.assign_paths` would, one contested path at a time.

A store is built whole in a new file and put in place by ``rename``, so a run killed
while building leaves the previous store (or none), never half of one; a store that
does not say it is complete, or was built by another :data:`VERSION` of the naming,
is built again.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import suppress
from typing import Any

from glacierfs.cacheroot import Held
from glacierfs.errors import ConfigError
from glacierfs.inventory import Entry
from glacierfs.names.safe import Wanted, safe_name
from glacierfs.names.streamed import renamed
from glacierfs.names.versions import Version, entry_version, latest_keys, versioned
from glacierfs.retrieve.selection import Archive, created_of, plausible

VERSION = "2"
"""Of the store's schema and naming: a store of another version is built again."""

BATCH = 2000
"""Rows read, inserted or looked up at a time."""

SEP = "\x01"
"""Joins a wanted path's components in the store: below every character a safe
component may hold, so that the store's text order is the order of component tuples."""

_SCHEMA = """
CREATE TABLE archives (
    archive_id TEXT NOT NULL, wanted TEXT NOT NULL, rank TEXT NOT NULL, path TEXT NOT NULL,
    size INTEGER NOT NULL, created REAL NOT NULL, mtime REAL, tree_hash TEXT NOT NULL,
    description TEXT NOT NULL, named INTEGER NOT NULL, dated REAL, latest INTEGER NOT NULL
);
CREATE TEMP TABLE dated (archive_id TEXT PRIMARY KEY, wanted TEXT NOT NULL, latest INTEGER);
CREATE TABLE facts (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_COLUMNS = "archive_id, size, tree_hash, created, description, path, latest"
_STORED = "archive_id, path, size, created, mtime, tree_hash, description, latest"
"""What the store keeps once named: the rows in path order (their rowid order), so that
a pass over every archive reads the table front to back."""


def store_name(key: str) -> str:
    return f"inventory-{key}.sqlite3"


def _row(entry: Entry) -> tuple[object, ...]:
    """An entry's row: the path it wants is the one its description gives (``named``),
    else its ArchiveId; ``dated`` is its CreationDate for :mod:`glacierfs.names.versions`."""
    version = entry_version(entry)
    components = version.components
    wanted = SEP.join(components or (safe_name(entry.archive_id, "archive"),))
    created = created_of(entry.creation_date)
    rank = f"{created:020.3f}"
    path = wanted.replace(SEP, "/")
    return (entry.archive_id, wanted, rank, path, entry.size, created, version.mtime,
            entry.tree_hash.lower(), entry.description, bool(components), version.created,
            1)  # fmt: skip


def _archive(row: Sequence[Any]) -> Archive:
    archive_id, size, tree_hash, created, description, path, latest = row
    return Archive(archive_id, size, tree_hash, created, description, path, bool(latest))


class InventoryStore:
    """One vault's stored inventory (see the module)."""

    def __init__(self, directory: Held, key: str) -> None:
        """``directory``: the held state directory (:mod:`glacierfs.cacheroot`), through
        which the store's files are opened, renamed and removed; kept open by the caller."""
        self.directory, self.name = directory, store_name(key)
        self.path = directory.path / self.name  # in messages only
        self._db: sqlite3.Connection | None = None
        self._facts: dict[str, str] = {}
        self._open()

    def _open(self) -> None:
        try:
            self._db = self.directory.connect(self.name, readonly=True, timeout=30)
            self._facts = dict(self._db.execute("SELECT name, value FROM facts"))
        except (OSError, sqlite3.Error, ConfigError):
            self.close()  # none, or not a store of ours (a link, damaged): replaced when loaded
            self._facts = {}

    @property
    def ready(self) -> bool:
        return self._facts.get("complete") == "1" and self._facts.get("version") == VERSION

    def holds(self, identity: str) -> bool:
        """Whether the store is complete and was built from the inventory ``identity``."""
        return self.ready and self._facts.get("identity") == identity

    @property
    def source(self) -> str:
        return self._facts.get("source", "?")

    @property
    def count(self) -> int:
        return int(self._facts.get("count", "0"))

    def load(self, entries: Iterable[Entry], identity: str, source: str) -> None:
        """Build the store from ``entries`` (read once, as they come) and put it in place
        (from any thread: the store's own connection is opened again when next used)."""
        self.close()
        held = self.directory
        building = f".{self.name}.{os.getpid()}"
        scratch = f"{building}.scratch"
        self._remove(building, scratch)
        try:
            db = held.connect(scratch, timeout=30)
            try:
                db.execute("PRAGMA journal_mode = OFF")
                _build(db, entries)
                facts = {"identity": identity, "source": source, "version": VERSION}
                _finish(db, held, building, facts)
            finally:
                db.close()
            os.replace(building, self.name, src_dir_fd=held.fd, dst_dir_fd=held.fd)
        except (OSError, sqlite3.Error) as error:
            raise ConfigError(f"inventory store {self.path}: {error}") from None
        finally:
            self._remove(building, scratch)
        self._facts = facts

    def _remove(self, *names: str) -> None:
        for name in names:
            with suppress(FileNotFoundError):
                os.unlink(name, dir_fd=self.directory.fd)

    def _connection(self) -> sqlite3.Connection:
        if self._db is None and self.ready:
            self._open()
        if self._db is None or not self.ready:
            raise ConfigError(f"inventory store {self.path}: not built")
        return self._db

    def archives(self) -> Iterator[list[Archive]]:
        """Every archive, in path order, :data:`BATCH` at a time."""
        cursor = self._connection().execute(f"SELECT {_COLUMNS} FROM archives ORDER BY rowid")
        while rows := cursor.fetchmany(BATCH):
            yield [_archive(r) for r in rows]

    def lookup(self, archive_ids: Iterable[str]) -> dict[str, Archive]:
        """The archives of these ids the inventory lists."""
        found: dict[str, Archive] = {}
        ids = list(dict.fromkeys(archive_ids))
        db = self._connection()
        for start in range(0, len(ids), BATCH):
            chunk = ids[start : start + BATCH]
            marks = ",".join("?" * len(chunk))
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM archives WHERE archive_id IN ({marks})", chunk
            )
            found.update((str(r[0]), _archive(r)) for r in rows)
        return found

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> InventoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _build(db: sqlite3.Connection, entries: Iterable[Entry]) -> None:
    """Rows, one per ArchiveId (the first listed), indexed, then the contested renamed."""
    db.execute("PRAGMA synchronous = OFF")
    db.executescript(_SCHEMA)
    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO archives VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (_row(e) for e in plausible(entries)),
    )
    try:
        db.execute("CREATE UNIQUE INDEX first_id ON archives (archive_id)")
    except sqlite3.IntegrityError:  # an inventory lists each archive once; keep the first
        db.execute(
            "DELETE FROM archives WHERE rowid NOT IN "
            "(SELECT min(rowid) FROM archives GROUP BY archive_id)"
        )
        db.execute("CREATE UNIQUE INDEX first_id ON archives (archive_id)")
    db.execute("CREATE INDEX by_wanted ON archives (wanted)")
    _date_versions(db)
    moves = list(renamed(_groups(db), lambda path: _claimed(db, path)))
    db.executemany(
        "UPDATE archives SET path = ? WHERE archive_id = ?",
        (("/".join(path), key) for key, path in moves),
    )
    db.execute("COMMIT")


def _finish(db: sqlite3.Connection, held: Held, building: str, facts: dict[str, str]) -> None:
    """The named rows copied in path order into a new file (the scratch's free pages and
    naming columns left behind), indexed by ArchiveId, with the facts that say it is whole.
    The new file is made here (ours, 0600, never through a link) and attached by the name
    :meth:`Held.connect` gives SQLite, through the held directory."""
    os.close(held.open(building, os.O_RDWR | os.O_CREAT | os.O_EXCL))
    db.execute("ATTACH DATABASE ? AS out", (held.sqlite_name(building),))
    db.execute("PRAGMA out.journal_mode = OFF")
    db.execute("PRAGMA out.synchronous = OFF")
    db.execute("BEGIN")
    db.execute(
        f"CREATE TABLE out.archives AS SELECT {_STORED} FROM archives ORDER BY path, archive_id"
    )
    db.execute("CREATE UNIQUE INDEX out.by_id ON archives (archive_id)")
    db.execute("CREATE TABLE out.facts (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
    count = db.execute("SELECT count(*) FROM out.archives").fetchone()[0]
    facts.update(count=str(count), complete="1")
    db.executemany("INSERT INTO out.facts VALUES (?, ?)", facts.items())
    db.execute("COMMIT")
    db.execute("DETACH DATABASE out")


def _date_versions(db: sqlite3.Connection) -> None:
    """The versions of each path named by :func:`glacierfs.names.versions.versioned`
    (the newest keeps the path, older ones take a dated name), one path at a time, the
    new names gathered in a table, not in memory."""
    cursor = db.execute(
        "SELECT wanted, archive_id, mtime, dated FROM archives WHERE named ORDER BY wanted"
    )
    group: list[Version] = []
    while True:
        rows = cursor.fetchmany(BATCH)
        for wanted, archive_id, mtime, dated in rows:
            parts = tuple(wanted.split(SEP))
            if group and group[0].components != parts:
                _dated(db, group)
                group = []
            group.append(Version(archive_id, parts, mtime, dated))
        if not rows:
            break
    _dated(db, group)
    db.execute(
        "UPDATE archives SET wanted = d.wanted, path = replace(d.wanted, ?, '/'), "
        "latest = d.latest FROM temp.dated AS d WHERE d.archive_id = archives.archive_id",
        (SEP,),
    )


def _dated(db: sqlite3.Connection, group: list[Version]) -> None:
    if len(group) < 2:
        return
    names, latest = versioned(group), latest_keys(group)
    db.executemany(
        "INSERT INTO temp.dated VALUES (?, ?, ?)",
        ((v.key, SEP.join(names[v.key]), v.key in latest) for v in group),
    )


def _groups(db: sqlite3.Connection) -> Iterator[tuple[tuple[str, ...], list[Wanted]]]:
    """(wanted path, its claimants) in path order, read from the index."""
    cursor = db.execute("SELECT wanted, rank, archive_id FROM archives ORDER BY wanted")
    current: str | None = None
    claimants: list[Wanted] = []
    while rows := cursor.fetchmany(BATCH):
        for wanted, rank, archive_id in rows:
            if wanted != current:
                if current is not None:
                    yield tuple(current.split(SEP)), claimants
                current, claimants = wanted, []
            parts = tuple(wanted.split(SEP))
            claimants.append(Wanted(archive_id, parts, (rank, archive_id), archive_id))
    if current is not None:
        yield tuple(current.split(SEP)), claimants


def _claimed(db: sqlite3.Connection, path: tuple[str, ...]) -> bool:
    """Whether an archive wants ``path`` or a path under it."""
    text = SEP.join(path)
    if db.execute("SELECT 1 FROM archives WHERE wanted = ? LIMIT 1", (text,)).fetchone():
        return True
    under = db.execute(
        "SELECT 1 FROM archives WHERE wanted > ? AND wanted < ? LIMIT 1",
        (text + SEP, text + "\x02"),
    )
    return under.fetchone() is not None
