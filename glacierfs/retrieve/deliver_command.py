"""``glacierfs deliver [-o OPT,...] VAULT (DIR | --exec CMD [ARG...])``: deliver what the
cache already holds, as ``retrieve --follow --deliver-to``/``--deliver-exec`` would, and
nothing else: no job is started, nothing is spent.

Each archive of the vault's newest inventory that the cache holds whole (and verified
against its tree hash) and that is not delivered yet is written under DIR, or given to
the command; the pieces of an archive larger than the cache go into its part file under
DIR. It holds the retrieval state's lock, so it does not run beside a ``retrieve``
that delivers on its own.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from glacierfs.cacheroot import open_root
from glacierfs.client import GlacierClient
from glacierfs.daemon import client_settings
from glacierfs.errors import GlacierfsError, UsageError
from glacierfs.humane import plural
from glacierfs.logs import escape
from glacierfs.options import parse_retrieve_options
from glacierfs.retrieve.cacheview import CacheIndex
from glacierfs.retrieve.command import again, cache_root
from glacierfs.retrieve.delivery import Deliverer
from glacierfs.retrieve.destination import Destination
from glacierfs.retrieve.execsink import ExecSink
from glacierfs.retrieve.follow import Progress
from glacierfs.retrieve.save import open_access
from glacierfs.retrieve.selected import Selected
from glacierfs.retrieve.selection import Criteria
from glacierfs.retrieve.source import load_inventory
from glacierfs.retrieve.state import State


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"deliver: {message} (see glacierfs deliver --help)")


def parse(argv: Sequence[str]) -> argparse.Namespace:
    p = _Parser(
        prog="glacierfs deliver",
        description="Deliver the archives the cache holds (and has not delivered) "
        "to a directory, or to a command per archive; starts no job.",
    )
    p.add_argument("-o", dest="options", action="append", default=[], metavar="OPT[,OPT...]")
    p.add_argument("vault", help="VAULT or ACCOUNTID:VAULT")
    p.add_argument("directory", nargs="?", type=Path, metavar="DIR")
    p.add_argument(
        "--exec",
        dest="command",
        nargs=argparse.REMAINDER,
        metavar="CMD",
        help="CMD [ARG...] per archive, its bytes on stdin (see retrieve --deliver-exec)",
    )
    args = p.parse_args(list(argv))
    if (args.directory is None) == (not args.command):
        raise UsageError("deliver: give a DIR or --exec CMD [ARG...], one of them")
    args.opts = parse_retrieve_options(args.vault, args.options)
    return args


def run(argv: Sequence[str]) -> int:
    args = parse(argv)
    options = args.opts
    root = open_root(cache_root(options))
    client = GlacierClient(client_settings(options))
    try:
        vault = client.describe_vault()
        vault_arn = str(vault.get("VaultARN") or f"{options.account_id}:{options.vault}")
        access = None if options.inventory else open_access(options, root, vault_arn)
        with root, State(root, vault_arn) as state, CacheIndex(root) as index:
            state.lock()
            store, _ = load_inventory(
                options, client, vault_arn, access, state.directory, again(args)
            )
            with store:
                archives = list(Selected(store, Criteria(everything=True)))
            target = Destination(args.directory) if args.directory else ExecSink(args.command)
            progress = Progress()
            deliverer = Deliverer(
                root, options.cache_size, vault_arn, archives, target, progress.event
            )
            try:
                count = deliverer.deliver(index, eager=True)
                failed = deliverer.failing()
            finally:
                deliverer.close()
                progress.close()
    finally:
        client.close()
    print(
        f"delivered {plural(count, 'archive')}"
        + (f"; {len(failed)} not delivered" if failed else "")
    )
    return 1 if failed else 0


def main(argv: Sequence[str]) -> int:
    try:
        return run(argv)
    except GlacierfsError as error:
        print(f"glacierfs deliver: {escape(str(error))}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        return 130
