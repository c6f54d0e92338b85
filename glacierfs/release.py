"""``glacierfs release PATH|GLOB...``: mark archives as delivered by hand.

For a user who copied archives out of the mount themselves (rsync, ``cp``): once
released, an archive's cached bytes are *delivered* (:mod:`glacierfs.custody`) and go
first when the cache needs room, instead of staying in custody for ever.

PATHs are archive files under a mount's ``archives/`` (a directory stands for every
file under it; a quoted GLOB is expanded here, ``**`` too). Each file's archive, tree
hash and size come from its xattrs, and the cache and vault from the mount's figures;
the release is written to the delivery record beside that cache
(:mod:`glacierfs.retrieve.delivered`), and the mount is told (SIGHUP) to look again. One
line per archive; a path that is not an archive file is one line on stderr, the others
are still released, and the exit code is 1.
"""

from __future__ import annotations

import argparse
import glob
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path

from glacierfs.control import mount_stats
from glacierfs.errors import ConfigError, GlacierfsError, UsageError
from glacierfs.humane import short_size, utc
from glacierfs.logs import escape
from glacierfs.retrieve.delivered import RELEASED, DeliveryRecord

STATS_XATTR = "user.glacierfs.stats"
_GLOB = frozenset("*?[")


@dataclass(frozen=True)
class ArchiveFile:
    """An archive file of a mount, as its xattrs describe it."""

    path: Path
    shown: str  # its path under the mount
    archive_id: str
    tree_hash: str
    size: int
    cache_dir: Path
    vault: str
    pid: int


def _xattr(path: Path, name: str) -> str:
    try:
        return os.getxattr(path, name).decode()
    except OSError:
        return ""


def expand(arguments: Sequence[str]) -> Iterator[Path | str]:
    """Each file named, under each directory named, or matched by each glob; an argument
    that names nothing comes back as itself (a string), for its one-line error."""
    for text in arguments:
        path = Path(text)
        if not path.exists() and _GLOB & set(text):
            matched = sorted(glob.glob(text, recursive=True))
            yield from (Path(m) for m in matched if not Path(m).is_dir()) if matched else [text]
        elif path.is_dir():
            yield from (p for p in sorted(path.rglob("*")) if p.is_file())
        elif path.exists():
            yield path
        else:
            yield text


def _mount_root(path: Path) -> Path | None:
    for parent in [path.parent, *path.parent.parents]:
        if _xattr(parent, STATS_XATTR):
            return parent
    return None


def describe(path: Path, figures: dict[Path, dict[str, object]]) -> ArchiveFile:
    """The archive file at ``path``; UsageError in one line when it is not one."""
    path = Path(os.path.abspath(path))
    root = _mount_root(path)
    if root is None:
        raise UsageError(f"{path}: not a file of a glacierfs mount")
    if root not in figures:
        figures[root] = mount_stats(root)
    stats = figures[root]
    archive_id, tree_hash = (
        _xattr(path, "user.glacier.archive_id"),
        _xattr(path, "user.glacier.tree_hash"),
    )
    if not _xattr(path, "user.glacier.jobs") or not archive_id or not tree_hash:
        raise UsageError(f"{path}: not an archive file (release the files under archives/)")
    cache_dir, vault, pid = stats.get("cache_dir"), stats.get("vault"), stats.get("pid")
    if not isinstance(cache_dir, str) or not isinstance(vault, str) or not isinstance(pid, int):
        raise ConfigError(f"{root}: the mount does not say where its cache is (an older glacierfs)")
    shown = str(path.relative_to(root))
    return ArchiveFile(
        path, shown, archive_id, tree_hash, path.stat().st_size, Path(cache_dir), vault, pid
    )


def release(arguments: Sequence[str], out: object = sys.stdout, err: object = sys.stderr) -> int:
    figures: dict[Path, dict[str, object]] = {}
    records: dict[Path, DeliveryRecord] = {}
    failed = False
    with ExitStack() as stack:
        for found in expand(arguments):
            try:
                if isinstance(found, str):
                    raise UsageError(f"{found}: no such file or directory")
                archive = describe(found, figures)
                if archive.cache_dir not in records:
                    records[archive.cache_dir] = stack.enter_context(
                        DeliveryRecord.open(archive.cache_dir)
                    )
                line = _one(records[archive.cache_dir], archive)
            except (GlacierfsError, OSError) as error:
                failed = True
                print(f"glacierfs release: {escape(str(error))}", file=err)  # type: ignore[call-overload]
                continue
            print(line, file=out)  # type: ignore[call-overload]
    for stats in figures.values():  # each mount looks at the record again now
        pid = stats.get("pid")
        if isinstance(pid, int):
            with suppress(OSError):
                os.kill(pid, signal.SIGHUP)
    return 1 if failed else 0


def _one(record: DeliveryRecord, archive: ArchiveFile) -> str:
    shown = escape(archive.shown)
    if record.record(
        archive.vault, archive.archive_id, archive.tree_hash, archive.size, RELEASED, archive.shown
    ):
        return f"released {shown} ({short_size(archive.size)})"
    before = record.delivery(archive.vault, archive.archive_id)
    how = f"{before.how} {escape(before.target)}, {utc(before.at)}" if before else "?"
    return f"already delivered: {shown} ({how})"


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="glacierfs release",
        description="Mark archives as delivered (copied out by hand): their cached bytes "
        "may then be evicted first.",
    )
    parser.add_argument(
        "paths", nargs="+", metavar="PATH|GLOB", help="archive files under a mount's archives/"
    )
    args = parser.parse_args(argv)
    return release(args.paths)
