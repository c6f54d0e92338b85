"""``glacierfs-emulator``: run the local Glacier on loopback until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path

from glacierfs.emulator.clock import Clock
from glacierfs.emulator.faults import KINDS, Faults, parse_fault
from glacierfs.emulator.server import Emulator
from glacierfs.emulator.store import Store
from glacierfs.emulator.tiers import REAL_TIMES, parse_tier_delay

SEEDING = """\
A vault of your own: create it as a user would (any credentials are accepted unless
--access-key is given), then seed archives through the admin endpoint, which takes JSON
and no credentials. A seeded archive is generated from its seed as it is read, so a
vault of many GB costs no disk:

  glacierfs-emulator --port 9000 --clock-speed 3600 &     # an emulated hour a second
  export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=us-east-1
  aws glacier create-vault --account-id - --vault-name myvault \\
      --endpoint-url http://127.0.0.1:9000
  curl -X POST http://127.0.0.1:9000/_emulator/seeded-archives -d \\
      '{"vault": "myvault", "size": 104857600, "seed": 1, "description": "photos/beach.jpg"}'
  curl -X POST http://127.0.0.1:9000/_emulator/faults -d '{"kind": "reset", "rate": 0.1}'
  glacierfs retrieve -o endpoint_url=http://127.0.0.1:9000 --inventory myvault

The description is what upload tools write (a plain name, mt-aws-glacier's "mt2 ...",
FastGlacier's XML): the mount decodes it into the file's path. Faults (--fault, or POST
/_emulator/faults) take {"kind", "job", "operation", "count", "rate", "at", "ms", "bps"}.
Other admin calls: GET counters, GET requests, POST clock {"advance": SECONDS},
POST jobs/ID/complete|fail|expire|set, GET jobs (glacierfs/emulator/server.py has them all).
"""


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="glacierfs-emulator",
        description="A local Amazon S3 Glacier vault API for tests, demos and benchmarks.",
        epilog=SEEDING,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=0, help="port (0: a free one)")
    parser.add_argument("--state-dir", type=Path, help="where vaults live (default: a temp dir)")
    parser.add_argument("--ready-file", type=Path, help="write the port here once listening")
    parser.add_argument("--account-id", default="123456789012", help="the account's 12-digit id")
    parser.add_argument("--region", default="us-east-1", help="the region in ARNs")
    parser.add_argument("--access-key", help="refuse requests signed with any other key id")
    _timing_options(parser)
    _fault_options(parser)
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")
    return parser.parse_args(argv)


def _timing_options(parser: argparse.ArgumentParser) -> None:
    """When jobs complete and expire, how the clock runs, and how fast answers come."""
    parser.add_argument(
        "--job-delay",
        type=float,
        default=0.0,
        help="seconds to complete a job of a tier given no delay of its own (default 0: at once)",
    )
    parser.add_argument(
        "--real-tier-times",
        action="store_true",
        help="jobs take their tier's real time: Expedited 1-5 min, Standard 3-5 h, Bulk 5-12 h",
    )
    parser.add_argument(
        "--tier-delay",
        action="append",
        default=[],
        metavar="TIER=MIN[-MAX]",
        help="one tier's completion delay, e.g. Bulk=5h-12h or Expedited=30 (repeatable)",
    )
    parser.add_argument(
        "--clock-speed",
        type=float,
        default=1.0,
        help="emulated seconds per real second (3600: an hour a second); see /_emulator/clock",
    )
    parser.add_argument(
        "--job-expiry", type=float, default=86400.0, help="seconds a completed job's output lasts"
    )
    parser.add_argument("--max-page-size", type=int, default=50, help="most jobs/vaults a page")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay before every answer")
    parser.add_argument("--bandwidth", type=int, default=0, help="bytes/s per connection")
    parser.add_argument(
        "--total-bandwidth",
        type=int,
        default=0,
        help="bytes/s of every connection together (a NIC: 125000000 is 1 Gbit/s)",
    )


def _fault_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="JSON",
        help=f"a fault to inject from the start; kinds: {', '.join(KINDS)}",
    )
    parser.add_argument("--fault-seed", type=int, default=0, help="seed of the fault rates")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="glacierfs-emulator: %(message)s",
    )
    try:
        faults = _faults(args)
        tier_delays, clock = _timing(args)
    except ValueError as error:
        print(f"glacierfs-emulator: {error}", file=sys.stderr)
        return 2
    store = _store(args, tier_delays, clock)
    try:
        server = Emulator(
            (args.host, args.port),
            store,
            faults,
            access_key=args.access_key,
            latency_ms=args.latency_ms,
            bandwidth=args.bandwidth,
            total_bandwidth=args.total_bandwidth,
        )
    except OSError as error:
        where = f"{args.host}:{args.port}"
        print(f"glacierfs-emulator: cannot listen on {where}: {error}", file=sys.stderr)
        return 1
    _announce(args, server.server_address[1], store.root)
    _serve(server, store)
    return 0


def _faults(args: argparse.Namespace) -> Faults:
    faults = Faults(args.fault_seed)
    try:
        for text in args.fault:
            faults.add(parse_fault(json.loads(text)))
    except ValueError as error:
        raise ValueError(f"bad --fault: {error}") from None
    return faults


def _timing(args: argparse.Namespace) -> tuple[dict[str, tuple[float, float]], Clock]:
    tier_delays = dict(REAL_TIMES) if args.real_tier_times else {}
    tier_delays.update(parse_tier_delay(text) for text in args.tier_delay)
    return tier_delays, Clock(args.clock_speed)


def _store(
    args: argparse.Namespace, tier_delays: dict[str, tuple[float, float]], clock: Clock
) -> Store:
    state = args.state_dir or Path(tempfile.mkdtemp(prefix="glacierfs-emulator-"))
    return Store(
        state,
        account=args.account_id,
        region=args.region,
        job_delay=args.job_delay,
        job_expiry=args.job_expiry,
        max_page=args.max_page_size,
        tier_delays=tier_delays,
        clock=clock,
    )


def _announce(args: argparse.Namespace, port: int, state: Path) -> None:
    if args.ready_file:
        temporary = args.ready_file.with_name(args.ready_file.name + ".tmp")
        temporary.write_text(f"{port}\n")
        os.replace(temporary, args.ready_file)
    print(f"glacierfs-emulator: http://{args.host}:{port} (state in {state})", file=sys.stderr)


def _serve(server: Emulator, store: Store) -> None:
    """Until SIGTERM or SIGINT; the state is saved on the way out."""

    def stop(signum: int, frame: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.serve_forever(poll_interval=0.05)
    finally:
        server.server_close()
        store.save()


if __name__ == "__main__":
    sys.exit(main())
