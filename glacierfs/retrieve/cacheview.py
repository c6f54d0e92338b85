"""Which leaves of an archive the disk cache holds, read without taking the cache.

A mount holds the cache directory's lock for as long as it runs, and ``retrieve`` must
plan beside it. The cache's index is SQLite in WAL mode, which lets a reader work
beside the one writer: this view opens it read-only (``mode=ro``) through the held cache
root (:mod:`glacierfs.cacheroot`), never takes the lock, and writes nothing. What it
reads is the disk cache's ``leaves`` table (one row per leaf present, the commit point
of :mod:`glacierfs.cache.disk`), keyed as
:attr:`glacierfs.jobs.Job.cache_key` names archive bytes.

A leaf counts as held only if a job whose verdict is not ``mismatch`` may serve it (its
row is shared, or owned by such a job): the bytes of a job whose output does not match
its record are no archive's, whatever its record said they were.

Planning must never think an archive uncached because it could not read the cache
(that would pay for it again): an index that exists but cannot be read, or has no
``leaves`` table, is an error, not an empty cache. A cache directory with no index
yet is an empty cache.
"""

from __future__ import annotations

import json
import sqlite3

from glacierfs.cache.disk import LAYOUT, SHARED
from glacierfs.cacheroot import Held
from glacierfs.errors import ConfigError
from glacierfs.jobs import Job, job_token
from glacierfs.read.ledger import MISMATCH, VERIFIED_META
from glacierfs.retrieve.selection import Archive
from glacierfs.treehash import combine

INDEX = "index.sqlite3"


def archive_key(archive: Archive, vault_arn: str) -> str:
    """The cache key of an archive's bytes, as every job of it names them."""
    job = Job(
        job_id="",
        kind="archive",
        size=archive.size,
        completed=0.0,
        created=0.0,
        vault_arn=vault_arn,
        archive_id=archive.archive_id,
        archive_size=archive.size,
        archive_tree_hash=archive.tree_hash,
    )
    return job.cache_key


class CacheIndex:
    """The leaves present in a disk cache, read-only, through the held cache root."""

    def __init__(self, root: Held) -> None:
        self.root = root
        self.path = root.path / LAYOUT / INDEX
        self._db: sqlite3.Connection | None = None
        self._refused: frozenset[str] = frozenset()  # owners whose leaves do not count
        self._owners = "owners"  # the column, where the index has it
        self._connect()

    def _connect(self) -> sqlite3.Connection | None:
        """The connection, opened once the index exists (a first save creates it)."""
        if self._db is not None:
            return self._db
        try:
            layout = self.root.existing_directory(LAYOUT)
            if layout is None:
                return None
            with layout:
                self._db = layout.connect(INDEX, readonly=True)
            self._db.execute("PRAGMA query_only = ON")
            self._db.execute("SELECT key, idx, digest FROM leaves LIMIT 1").fetchall()
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(leaves)")}
            self._owners = "owners" if "owners" in columns else "''"  # schema 1 had none
        except FileNotFoundError:
            return None
        except (OSError, sqlite3.Error, ConfigError) as error:
            self.close()
            raise ConfigError(
                f"cannot read the cache index {self.path} ({error}): "
                "not planning, as every archive would look uncached"
            ) from None
        return self._db

    def digests(self, key: str) -> dict[int, bytes]:
        """Leaf index -> SHA-256 digest of each leaf of ``key`` present, and good for a
        job not known to be ``mismatch`` (see :meth:`mismatched`)."""
        db = self._connect()
        if db is None:
            return {}
        try:
            query = f"SELECT idx, digest, {self._owners} FROM leaves WHERE key = ?"
            rows = db.execute(query, (key,))
            return {int(i): bytes(d) for i, d, owners in rows if self._counts(owners)}
        except sqlite3.Error as error:
            raise ConfigError(f"cannot read the cache index {self.path}: {error}") from None

    def _counts(self, owners: str | None) -> bool:
        if not owners or owners == SHARED or not self._refused:
            return True  # shared; or from before owners were kept, judged by the mount
        return any(owner not in self._refused for owner in owners.split())

    def mismatched(self, vault_arn: str) -> set[str]:
        """The jobs of the vault whose verdict is ``mismatch`` (a mount or a save found
        their output not what their record says): from now on their leaves do not count
        as held (:meth:`digests`); the job ids."""
        db = self._connect()
        if db is None:
            return set()
        try:
            rows = db.execute("SELECT name, value FROM meta WHERE namespace = ?", (VERIFIED_META,))
            found = {str(name) for name, value in rows if value == json.dumps(MISMATCH)}
        except sqlite3.Error as error:
            raise ConfigError(f"cannot read the cache index {self.path}: {error}") from None
        self._refused = frozenset(job_token(vault_arn, job_id) for job_id in found)
        return found

    def leaves(self, key: str) -> frozenset[int]:
        return frozenset(self.digests(key))

    def verified(self, archive: Archive, vault_arn: str) -> bool:
        """Whether every leaf is present and their tree hash is the archive's."""
        digests = self.digests(archive_key(archive, vault_arn))
        if archive.size == 0 or len(digests) < archive.leaves:
            return False
        ordered = [digests.get(i) for i in range(archive.leaves)]
        if any(d is None for d in ordered):
            return False
        return combine([d for d in ordered if d is not None]).hex() == archive.tree_hash

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> CacheIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
