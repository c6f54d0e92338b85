"""Versions: many archives that claim the same path. Pure code.

Backup tools upload a file again each time it changes, so a vault holds many archives
whose descriptions name the same path. The newest version keeps the plain name; each
older one is named by its date, ``NAME~YYYYMMDDTHHMMSSZ.EXT`` (UTC), with a tag of its
ArchiveId added only where two versions of the path have the same date (to the second).

A version's date is the uploader's mtime from its description, else the archive's
CreationDate. The newest is the latest date, then the latest CreationDate, then the
greatest ArchiveId; a version whose date is not known at all (no mtime, no inventory
entry) is older than every dated one and keeps the ``~TAG`` name of an ArchiveId.

The result depends only on the set of versions given, never on their order, so the
mount and ``retrieve``, given the same versions (every archive of the inventory that
claims the path), give the same names whichever jobs exist. With fewer versions known
(no inventory: only archives with jobs) the names are the best those allow, and the
plain name moves to a newer version when one becomes known.

Both the mount (:mod:`glacierfs.names.sources`) and ``retrieve``
(:mod:`glacierfs.retrieve.selection`) call :func:`versioned`; a dated name that happens
to collide with another file is then made unique by :func:`glacierfs.names.safe.assign_paths`
like any other.
"""

from __future__ import annotations

import re
from collections.abc import Container, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from glacierfs.inventory import Entry
from glacierfs.names.decoders import decode_description
from glacierfs.names.safe import _fit, _split_extension, safe_components

Path = tuple[str, ...]

_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True, slots=True)
class Version:
    """One archive claiming ``components`` (safe components under ``archives/``)."""

    key: str  # the ArchiveId
    components: Path
    mtime: float | None = None  # the uploader's, from the description
    created: float | None = None  # the archive's CreationDate, from the inventory

    @property
    def when(self) -> float | None:
        """The version's date: the uploader's mtime, else the CreationDate."""
        return self.mtime if self.mtime is not None else self.created

    def rank(self) -> tuple[bool, float, float, str]:
        """Greater is newer (see the module's docstring)."""
        when = self.when
        return (when is not None, when or 0.0, self.created or 0.0, self.key)


def stamp(when: float | None) -> str | None:
    """``YYYYMMDDTHHMMSSZ`` in UTC, or None when there is no date (or it is absurd)."""
    if when is None:
        return None
    try:
        return datetime.fromtimestamp(when, UTC).strftime("%Y%m%dT%H%M%SZ")
    except (OverflowError, OSError, ValueError):
        return None


def _tag(key: str) -> str:
    return (_TAG_UNSAFE.sub("", key) or "x")[:8]


def older_name(name: str, suffix: str) -> str:
    """``name`` with ``~suffix`` before its extension, cut to fit a file name."""
    stem, extension = _split_extension(name)
    return _fit(stem, f"~{suffix}", extension)


def newest(versions: Iterable[Version]) -> Version:
    """The version that keeps the plain name."""
    return max(versions, key=Version.rank)


def _names(group: list[Version]) -> dict[str, Path]:
    """Key -> components for the versions of one path."""
    latest = newest(group)
    stamps = {v.key: stamp(v.when) for v in group}
    counts: dict[str | None, int] = {}
    for value in stamps.values():
        counts[value] = counts.get(value, 0) + 1
    names = {latest.key: latest.components}
    for version in group:
        if version is latest:
            continue
        when = stamps[version.key]
        if when is None:
            suffix = _tag(version.key)
        else:
            suffix = when if counts[when] == 1 else f"{when}-{_tag(version.key)}"
        *parents, last = version.components
        names[version.key] = (*parents, older_name(last, suffix))
    return names


def versioned(versions: Iterable[Version]) -> dict[str, Path]:
    """Key -> the components each version claims: the plain path for the newest of each
    path, a dated one for the others. A path with one version keeps it; a version with
    no components (no file name) is left as it is."""
    groups: dict[Path, dict[str, Version]] = {}
    for version in versions:
        groups.setdefault(version.components, {})[version.key] = version
    result: dict[str, Path] = {}
    for components, group in groups.items():
        if len(group) == 1 or not components:
            result.update((key, components) for key in group)
        else:
            result.update(_names(sorted(group.values(), key=Version.rank)))
    return result


def latest_keys(versions: Iterable[Version]) -> set[str]:
    """The keys of the newest version of each path (and of every version with no path)."""
    groups: dict[Path, list[Version]] = {}
    keys: set[str] = set()
    for version in versions:
        if version.components:
            groups.setdefault(version.components, []).append(version)
        else:
            keys.add(version.key)
    return keys | {newest(group).key for group in groups.values()}


def creation_date(text: str) -> float | None:
    """An inventory's CreationDate as POSIX time (UTC unless it says), None if it is not one."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def described(key: str, description: str, created: float | None = None) -> Version:
    """An archive as a version of the path its description gives (``()``: no file name),
    decoded and made safe as everywhere else."""
    decoded = decode_description(description)
    if decoded.path is None or decoded.is_directory:
        return Version(key, (), decoded.mtime, created)
    return Version(key, safe_components(decoded.path), decoded.mtime, created)


def entry_version(entry: Entry) -> Version:
    """An inventory entry as a version: what the mount and ``retrieve`` both name by."""
    return described(entry.archive_id, entry.description, creation_date(entry.creation_date))


def versions_of(entries: Iterable[Entry], paths: Container[Path]) -> dict[Path, list[Version]]:
    """Every version the entries hold of each of ``paths`` (streamed: memory follows
    the versions found, not the entries)."""
    found: dict[Path, list[Version]] = {}
    for entry in entries:
        version = entry_version(entry)
        if version.components and version.components in paths:
            found.setdefault(version.components, []).append(version)
    return found
