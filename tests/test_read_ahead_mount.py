"""Read-ahead through a real mount over a shaped link: two sequential readers share the
connections, each byte is fetched once, and random reads fetch only what they touch.

The emulator's request log (in the order responses ended) shows which job each
connection served; no figure here is a time.
"""

from __future__ import annotations

import itertools
import os
import random
import threading
from pathlib import Path
from typing import Any

from glacierfs.control import mount_stats
from tests.support.emulator import Emulator
from tests.support.mount import Mount, cmp, needs_fuse
from tests.support.vault import retrieve

pytestmark = needs_fuse

MIB = 1 << 20
VAULT = "ahead"


def copy_out(source: Path, target: Path, errors: list[BaseException]) -> None:
    try:
        with open(source, "rb") as reader, open(target, "wb") as writer:
            while chunk := reader.read(MIB):
                writer.write(chunk)
    except BaseException as error:  # noqa: BLE001 - reported by the test's thread
        errors.append(error)


def outputs(emulator: Emulator, count: int, size: int) -> list[tuple[str, str]]:
    emulator.client().create_vault(vaultName=VAULT)
    made = []
    for seed in range(count):
        archive, _ = emulator.seeded_archive(VAULT, size, seed + 7, "")
        made.append((archive, retrieve(emulator.client(), VAULT, archive)))
    return made


def test_two_sequential_readers_share_few_connections_and_each_byte_is_fetched_once(
    emulator: Emulator, mount_factory: Any, tmp_path: Path
) -> None:
    size = 40 * MIB
    (one, job_one), (two, job_two) = outputs(emulator, 2, size)
    emulator.fault("latency", operation="GetJobOutput", ms=10)
    emulator.fault("bandwidth", operation="GetJobOutput", bps=8 * MIB)
    emulator.reset_counters()  # before the mount, which may read a first leaf for names
    mount: Mount = mount_factory(emulator.url, VAULT, {"connections": "3"})
    errors: list[BaseException] = []
    copies = [tmp_path / "one", tmp_path / "two"]
    readers = [
        threading.Thread(target=copy_out, args=(mount.job_file(job), copy, errors))
        for job, copy in zip((job_one, job_two), copies, strict=True)
    ]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()
    assert errors == []
    cmp(copies[0], emulator.save_content(VAULT, one, tmp_path / "expected-one"))
    cmp(copies[1], emulator.save_content(VAULT, two, tmp_path / "expected-two"))
    assert emulator.job_bytes(job_one) == emulator.job_bytes(job_two) == size  # 1.00
    order = [entry["job"] for entry in emulator.requests() if entry["operation"] == "GetJobOutput"]
    # while both readers were active, both got connections: in the span where both jobs
    # had requests still to come, each took a fair part of the requests that ended
    overlap = order[: min(_last(order, job_one), _last(order, job_two)) + 1]
    shares = [overlap.count(job) / len(overlap) for job in (job_one, job_two)]
    assert min(shares) >= 0.25, (shares, order)
    assert _switches(overlap) >= 4, order


def _last(order: list[str], job: str) -> int:
    return len(order) - 1 - order[::-1].index(job)


def _switches(order: list[str]) -> int:
    return sum(1 for a, b in itertools.pairwise(order) if a != b)


def test_random_reads_fetch_only_the_leaves_they_touch(
    emulator: Emulator, mount_factory: Any
) -> None:
    size = 64 * MIB
    ((archive, job),) = outputs(emulator, 1, size)
    content = emulator.content(VAULT, archive)
    emulator.fault("latency", operation="GetJobOutput", ms=10)
    emulator.reset_counters()
    mount: Mount = mount_factory(emulator.url, VAULT, {"connections": "3"})
    rng = random.Random(5)
    offsets = [rng.randrange(0, size - 4096) for _ in range(60)]
    fd = os.open(mount.job_file(job), os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
        for offset in offsets:
            assert os.pread(fd, 4096, offset) == content[offset : offset + 4096]
    finally:
        os.close(fd)
    leaves = {o // MIB for o in offsets} | {(o + 4095) // MIB for o in offsets} | {0}
    assert emulator.job_bytes(job) <= 1.1 * len(leaves) * MIB  # with the names' first leaf


def test_a_short_output_over_a_slow_link_is_spread_over_every_connection(
    emulator: Emulator, mount_factory: Any, tmp_path: Path
) -> None:
    size = 128 * MIB  # 16 connections x 16 MiB requests would be twice the output
    ((archive, job),) = outputs(emulator, 1, size)
    emulator.fault("latency", operation="GetJobOutput", ms=40)
    emulator.fault("bandwidth", operation="GetJobOutput", bps=25_000_000)  # the WAN shape
    emulator.reset_counters()
    mount: Mount = mount_factory(emulator.url, VAULT, {})  # 16 connections, the default
    errors: list[BaseException] = []
    copy_out(mount.job_file(job), tmp_path / "copy", errors)
    assert errors == []
    cmp(tmp_path / "copy", emulator.save_content(VAULT, archive, tmp_path / "expected"))
    assert emulator.job_bytes(job) == size  # each byte once
    spans = [
        tuple(int(n) for n in entry["range"].split("-"))
        for entry in emulator.requests()
        if entry["operation"] == "GetJobOutput" and entry.get("job") == job
    ]
    sizes = [end + 1 - start for start, end in spans]
    # before: 1, 1, 4, 8, then eight of 16 MiB, on half the connections; now no request
    # is more than the output over the connections (to the nearest power of two)
    assert len(spans) >= 16 and max(sizes) <= 8 * MIB, sizes
    assert all(start % size_ == 0 for (start, _), size_ in zip(spans, sizes, strict=True))


def test_a_cold_sequential_read_over_the_wan_never_waits_on_bytes_not_yet_asked_for(
    emulator: Emulator, mount_factory: Any, tmp_path: Path
) -> None:
    """Near bytes first: the reader never waits on a leaf that no request covers while the
    connections are busy (its request would queue behind read-ahead of later bytes), nor
    on a read-ahead request still queued while later ones hold the connections; and the
    requests grow from the reader outwards, the smallest first."""
    size = 128 * MIB  # more requests than connections in the first round
    ((archive, job),) = outputs(emulator, 1, size)
    emulator.fault("latency", operation="GetJobOutput", ms=40)
    emulator.fault("bandwidth", operation="GetJobOutput", bps=25_000_000)  # the WAN shape
    mount: Mount = mount_factory(emulator.url, VAULT, {})  # 16 connections, the default
    with mount.job_file(job).open("rb") as probe:
        probe.read(4096)  # its first leaf cached, as a mount that looked for its name has
    emulator.reset_counters()
    errors: list[BaseException] = []
    copy_out(mount.job_file(job), tmp_path / "copy", errors)
    assert errors == []
    cmp(tmp_path / "copy", emulator.save_content(VAULT, archive, tmp_path / "expected"))
    stats = mount_stats(mount.path)
    assert (stats["demand_waits"], stats["urged_waits"]) == (0, 0), stats
    spans = sorted(
        tuple(int(n) for n in entry["range"].split("-"))
        for entry in emulator.requests()
        if entry["operation"] == "GetJobOutput" and entry.get("job") == job
    )
    sizes = [end + 1 - start for start, end in spans]
    assert sizes[:-1] == sorted(sizes[:-1]), sizes  # the last may be cut by the end
    assert all(b <= 2 * a for a, b in itertools.pairwise(sizes)), sizes  # no jump past the near
    assert sizes[:2] == [MIB] * 2, sizes  # the leaves right after the first read: soonest
