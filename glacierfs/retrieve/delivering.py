"""``retrieve``'s delivery on the command line: ``--deliver-to DIR`` and ``--deliver-exec
CMD [ARG...]``, their checks, and the run's :class:`.delivery.Deliverer`."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path

from glacierfs.cacheroot import Held
from glacierfs.errors import UsageError
from glacierfs.humane import size
from glacierfs.retrieve.delivery import Deliverer
from glacierfs.retrieve.destination import Destination
from glacierfs.retrieve.execsink import ExecSink
from glacierfs.retrieve.follow import Progress
from glacierfs.retrieve.selection import Archive
from glacierfs.treehash import MIB


def delivery_arguments(out: argparse._ArgumentGroup) -> None:
    out.add_argument(
        "--deliver-to",
        type=Path,
        metavar="DIR",
        help="write each archive, once saved and verified, under DIR at its archives/ path",
    )
    out.add_argument(
        "--deliver-exec",
        nargs=argparse.REMAINDER,
        metavar="CMD",
        help="run CMD [ARG...] per archive, its bytes on stdin, its path in $GLACIERFS_PATH "
        "and in place of {} (no shell; must come last)",
    )


def check_delivery(args: argparse.Namespace) -> None:
    """UsageError for delivery options that do not go together."""
    if args.deliver_exec is not None and not args.deliver_exec:
        raise UsageError("--deliver-exec needs a command: --deliver-exec CMD [ARG...]")
    if args.deliver_to is not None and args.deliver_exec is not None:
        raise UsageError("deliver to a directory or to a command, not both")
    if (args.deliver_to or args.deliver_exec) and not (args.follow or args.dry_run):
        raise UsageError("--deliver-to and --deliver-exec deliver as outputs come: add --follow")


def refuse_too_large(
    args: argparse.Namespace, archives: Iterable[Archive], cache_size: int
) -> None:
    """--deliver-exec stages each archive whole in the cache: refuse, before anything is
    requested, an archive the cache cannot hold."""
    if args.deliver_exec is None:
        return
    largest = max(archives, key=lambda a: a.size, default=None)
    if largest is not None and largest.size > cache_size:
        raise UsageError(
            f"--deliver-exec stages each archive whole in the cache, and {largest.path} is "
            f"{size(largest.size)}: it needs -o cache_size={-(-largest.size // MIB)}M at least "
            f"(now {size(cache_size)}), or --deliver-to DIR, which takes it piece by piece"
        )


def delivery(
    args: argparse.Namespace,
    root: Held,
    cache_size: int,
    vault_arn: str,
    archives: Iterable[Archive],
    progress: Progress,
) -> Deliverer | None:
    """The run's deliverer, if it delivers."""
    target: Destination | ExecSink
    if args.deliver_to is not None:
        target = Destination(args.deliver_to)
    elif args.deliver_exec:
        target = ExecSink(args.deliver_exec)
    else:
        return None
    return Deliverer(root, cache_size, vault_arn, archives, target, progress.event)
