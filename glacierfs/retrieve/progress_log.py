"""Delivery under way, kept with the retrieval state so that a killed delivery resumes.

Two tables in ``CACHE_DIR/retrieve/state.sqlite3`` beside the delivery record
(:mod:`.delivered`, which says what is done):

* ``delivery_pieces``: for an archive larger than the cache, each leaf already written
  into its destination's part file (and released from the cache), with its SHA-256.
  The archive's tree hash is checked from these digests before the part file takes its
  name; a restart writes only the leaves not listed.
* ``delivery_failures``: an archive whose delivery failed (a command's exit, a full
  destination), how many times in a row, and when (this host's clock) to try again;
  ``next_try`` infinite: given up for good (its bytes came out wrong).
"""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

from glacierfs.cacheroot import open_root
from glacierfs.errors import ConfigError
from glacierfs.retrieve.state import STATE_DIR, STATE_FILE

_SCHEMA = """
CREATE TABLE IF NOT EXISTS delivery_pieces (
    vault TEXT NOT NULL, archive_id TEXT NOT NULL, leaf INTEGER NOT NULL,
    digest BLOB NOT NULL, PRIMARY KEY (vault, archive_id, leaf)
);
CREATE TABLE IF NOT EXISTS delivery_failures (
    vault TEXT NOT NULL, archive_id TEXT NOT NULL, failures INTEGER NOT NULL,
    next_try REAL NOT NULL, note TEXT NOT NULL, PRIMARY KEY (vault, archive_id)
);
"""


class DeliveryLog:
    """Pieces written and failures, of one vault's deliveries from one cache."""

    def __init__(self, cache_root: Path, vault: str) -> None:
        self.vault = vault
        directory = cache_root / STATE_DIR
        try:  # through the held cache root, as the state and the delivery record are
            with open_root(cache_root) as root, root.directory(STATE_DIR) as state:
                self._db = state.connect(STATE_FILE, timeout=30)
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as error:
            raise ConfigError(f"delivery state in {directory}: {error}") from None

    def close(self) -> None:
        self._db.close()

    # --- pieces ----------------------------------------------------------------------

    def written(self) -> dict[str, dict[int, bytes]]:
        """Archive id -> leaf -> digest, of every leaf written into a part file."""
        found: dict[str, dict[int, bytes]] = {}
        rows = self._db.execute(
            "SELECT archive_id, leaf, digest FROM delivery_pieces WHERE vault = ?", (self.vault,)
        )
        for archive_id, leaf, digest in rows:
            found.setdefault(archive_id, {})[int(leaf)] = bytes(digest)
        return found

    def wrote(self, archive_id: str, digests: dict[int, bytes]) -> None:
        """These leaves are in the part file, fsynced."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT OR REPLACE INTO delivery_pieces VALUES (?, ?, ?, ?)",
                [(self.vault, archive_id, leaf, d) for leaf, d in digests.items()],
            )

    def forget(self, archive_id: str) -> None:
        """The archive was placed (or its part file given up): its pieces are history."""
        self._db.execute(
            "DELETE FROM delivery_pieces WHERE vault = ? AND archive_id = ?",
            (self.vault, archive_id),
        )

    # --- failures ----------------------------------------------------------------------

    def failed(self, archive_id: str, note: str, wait: float, now: float) -> int:
        """One more failure; ``wait`` seconds before the next try (inf: never). The count."""
        row = self._db.execute(
            "SELECT failures FROM delivery_failures WHERE vault = ? AND archive_id = ?",
            (self.vault, archive_id),
        ).fetchone()
        count = (int(row[0]) if row else 0) + 1
        self._db.execute(
            "INSERT OR REPLACE INTO delivery_failures VALUES (?, ?, ?, ?, ?)",
            (self.vault, archive_id, count, now + wait if math.isfinite(wait) else 1e300, note),
        )
        return count

    def failures(self, archive_id: str) -> int:
        row = self._db.execute(
            "SELECT failures FROM delivery_failures WHERE vault = ? AND archive_id = ?",
            (self.vault, archive_id),
        ).fetchone()
        return int(row[0]) if row else 0

    def next_try(self) -> dict[str, float]:
        """Archive id -> when it may be tried again (1e300: given up)."""
        rows = self._db.execute(
            "SELECT archive_id, next_try FROM delivery_failures WHERE vault = ?", (self.vault,)
        )
        return {a: float(t) for a, t in rows}

    def cleared(self, archive_id: str) -> None:
        self._db.execute(
            "DELETE FROM delivery_failures WHERE vault = ? AND archive_id = ?",
            (self.vault, archive_id),
        )


GIVEN_UP = 1e299
"""A ``next_try`` beyond this is an archive given up."""
