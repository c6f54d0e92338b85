"""``glacierfs retrieve [-o OPT,...] VAULT [PATTERN...]``: the command line.

Only this command spends money, and never before it has printed its plan: ``--dry-run``
stops there, and without ``--yes`` it asks on a terminal and refuses elsewhere. Every
error it expects is one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import NoReturn

from glacierfs import logs
from glacierfs.cacheroot import Held, open_root
from glacierfs.client import GlacierClient
from glacierfs.config import (
    DAILY_SHARE,
    DEFAULT_DOWNLOAD_RATE,
    DEFAULT_TIER,
    FOLLOW_POLL,
    HEARTBEAT,
    Options,
    default_cache_dir,
)
from glacierfs.daemon import client_settings
from glacierfs.errors import GlacierfsError, UsageError
from glacierfs.humane import plural, size
from glacierfs.logs import escape
from glacierfs.options import parse_retrieve_options, parse_size
from glacierfs.retrieve.cacheview import CacheIndex
from glacierfs.retrieve.delivering import (
    check_delivery,
    delivery,
    delivery_arguments,
    refuse_too_large,
)
from glacierfs.retrieve.delivery import Deliverer
from glacierfs.retrieve.engine import Engine, Event
from glacierfs.retrieve.follow import RATE_FACT, Follower, Progress, render_summary
from glacierfs.retrieve.pacing import DAY, MIB, Limits
from glacierfs.retrieve.plan import Plan, plan_document, render_plan
from glacierfs.retrieve.policy import RetrievalPolicy
from glacierfs.retrieve.pricing import TIERS, price
from glacierfs.retrieve.save import open_access
from glacierfs.retrieve.selected import Selected
from glacierfs.retrieve.selection import Criteria, parse_date
from glacierfs.retrieve.source import load_inventory, start_inventory
from glacierfs.retrieve.state import State

SHARD_ENV = "JOB_COMPLETION_INDEX"
"""Where ``--shard env/N`` takes K from: what a Kubernetes Indexed Job sets in each pod."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see glacierfs retrieve --help)")


