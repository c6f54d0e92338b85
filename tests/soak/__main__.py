"""``python -m tests.soak [--duration 10m] [--readers N] [--seed N] [--small] [--no-drop-checksum]
[--no-lies]``

Exit status: 0 when every byte read was right and the daemon stayed flat and exited
in time, 1 otherwise, 2 for bad arguments, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

from tests.soak.report import failures, lines
from tests.soak.run import Settings, Soak

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smh]?)\Z")


def duration(text: str) -> float:
    """``90``, ``90s``, ``10m``, ``1h`` -> seconds."""
    match = _DURATION.match(text.strip())
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"not a duration (e.g. 90s, 10m): {text!r}")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__)
    parser.add_argument("--duration", type=duration, default=600.0, help="reading time (10m)")
    parser.add_argument("--readers", type=int, default=8, help="reader threads (8)")
    parser.add_argument("--seed", type=int, help="seed of the chaos (default: from the clock)")
    parser.add_argument("--small", action="store_true", help="a tiny vault (for the test suite)")
    parser.add_argument(
        "--no-drop-checksum",
        dest="drop_checksum",
        action="store_false",
        help="leave out the fault that drops a due x-amz-sha256-tree-hash header",
    )
    parser.add_argument(
        "--no-lies",
        dest="lies",
        action="store_false",
        help="tell no lies about the spare jobs' records (tests.soak.lies)",
    )
    parser.add_argument(
        "--cache-fraction", type=float, default=1 / 3, help="cache_size as a share of the bytes"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args(argv)
    if args.readers < 1 or not 0 < args.cache_fraction <= 4:
        parser.error("--readers is at least 1, --cache-fraction between 0 and 4")
    return args


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    seed = args.seed if args.seed is not None else int(time.time()) % 100_000
    settings = Settings(
        args.duration,
        args.readers,
        seed,
        args.small,
        args.drop_checksum,
        args.cache_fraction,
        args.lies,
    )
    signal.signal(signal.SIGTERM, _interrupt)
    workdir = Path(tempfile.mkdtemp(prefix="glacierfs-soak-"))
    print(f"soak: seed {seed}, work directory {workdir}", file=sys.stderr, flush=True)
    soak = Soak(settings, workdir)
    try:
        result = soak.run()
    except KeyboardInterrupt:
        print("soak: interrupted, cleaning up", file=sys.stderr)
        return 130
    except AssertionError as error:  # how tests/support says set-up failed
        print(f"soak: set-up failed: {error}", file=sys.stderr)
        return 1
    finally:
        soak.close()
        if args.keep:
            print(f"soak: work directory kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print("\n".join(lines(result)), flush=True)
    return 1 if failures(result) else 0


if __name__ == "__main__":
    sys.exit(main())
