"""Safe names for untrusted text, and one unique path per file of the archives view.

Archive descriptions are chosen by whoever uploaded the archive: they can hold
``/``, ``..``, control characters, 2,000-byte names or nothing at all. Here they
become path components that are always valid and harmless:

* a component never is empty, ``.`` or ``..``, and never holds ``/`` or NUL;
* the text is NFC-normalised first, so the composed and decomposed forms of one name
  (``é`` as one code point or as ``e`` and a combining accent) are one path, and
  collisions are resolved between names as a reader sees them;
* ``/``, ``\\``, control characters (Unicode category Cc: NUL, newline, tab, DEL, C1),
  format characters (Cf: bidi overrides and isolates such as U+202E, which make
  ``invoice\u202efdp.exe`` look like a PDF; zero-width U+200B, U+FEFF), line and
  paragraph separators (Zl, Zp) and lone surrogates each become ``_`` (visible, and
  the same byte count or fewer);
* a component is cut to :data:`MAX_NAME_BYTES` UTF-8 bytes, keeping a short
  extension (``.jpg``), never splitting a character.

Then :func:`assign_paths` gives every file a path of its own: the oldest claimant
(smallest precedence) keeps the plain name, a directory beats a file of the same
path, and losers get ``stem~TAG8.ext`` from their archive id, so names are stable
and readable. The result depends only on the set of claimants, not on their order.
"""

from __future__ import annotations

import functools
import itertools
import operator
import re
import unicodedata
from collections.abc import Container, Iterable, Iterator
from dataclasses import dataclass

MAX_NAME_BYTES = 255
"""NAME_MAX of Linux filesystems: the kernel refuses longer components."""

MAX_DEPTH = 64
"""Deeper paths keep their first 63 directories and their file name (PATH_MAX is 4 KiB)."""

MAX_EXTENSION_BYTES = 40
"""An extension up to this long survives cutting a long name: ``.jpg``, and the
``.range-START-END`` label the tree adds to partial retrievals (32 bytes at 1 TB)."""

REPLACEMENT = "_"

Path = tuple[str, ...]

_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f/\\\\\ud800-\udfff]")
_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
"""Characters that are invisible, reorder what is shown, or end lines: see above."""


def _visible(text: str) -> str:
    """``text`` with each character of :data:`_UNSAFE_CATEGORIES` as ``_``."""
    if text.isascii():
        return text
    category = unicodedata.category
    return "".join(REPLACEMENT if category(c) in _UNSAFE_CATEGORIES else c for c in text)


def _cut(name: str, limit: int) -> str:
    """``name`` cut to ``limit`` UTF-8 bytes at a character boundary."""
    if len(name) * 4 <= limit:
        return name
    data = name.encode("utf-8")
    if len(data) <= limit:
        return name
    return data[:limit].decode("utf-8", "ignore")


def _split_extension(name: str) -> tuple[str, str]:
    """(stem, extension) where the extension is short and the stem is not empty."""
    dot = name.rfind(".")
    if dot <= 0 or len(name[dot:].encode("utf-8")) > MAX_EXTENSION_BYTES:
        return name, ""
    return name[:dot], name[dot:]


def _fit(stem: str, suffix: str, extension: str) -> str:
    """``stem + suffix + extension``, the stem cut so that the whole fits a name."""
    if (len(stem) + len(suffix) + len(extension)) * 4 <= MAX_NAME_BYTES:
        return stem + suffix + extension
    room = MAX_NAME_BYTES - len(suffix.encode("utf-8")) - len(extension.encode("utf-8"))
    return _cut(stem, room) + suffix + extension


def safe_name(text: str, default: str) -> str:
    """One harmless path component from untrusted ``text`` (``default`` when none is left)."""
    name = _visible(_UNSAFE.sub(REPLACEMENT, unicodedata.normalize("NFC", text)))
    if len(name) * 4 > MAX_NAME_BYTES and len(name.encode("utf-8")) > MAX_NAME_BYTES:
        stem, extension = _split_extension(name)
        name = _fit(stem, "", extension) if extension else _cut(name, MAX_NAME_BYTES)
    if name in ("", ".", ".."):
        return safe_name(default, REPLACEMENT)
    return name


def safe_components(path: str) -> tuple[str, ...]:
    """The safe relative components of an untrusted path; ``()`` when none is left.

    ``/`` and ``\\`` both separate; empty, ``.`` and ``..`` components are dropped
    (never resolved: ``a/../b`` is ``a/b``), so an absolute path becomes relative.
    """
    parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".", "..")]
    if len(parts) > MAX_DEPTH:
        parts = [*parts[: MAX_DEPTH - 1], parts[-1]]
    return tuple(_safe_part(part) for part in parts)


@functools.lru_cache(maxsize=1 << 14)
def _safe_part(part: str) -> str:
    """A component made safe, remembered: directories repeat across millions of paths."""
    return safe_name(part, REPLACEMENT)


