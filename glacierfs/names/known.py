"""The versions of each path that a mount knows, and the names they give. Pure code.

A mount names only the archives it has jobs of, but the name an archive gets depends on
every archive that claims the same path (:mod:`glacierfs.names.versions`). Two sources:

* the archives with jobs whose descriptions are known (:meth:`KnownVersions.claim`);
* the inventory (:meth:`KnownVersions.add_scan`): for each path an archive with jobs
  claims, every archive of the vault that claims it too, retrieved or not, with its
  CreationDate. A path scanned in an inventory is *settled*: its names do not move when
  more jobs complete, and a name remembered from an earlier mount gives way to them.

Without an inventory (or for a path claimed after the inventory was taken) the names come
from the archives with jobs alone, dated by the uploader's mtime where the description
gives one: a newer version whose job completes later takes the plain name at the next
mount (a path shown stays while mounted), and versions with no date are named by their
ArchiveId as before.
"""

from __future__ import annotations

from glacierfs.names.versions import Path, Version, versioned

Group = dict[str, Version]
_EMPTY: Group = {}


class KnownVersions:
    """Changed on the trio thread; :meth:`name` and :meth:`settled` may be asked from the
    thread that builds the tree meanwhile. So a path's group of versions is never changed
    in place, only replaced (copy on write), and a name computed is kept with the groups
    it was computed from, used only while they are still the path's."""

    def __init__(self) -> None:
        self._claims: dict[Path, Group] = {}  # archives with jobs
        self._scanned: dict[Path, Group] = {}  # from the inventory
        self._names: dict[Path, tuple[Group, Group, dict[str, Path]]] = {}  # computed

    def claim(self, version: Version) -> None:
        """An archive with jobs whose description is known."""
        group = self._claims.get(version.components, _EMPTY)
        if group.get(version.key) != version:
            self._claims[version.components] = {**group, version.key: version}

    def unscanned(self) -> set[Path]:
        """Paths claimed by archives with jobs that no inventory scan looked for."""
        return {path for path in self._claims if path and path not in self._scanned}

    def add_scan(self, paths: set[Path], found: dict[Path, list[Version]]) -> None:
        """What an inventory holds of ``paths`` (a path it lacks holds no version)."""
        for path in paths:
            self._scanned[path] = {v.key: v for v in found.get(path, ())}

    def saved(self) -> list[object]:
        """What the scans found, for the cache's metadata: ``[[path...], [[id, mtime,
        created], ...]]`` per path looked for."""
        return [
            [list(path), [[v.key, v.mtime, v.created] for v in group.values()]]
            for path, group in self._scanned.items()
        ]

    def load(self, saved: object) -> None:
        """:meth:`saved` read back; anything malformed is left out (looked for again)."""
        for item in saved if isinstance(saved, list) else ():
            try:
                raw, versions = item
                path = tuple(str(part) for part in raw)
                found = [
                    Version(str(key), path, _number(mtime), _number(created))
                    for key, mtime, created in versions
                ]
            except (TypeError, ValueError):
                continue
            self.add_scan({path}, {path: found})

    def reset_scan(self) -> None:
        """Forget what an older inventory said (a newer one is read)."""
        self._scanned = {}
        self._names = {}

    def settled(self, components: Path) -> bool:
        return components in self._scanned

    def name(self, key: str, components: Path) -> Path:
        """The components the archive ``key`` claims among the versions of its path."""
        if not components:
            return components
        claims = self._claims.get(components, _EMPTY)
        scanned = self._scanned.get(components, _EMPTY)
        kept = self._names.get(components)
        if kept is not None and kept[0] is claims and kept[1] is scanned:
            return kept[2].get(key, components)
        names = versioned({**claims, **scanned}.values())
        self._names[components] = (claims, scanned, names)
        return names.get(key, components)


def _number(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise TypeError("not a number")
