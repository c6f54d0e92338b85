"""CPU of one warm read through the daemon's own handlers, in one process, without the kernel.

Usage: python -m tests.bench.read_micro [--size-mib N] [--reads N] [--repeats N]
       [--size BYTES] [--archive] [--profile]

Builds the mount's parts as the daemon does (catalog, disk cache, reader, filesystem,
the pyfuse3 adapter's ``Operations``) over a fake service in memory, reads the output
once to hydrate the cache, then builds them again over the same cache (a remount) and
reads through ``Operations.read`` on trio, as pyfuse3 awaits it: first a pass that touches
every granule (their first-read checks), then reads at random offsets, timed (best and
median of ``--repeats`` passes). It shows the Python cost of a warm read, beside the
FUSE and kernel cost that the ceiling (:mod:`tests.bench.prototype`) measures; in the
daemon, between FUSE requests, the same code costs more (colder CPU caches).
``--profile`` prints where the time goes (cProfile, which inflates small calls). Not
part of `make bench`.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import statistics
import tempfile
import time
from pathlib import Path

import pyfuse3
import trio

from glacierfs.cache.aio import AsyncDisk
from glacierfs.cache.disk import DiskCache
from glacierfs.cache.memory import MemoryCache
from glacierfs.catalog import Catalog
from glacierfs.fuse_adapter import Operations
from glacierfs.jobs import Job
from glacierfs.read.reader import Reader, ReaderSettings
from glacierfs.retry import RetryPolicy
from glacierfs.stats import Stats
from glacierfs.treehash import MIB, is_tree_hash_aligned, tree_hash
from glacierfs.view.filesystem import Access, Filesystem
from glacierfs.wire import OutputPart
from tests.support.records import archive_record

ARN = "arn:aws:glacier:us-east-1:123456789012:vaults/bench"
RETRY = RetryPolicy(attempts=2, timeout=30, base_delay=0.001, max_delay=0.01)
CTX = pyfuse3.RequestContext()


async def _mounted(data: bytes, disk: DiskCache, nursery: trio.Nursery) -> Operations:
    def fetch_part(job: Job, start: int, end: int) -> OutputPart:
        aligned = is_tree_hash_aligned(start, end, len(data))
        body = data[start : end + 1]
        return OutputPart(body, tree_hash(body) if aligned else None, None)

    aio = AsyncDisk(disk)
    memory = MemoryCache(96 * MIB)
    reader = await Reader.create(
        fetch_part, aio, memory, ReaderSettings(retry=RETRY), Stats(), nursery=nursery
    )
    catalog = Catalog(lambda: [archive_record("J1", "A1", data, ARN)], aio, ARN, RETRY)
    assert await catalog.refresh()
    return Operations(Filesystem(catalog, reader, Access(0, 0, 0o022)))


async def _open(ops: Operations, archive: bool) -> int:
    top = b"archives" if archive else b"jobs"
    folder = (await ops.lookup(pyfuse3.ROOT_INODE, top, CTX)).st_ino
    inode = (await ops.lookup(folder, b"A1" if archive else b"J1", CTX)).st_ino
    return (await ops.open(inode, 0, CTX)).fh  # type: ignore[no-any-return]


async def _bench(args: argparse.Namespace, root: Path) -> None:
    data = b"".join(random.Random(n).randbytes(MIB) for n in range(args.size_mib))
    with DiskCache(root / "cache", 4 * len(data)) as disk:
        async with trio.open_nursery() as nursery:
            ops = await _mounted(data, disk, nursery)
            fh = await _open(ops, False)
            for offset in range(0, len(data), MIB):
                await ops.read(fh, offset, MIB)
            ops.fs.reader.close()
            nursery.cancel_scope.cancel()
        async with trio.open_nursery() as nursery:
            ops = await _mounted(data, disk, nursery)
            fh = await _open(ops, args.archive)
            for offset in range(0, len(data), MIB):  # each leaf's view, first granule
                await ops.read(fh, offset, args.size)
            if not args.unchecked:
                for offset in range(0, len(data), 64 << 10):
                    await ops.read(fh, offset, args.size)
            rng = random.Random(2)
            offsets = [rng.randrange(len(data) // 4096) * 4096 for _ in range(args.reads)]
            for offset in offsets[:1000] if not args.unchecked else ():  # not timed
                got = await ops.read(fh, offset, args.size)
                assert bytes(got) == data[offset : offset + args.size]
            profile = cProfile.Profile() if args.profile else None
            costs = []
            for _ in range(args.repeats):
                cpu = time.process_time()
                if profile:
                    profile.enable()
                for offset in offsets:
                    await ops.read(fh, offset, args.size)
                if profile:
                    profile.disable()
                costs.append((time.process_time() - cpu) / args.reads * 1e6)
            print(
                f"{args.reads} reads x {args.repeats}: CPU a read {min(costs):.2f} us (best), "
                f"{statistics.median(costs):.2f} us (median); {ops.fs.reader.local_reads()}"
            )
            ops.fs.reader.close()
            nursery.cancel_scope.cancel()
    if profile:
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.read_micro")
    parser.add_argument("--size-mib", type=int, default=32)
    parser.add_argument("--reads", type=int, default=50_000)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--unchecked", action="store_true", help="granules not checked before: a fresh mount"
    )
    parser.add_argument("--archive", action="store_true", help="read archives/A1")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="glacierfs-micro-") as tmp:
        trio.run(_bench, args, Path(tmp))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
