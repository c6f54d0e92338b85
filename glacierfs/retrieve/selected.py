"""The archives a run is about, read from the stored inventory in batches.

:class:`glacierfs.retrieve.selection.Criteria` says which archives are chosen;
this reads them from :class:`glacierfs.retrieve.inventorydb.InventoryStore`, in path
order, a batch at a time, so that no pass over a selection of millions holds more than
a batch. Archives asked for by id only (``--archive-id``) are looked up, not scanned for.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import replace

from glacierfs.retrieve.inventorydb import InventoryStore
from glacierfs.retrieve.selection import Archive, Criteria, glob_regex


class Selected:
    def __init__(self, store: InventoryStore, criteria: Criteria) -> None:
        self.store, self.criteria = store, criteria
        self._matchers = [glob_regex(p) for p in criteria.patterns]

    def _by_id_only(self) -> bool:
        return not self.criteria.everything and not self.criteria.patterns

    def batches(self) -> Iterator[list[Archive]]:
        """The archives chosen, in path order, a batch at a time (no batch empty)."""
        if self._by_id_only():
            found = self.store.lookup(self.criteria.archive_ids).values()
            chosen = sorted(self._chosen(found), key=lambda a: (a.path, a.archive_id))
            if chosen:
                yield chosen
            return
        for batch in self.store.archives():
            chosen = self._chosen(batch)
            if chosen:
                yield chosen

    def __iter__(self) -> Iterator[Archive]:
        for batch in self.batches():
            yield from batch

    def _chosen(self, archives: Iterable[Archive]) -> list[Archive]:
        return [a for a in archives if self.criteria.chooses(a, self._matchers)]

    def older_versions(self) -> tuple[int, int]:
        """Archives, and bytes, that ``--latest`` leaves out: chosen but for it (a pass
        over the store, made only with ``--latest``)."""
        if not self.criteria.latest:
            return 0, 0
        every = Selected(self.store, replace(self.criteria, latest=False))
        count = total = 0
        for archive in every:
            if not archive.latest:
                count, total = count + 1, total + archive.size
        return count, total

    def lookup(self, archive_ids: Iterable[str]) -> dict[str, Archive]:
        """Those of these archives that are chosen."""
        found = self.store.lookup(archive_ids)
        return {a.archive_id: a for a in self._chosen(found.values())}
