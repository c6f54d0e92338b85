"""Which leaves of an archive the disk cache holds, read without taking the cache.

A mount holds the cache directory's lock for as long as it runs, and ``retrieve`` must
plan beside it. The cache's index is SQLite in WAL mode, which lets a reader work
beside the one writer: this view opens it read-only (``mode=ro``), never takes the
lock, and writes nothing. What it reads is the disk cache's ``leaves`` table (one row
per leaf present, the commit point of :mod:`glacierfs.cache.disk`), keyed as
:attr:`glacierfs.jobs.Job.cache_key` names archive bytes.

Planning must never think an archive uncached because it could not read the cache
(that would pay for it again): an index that exists but cannot be read, or has no
``leaves`` table, is an error, not an empty cache. A cache directory with no index
yet is an empty cache.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from glacierfs.cache.disk import LAYOUT
from glacierfs.errors import ConfigError
from glacierfs.jobs import Job
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
    """The leaves present in a disk cache, read-only."""

    def __init__(self, cache_root: Path) -> None:
        self.root = cache_root
        self.path = cache_root / LAYOUT / INDEX
        self._db: sqlite3.Connection | None = None
        self._connect()

    def _connect(self) -> sqlite3.Connection | None:
        """The connection, opened once the index exists (a first save creates it)."""
        if self._db is not None or not self.path.exists():
            return self._db
        try:
            self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
            self._db.execute("PRAGMA query_only = ON")
            self._db.execute("SELECT key, idx, digest FROM leaves LIMIT 1").fetchall()
        except sqlite3.Error as error:
            self.close()
            raise ConfigError(
                f"cannot read the cache index {self.path} ({error}): "
                "not planning, as every archive would look uncached"
            ) from None
        return self._db

    def digests(self, key: str) -> dict[int, bytes]:
        """Leaf index -> SHA-256 digest of each leaf of ``key`` present."""
        db = self._connect()
        if db is None:
            return {}
        try:
            rows = db.execute("SELECT idx, digest FROM leaves WHERE key = ?", (key,))
            return {int(i): bytes(d) for i, d in rows}
        except sqlite3.Error as error:
            raise ConfigError(f"cannot read the cache index {self.path}: {error}") from None

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