def _size_arg(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size (e.g. 512M, 100G): {text!r}") from None


def _date_arg(text: str) -> float:
    try:
        return parse_date(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def parse_shard(text: str, env: dict[str, str] | os._Environ[str]) -> tuple[int, int]:
    """``K/N``, or ``env/N`` with K from ``$JOB_COMPLETION_INDEX``."""
    first, sep, count = text.partition("/")
    if first == "env":
        first = env.get(SHARD_ENV, "")
        if not first:
            raise UsageError(f"--shard env/N: ${SHARD_ENV} is not set")
    if not sep or not first.isdigit() or not count.isdigit() or not int(first) < int(count):
        raise UsageError(f"--shard is K/N with 0 <= K < N (or env/N), not {text!r}")
    return int(first), int(count)


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="glacierfs retrieve",
        description="Plan, start and pace the retrieval of a vault's archives, "
        "and (with --follow) save every output into the cache until all are there.",
    )
    p.add_argument(
        "-o",
        dest="options",
        action="append",
        default=[],
        metavar="OPT[,OPT...]",
        help="the mount's options: region, profile, endpoint_url, cache_dir, inventory=FILE...",
    )
    p.add_argument("vault", help="VAULT or ACCOUNTID:VAULT")
    p.add_argument("patterns", nargs="*", metavar="PATTERN", help="globs over archives/ paths")
    _selection_arguments(p.add_argument_group("selection"))
    _retrieval_arguments(p.add_argument_group("retrieval"))
    _running_arguments(p.add_argument_group("running"))
    delivery_arguments(p.add_argument_group("delivery (with --follow)"))
    return p


def _selection_arguments(pick: argparse._ArgumentGroup) -> None:
    pick.add_argument("--all", action="store_true", help="every archive of the inventory")
    pick.add_argument("--archive-id", action="append", default=[], metavar="ID")
    pick.add_argument("--min-size", type=_size_arg, metavar="SIZE")
    pick.add_argument("--max-size", type=_size_arg, metavar="SIZE")
    pick.add_argument("--created-after", type=_date_arg, metavar="DATE")
    pick.add_argument("--created-before", type=_date_arg, metavar="DATE")
    pick.add_argument("--shard", metavar="K/N", help=f"a 1/N; env/N takes K from ${SHARD_ENV}")
    pick.add_argument("--latest", action="store_true", help="only the newest version of each path")


def _retrieval_arguments(how: argparse._ArgumentGroup) -> None:
    how.add_argument(
        "--tier", choices=TIERS, default=DEFAULT_TIER, help=f"(default: {DEFAULT_TIER})"
    )
    how.add_argument(
        "--max-bytes-per-day",
        type=_size_arg,
        metavar="SIZE",
        help="requested in any 24 hours (default: what half a day of saving takes, at the "
        "rate measured, else an assumed 10 MiB/s)",
    )
    how.add_argument(
        "--max-jobs", type=int, metavar="N", help="jobs with output not yet saved (default: no cap)"
    )
    how.add_argument("--download-rate", type=_size_arg, metavar="SIZE", help="bytes/s saved")
    how.add_argument("--price-per-gb", type=float, metavar="USD")
    how.add_argument("--price-per-1000", type=float, metavar="USD", help="per 1,000 jobs")
    how.add_argument(
        "--in-region",
        action="store_true",
        help="this host is in the vault's region (EC2 there): no transfer-out charge",
    )


def _running_arguments(run: argparse._ArgumentGroup) -> None:
    run.add_argument("--dry-run", action="store_true", help="print the plan, start nothing")
    run.add_argument("--yes", action="store_true", help="start without asking")
    run.add_argument("--json", action="store_true", help="print the plan as JSON")
    run.add_argument("--follow", action="store_true", help="save and request until all saved")
    run.add_argument(
        "--poll",
        type=float,
        default=FOLLOW_POLL,
        metavar="SECONDS",
        help=f"how often --follow looks at the service (default: {FOLLOW_POLL:g})",
    )
    run.add_argument(
        "--heartbeat",
        type=float,
        default=HEARTBEAT,
        metavar="SECONDS",
        help=f"with --follow, not on a terminal: a status line at least this often "
        f"(default: {HEARTBEAT:g})",
    )
    run.add_argument("--inventory", action="store_true", help="start an inventory job")
    run.add_argument(
        "--request-evicted",
        action="store_true",
        help="request again archives saved once and since evicted from the cache",
    )


def parse(
    argv: Sequence[str], env: dict[str, str] | os._Environ[str] = os.environ
) -> argparse.Namespace:
    """The command line, checked; UsageError for anything wrong."""
    args = parser().parse_args(list(argv))
    args.shard = parse_shard(args.shard, env) if args.shard else None
    if args.max_jobs is not None and args.max_jobs < 1:
        raise UsageError("--max-jobs must be at least 1")
    if args.max_bytes_per_day is not None and args.max_bytes_per_day < MIB:
        raise UsageError("--max-bytes-per-day must be at least 1M (one job holds at least 1 MiB)")
    if not args.poll > 0:
        raise UsageError("--poll must be a positive number of seconds")
    if not args.heartbeat > 0:
        raise UsageError("--heartbeat must be a positive number of seconds")
    if not args.inventory and not (args.all or args.patterns or args.archive_id):
        raise UsageError("say what to retrieve: PATTERNs, --archive-id ID or --all")
    check_delivery(args)
    args.opts = parse_retrieve_options(args.vault, args.options)
    return args


def again(args: argparse.Namespace) -> str:
    """``glacierfs retrieve -o OPTS VAULT``: this run's command, options included, for the
    hints that tell the user what to run next (without them it would run against another
    region or cache)."""
    words = ["glacierfs", "retrieve"]
    for text in args.options:
        words += ["-o", text]
    return shlex.join([*words, args.vault])


def criteria(args: argparse.Namespace) -> Criteria:
    return Criteria(
        patterns=tuple(args.patterns),
        archive_ids=tuple(args.archive_id),
        everything=args.all,
        min_size=args.min_size,
        max_size=args.max_size,
        created_after=args.created_after,
        created_before=args.created_before,
        shard=args.shard,
        latest=args.latest,
    )


def cache_root(options: Options) -> Path:
    return options.cache_dir or default_cache_dir(os.environ, os.getuid())


def limits(
    args: argparse.Namespace, state: State, policy: RetrievalPolicy, cache_size: int
) -> tuple[Limits, str]:
    """The caps (the account's policy and the cache's size among them), and where the
    daily one came from."""
    per_day, why = daily_cap(args, state)
    allowed = policy.per_day(args.tier)
    if allowed is not None and allowed < per_day:
        per_day, why = allowed, "the account's FreeTier retrieval policy"
    caps = Limits(per_day, args.max_jobs, policy.per_hour(args.tier), cache_size)
    return caps, why


def daily_cap(args: argparse.Namespace, state: State) -> tuple[int, str]:
    if args.max_bytes_per_day is not None:
        return args.max_bytes_per_day, "--max-bytes-per-day"
    measured = state.fact(RATE_FACT)
    rate, source = float(DEFAULT_DOWNLOAD_RATE), "an assumed 10 MiB/s (not measured yet)"
    if args.download_rate is not None:
        rate, source = float(args.download_rate), "--download-rate"
    elif measured:
        rate, source = measured, "the rate measured saving earlier outputs"
    per_day = max(int(rate * DAY * DAILY_SHARE), MIB)
    return per_day, f"half a day at {size(rate)}/s, {source}"


def confirm(args: argparse.Namespace, count: int) -> None:
    if args.yes or count == 0:
        return
    if not sys.stdin.isatty():
        raise UsageError("not on a terminal: pass --yes to start these jobs (or --dry-run)")
    answer = input(f"start {count} retrieval jobs now? [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise UsageError("nothing started")


def run(argv: Sequence[str]) -> int:
    args = parse(argv)
    logging.basicConfig(level=logging.WARNING, format="glacierfs retrieve: %(message)s")
    logs.install()  # every line escaped, as the mount's
    options: Options = args.opts
    client = GlacierClient(client_settings(options))
    try:
        vault = client.describe_vault()
        vault_arn = str(vault.get("VaultARN") or f"{options.account_id}:{options.vault}")
        if args.inventory:
            return start_inventory(options, client, again(args))
        return _retrieve(args, options, client, vault_arn)
    finally:
        client.close()


def _retrieve(
    args: argparse.Namespace, options: Options, client: GlacierClient, vault_arn: str
) -> int:
    root = open_root(cache_root(options))  # checked before anything is made in it
    # A holder of the cache that cannot prove itself refuses the run before the state is made.
    access = None if options.inventory else open_access(options, root, vault_arn)
    with root, State(root, vault_arn) as state, CacheIndex(root) as index:
        store, source = load_inventory(
            options, client, vault_arn, access, state.directory, again(args)
        )
        with store:
            selected = Selected(store, criteria(args))
            return _run(args, options, client, vault_arn, root, state, index, selected, source)


def _run(
    args: argparse.Namespace,
    options: Options,
    client: GlacierClient,
    vault_arn: str,
    root: Held,
    state: State,
    index: CacheIndex,
    selected: Selected,
    source: str,
) -> int:
    if args.dry_run:
        holder = state.try_lock()  # beside a running --follow: look, change nothing
    else:
        state.lock()
        holder = True
    refuse_too_large(args, selected, options.cache_size)
    progress = Progress(heartbeat=args.heartbeat)
    deliverer = None
    if not args.dry_run:
        deliverer = delivery(args, root, options.cache_size, vault_arn, selected, progress)
    try:
        engine, why = _engine(
            args, options, client, state, index, selected, deliverer, progress.event
        )
        plan = engine.plan(engine.look(update=holder))
        plan.older_versions, plan.older_bytes = selected.older_versions()
        show_plan(args, plan, options.vault, f"archives from {source}; daily cap from {why}")
        if args.dry_run:
            return 0
        confirm(args, plan.jobs if args.follow else len(plan.batch))
        if not args.follow:
            started = engine.request(plan.batch)
            print(started_line(len(started), plan))
            return 1 if engine.refused else 0  # a request failed: said above, one line each
        saver = partial(open_access, options, root, vault_arn)
        summary = Follower(engine, saver, args.poll, progress, deliverer).run()
    finally:
        if deliverer is not None:
            deliverer.close()
    print(escape(render_summary(summary)), flush=True)
    return 1 if summary["failed"] else 0


def _engine(
    args: argparse.Namespace,
    options: Options,
    client: GlacierClient,
    state: State,
    index: CacheIndex,
    selected: Selected,
    deliverer: Deliverer | None,
    event: Event,
) -> tuple[Engine, str]:
    """The engine of this run, paced by the caps and the account's retrieval policy;
    and where the daily cap came from."""
    policy = RetrievalPolicy.from_rule(client.retrieval_policy())
    caps, why = limits(args, state, policy, options.cache_size)
    engine = Engine(
        client,
        state,
        index,
        selected,
        str(state.vault),
        price(args.tier, args.price_per_gb, args.price_per_1000),
        caps,
        event,
        capacity=options.cache_size,
        request_evicted=args.request_evicted,
        policy=policy,
        held=deliverer,
    )
    return engine, why


def started_line(started: int, plan: Plan) -> str:
    """What a run without ``--follow`` did, and what it left."""
    wanted = plan.jobs
    if wanted == 0 and plan.evicted:
        return "nothing to request (evicted archives wait for --request-evicted)"
    if wanted == 0:
        return "nothing to request: every selected archive is cached or covered by a job"
    line = f"started {plural(started, 'job')}"
    if wanted > started:
        line += f"; {wanted - started} more as the caps allow: run again later, or use --follow"
    return line


def show_plan(args: argparse.Namespace, plan: Plan, vault: str, origin: str) -> None:
    """The plan on stdout, for people or (``--json``) for scripts."""
    if args.json:
        print(json.dumps({**plan_document(plan), "origin": origin}, indent=2), flush=True)
    else:
        print(escape(origin))
        lines = render_plan(plan, vault, args.in_region)
        print("\n".join(escape(line) for line in lines), flush=True)


def main(argv: Sequence[str]) -> int:
    try:
        return run(argv)
    except GlacierfsError as error:
        print(f"glacierfs retrieve: {escape(str(error))}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        return 130