@dataclass(frozen=True)
class Wanted:
    """A file that wants to live at ``components`` (safe components from the root).

    ``key`` names it in the result (a job id); the smallest ``precedence`` among
    claimants of one path keeps the plain name; ``tag`` (an archive id) makes the
    suffix of the others.
    """

    key: str
    components: tuple[str, ...]
    precedence: tuple[str, ...]
    tag: str


claim_order = operator.attrgetter("precedence", "tag", "key", "components")
"""The order of claimants of one path: the first keeps the plain name."""
_order = claim_order


class _Safe:
    """Paths made of safe components; components known safe are checked once each."""

    def __init__(self) -> None:
        self._known: set[str] = set()

    def path(self, w: Wanted) -> tuple[str, ...]:
        if w.components and self._known.issuperset(w.components):
            return w.components
        parts = w.components or (w.tag or w.key,)
        known = self._known
        safe = tuple(part if part in known else safe_name(part, REPLACEMENT) for part in parts)
        known.update(part for part, made in zip(parts, safe, strict=True) if part == made)
        return safe


def _suffixes(tag: str, key: str) -> Iterator[str]:
    """Suffixes for a loser, most readable first; endless and all distinct."""
    tag = _TAG_UNSAFE.sub("", tag) or _TAG_UNSAFE.sub("", key) or "x"
    short = tag[:8]
    yield f"~{short}"
    key = _TAG_UNSAFE.sub("", key) or "x"
    more = [f"~{tag[:16]}", f"~{short}-{key[:8]}", f"~{short}-{key[:24]}"]
    yield from dict.fromkeys(s for s in more if s != f"~{short}")
    yield from (f"~{short}-{count}" for count in itertools.count(2))


def suffixed_names(name: str, tag: str, key: str) -> Iterator[str]:
    """``name`` with the suffixes a loser of a contested path gets (``photo~3f2a9c1b.jpg``),
    most readable first, endless: for a file that must not take an existing one's place."""
    stem, extension = _split_extension(name)
    for suffix in _suffixes(tag, key):
        yield _fit(stem, suffix, extension)


def suffixed(
    path: Path, claimants: list[Wanted], taken: Container[Path]
) -> Iterator[tuple[str, Path]]:
    """(key, path with the first suffix that makes it free) for each loser of ``path``,
    in the order given (the caller adds each path given to ``taken`` before the next)."""
    stem, extension = _split_extension(path[-1])
    for w in claimants:
        for suffix in _suffixes(w.tag, w.key):
            new = (*path[:-1], _fit(stem, suffix, extension))
            if new not in taken:
                yield w.key, new  # the caller takes it before asking for the next
                break


class _Taken:
    """Paths no loser may take: files and directories claimed, and suffixed paths given."""

    def __init__(self, first: dict[Path, Wanted], directories: set[Path]) -> None:
        self.first, self.directories = first, directories
        self.given: set[Path] = set()

    def __contains__(self, path: object) -> bool:
        return path in self.first or path in self.directories or path in self.given


def _one_claim_per_key(wanted: Iterable[Wanted]) -> dict[str, Wanted]:
    chosen: dict[str, Wanted] = {}
    for w in wanted:
        kept = chosen.setdefault(w.key, w)
        if kept is not w and _order(w) < _order(kept):
            chosen[w.key] = w
    return chosen


def _directories(paths: Iterable[Path]) -> set[Path]:
    """Every proper prefix of the paths (but the root)."""
    directories: set[Path] = set()
    for path in paths:
        parent = path[:-1]
        while parent and parent not in directories:  # a known one's parents are known
            directories.add(parent)
            parent = parent[:-1]
    return directories


def assign_paths(wanted: Iterable[Wanted]) -> dict[str, Path]:
    """A unique file path for every key: no two equal, none a directory of another.

    Directories are every proper prefix of a wanted path and never move; only the
    last component of a file changes, so a file that loses keeps its directory.
    Linear in the number of claimants, but for sorting the paths that have losers.
    """
    safe = _Safe()
    first: dict[Path, Wanted] = {}
    rivals: dict[Path, list[Wanted]] = {}
    for w in _one_claim_per_key(wanted).values():
        path = safe.path(w)
        kept = first.setdefault(path, w)
        if kept is not w:
            rivals.setdefault(path, [kept]).append(w)
    directories = _directories(first)
    losers: dict[Path, list[Wanted]] = {}
    for path, claimants in rivals.items():
        claimants.sort(key=_order)
        first[path] = claimants[0]
        losers[path] = claimants[1:]
    result: dict[str, Path] = {}
    for path, w in first.items():
        if path in directories:
            losers.setdefault(path, []).insert(0, w)
        else:
            result[w.key] = path
    taken = _Taken(first, directories)
    for path in sorted(losers):
        for key, new in suffixed(path, losers[path], taken):
            taken.given.add(new)
            result[key] = new
    return result
