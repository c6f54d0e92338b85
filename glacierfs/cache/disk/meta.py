"""The metadata store: JSON values by namespace and name, in the cache's index.

Other modules keep here what must outlive a mount beside the leaves it describes (job
records, names learnt): an output wholly cached stays listable after the service
forgets its job. A value lost to a full disk is logged, like a leaf that cannot be put.
"""

from __future__ import annotations

from collections.abc import Callable

from glacierfs.cache.disk.index import Index, Unwritable


class MetaStore:
    """JSON values by ``(namespace, name)``. Not thread-safe: the DiskCache's lock
    guards it. ``unwritable`` is told of a write the disk refused."""

    def __init__(self, index: Index, unwritable: Callable[[Exception], None]) -> None:
        self._index = index
        self._unwritable = unwritable

    def get(self, namespace: str, name: str) -> str | None:
        """The JSON text saved (decoded by the caller, outside the lock), or None."""
        query = "SELECT value FROM meta WHERE namespace = ? AND name = ?"
        row = self._index.execute(query, (namespace, name)).fetchone()
        return None if row is None else str(row[0])

    def put(self, namespace: str, name: str, text: str) -> None:
        """Save ``text``, a JSON document (encoded by the caller, outside the lock)."""
        self._write("INSERT OR REPLACE INTO meta VALUES (?, ?, ?)", (namespace, name, text))

    def list(self, namespace: str) -> list[tuple[str, str]]:
        """Every name in ``namespace`` with its JSON text (decoded by the caller)."""
        query = "SELECT name, value FROM meta WHERE namespace = ?"
        return self._index.execute(query, (namespace,)).fetchall()

    def delete(self, namespace: str, name: str) -> None:
        self._write("DELETE FROM meta WHERE namespace = ? AND name = ?", (namespace, name))

    def _write(self, query: str, parameters: tuple[str, ...]) -> None:
        try:
            with self._index.transaction() as db:
                db.execute(query, parameters)
        except Unwritable as error:
            self._unwritable(error)
