"""Which archives a run is about: the inventory's archives, named as the mount names
them, filtered by the user's patterns, sizes, dates and shard. Pure code.

Names are the paths the mount shows under ``archives/``: the description decoded by
:func:`glacierfs.names.decoders.decode_description`, made safe by
:func:`glacierfs.names.safe.safe_components`, named by version among the archives that
claim the same path
(:func:`glacierfs.names.versions.versioned`: the newest keeps the plain name, older ones
are ``NAME~YYYYMMDDTHHMMSSZ.EXT``), and made unique among all the inventory's archives by
:func:`glacierfs.names.safe.assign_paths` (the oldest archive keeps a name still
contested). An archive whose description gives no file name is named by its ArchiveId.
``--latest`` (:attr:`Criteria.latest`) selects only the newest version of each path.

Patterns are shell globs over those paths: ``*`` and ``?`` stay within one directory,
``**`` crosses directories (``a/**/b`` also matches ``a/b``), ``[...]`` is a class;
a pattern that names a directory selects everything under it.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from glacierfs.inventory import Entry
from glacierfs.jobs import MAX_SIZE
from glacierfs.logs import escape
from glacierfs.names.safe import Wanted, assign_paths, safe_name
from glacierfs.names.versions import entry_version, latest_keys, versioned

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Archive:
    """One archive of the inventory, with the path the mount shows it under."""

    archive_id: str
    size: int
    tree_hash: str
    created: float  # POSIX time of its CreationDate
    description: str
    path: str  # relative to archives/
    latest: bool = True  # the newest version of its path (see the module)

    @property
    def leaves(self) -> int:
        return -(-self.size // (1 << 20))


def parse_date(text: str) -> float:
    """ISO 8601 (``2019-07-04``, ``2019-07-04T12:00:00Z``) as POSIX time, UTC by default."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"not a date: {text!r} (e.g. 2019-07-04 or 2019-07-04T12:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _created(entry: Entry) -> float:
    try:
        return parse_date(entry.creation_date)
    except ValueError:
        return 0.0


def refusal(entry: Entry) -> str | None:
    """Why an inventory entry is not an archive the service can hold; None if it is."""
    if not 0 <= entry.size <= MAX_SIZE:
        shown = escape(entry.archive_id[:200])
        return f"inventory entry {shown}: Size {entry.size} is not an archive's (0 to 40 TiB)"
    return None


def plausible(entries: Iterable[Entry]) -> Iterator[Entry]:
    """The entries, less each one that :func:`refusal` refuses (one warning line each)."""
    for entry in entries:
        why = refusal(entry)
        if why is None:
            yield entry
        else:
            log.warning("%s: left out", why)


def name_archives(entries: Iterable[Entry]) -> list[Archive]:
    """The inventory's archives with their unique friendly paths, in path order (an
    entry no archive can be is left out: :func:`plausible`)."""
    chosen: dict[str, Entry] = {}
    for entry in plausible(entries):
        chosen.setdefault(entry.archive_id, entry)  # an inventory lists each archive once
    versions = [entry_version(e) for e in chosen.values()]
    claims, latest = versioned(versions), latest_keys(versions)
    wanted = [
        Wanted(
            e.archive_id,
            claims[e.archive_id] or (safe_name(e.archive_id, "archive"),),
            (f"{_created(e):020.3f}", e.archive_id),
            e.archive_id,
        )
        for e in chosen.values()
    ]
    paths = assign_paths(wanted)
    archives = [
        Archive(
            e.archive_id,
            e.size,
            e.tree_hash.lower(),
            _created(e),
            e.description,
            "/".join(paths[e.archive_id]),
            e.archive_id in latest,
        )
        for e in chosen.values()
    ]
    return sorted(archives, key=lambda a: (a.path, a.archive_id))


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A shell glob over ``/``-separated paths (see the module) as a regular expression."""
    out, i = [], 0
    pattern = pattern.strip("/")
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and (close := _class_end(pattern, i)) > 0:
            body = pattern[i + 1 : close]
            negate = body[:1] in ("!", "^")
            body = body[1:] if negate else body
            escaped = body.replace("\\", "\\\\").replace("[", "\\[")
            out.append(f"[{'^' if negate else ''}{escaped}]")
            i = close + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + "(?:/.*)?", re.DOTALL)


def _class_end(pattern: str, start: int) -> int:
    """The index of the ``]`` closing the class opened at ``start``, or -1."""
    i = start + 1
    if i < len(pattern) and pattern[i] in "!^":
        i += 1
    if i < len(pattern) and pattern[i] == "]":
        i += 1
    close = pattern.find("]", i)
    return close if close > 0 and "/" not in pattern[start:close] else -1


def shard_of(archive_id: str, count: int) -> int:
    """The shard (0..count-1) an archive belongs to: stable across hosts and runs."""
    digest = hashlib.sha256(archive_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") % count


@dataclass(frozen=True)
class Criteria:
    """What the user asked for; an archive is selected when it passes every test given."""

    patterns: Sequence[str] = ()
    archive_ids: Sequence[str] = ()
    everything: bool = False
    min_size: int | None = None
    max_size: int | None = None
    created_after: float | None = None
    created_before: float | None = None
    shard: tuple[int, int] | None = None  # (K, N)
    latest: bool = False  # only the newest version of each path

    def chooses(self, archive: Archive, matchers: Sequence[re.Pattern[str]]) -> bool:
        named = self.everything or archive.archive_id in self.archive_ids
        if not named and not any(m.fullmatch(archive.path) for m in matchers):
            return False
        if self.min_size is not None and archive.size < self.min_size:
            return False
        if self.max_size is not None and archive.size > self.max_size:
            return False
        if self.created_after is not None and archive.created < self.created_after:
            return False
        if self.created_before is not None and archive.created >= self.created_before:
            return False
        if self.latest and not archive.latest:
            return False
        return self.shard is None or shard_of(archive.archive_id, self.shard[1]) == self.shard[0]


def select(archives: Iterable[Archive], criteria: Criteria) -> list[Archive]:
    """The archives ``criteria`` choose, in the order given."""
    matchers = [glob_regex(p) for p in criteria.patterns]
    return [a for a in archives if criteria.chooses(a, matchers)]


def older_versions(archives: Iterable[Archive], criteria: Criteria) -> list[Archive]:
    """The archives ``criteria`` would choose but for ``latest``: what it leaves out."""
    if not criteria.latest:
        return []
    every = replace(criteria, latest=False)
    matchers = [glob_regex(p) for p in criteria.patterns]
    return [a for a in archives if not a.latest and every.chooses(a, matchers)]
