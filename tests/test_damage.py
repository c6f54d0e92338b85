"""Jobs that fail their check, remembered with the cache: what is skipped, what is forgotten."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import trio

from glacierfs.cache.aio import AsyncDisk
from glacierfs.cache.disk import DiskCache
from glacierfs.errors import IntegrityError
from glacierfs.jobs import Job
from glacierfs.view.damage import DamagedJobs

MIB = 1 << 20
SENT, GOT = "a" * 64, "b" * 64
JOB = Job("J", "archive", 8 * MIB, 1.0, 0.0, "arn", "A", 10 * MIB, "t" * 64, 2 * MIB, "h" * 64)


def mismatch(start: int, end: int) -> IntegrityError:
    """The error the reader raises for a response that fails its checksum."""
    return IntegrityError(
        f"job J bytes {start}-{end}: checksum mismatch: expected {SENT}, received {GOT}"
    )


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[DiskCache]:
    cache = DiskCache(tmp_path / "cache", 1 << 30)
    yield cache
    cache.close()


def loaded(disk: DiskCache) -> DamagedJobs:
    damage = DamagedJobs(AsyncDisk(disk))
    trio.run(damage.load)
    return damage


@pytest.mark.expected_logs(r"is damaged")
def test_a_failure_is_remembered_with_the_digest_sent_and_skipped_while_the_record_holds(
    disk: DiskCache,
) -> None:
    damage = loaded(disk)
    trio.run(damage.mark, JOB, mismatch(0, MIB - 1), 0, 10)
    again = loaded(disk)  # the next mount
    assert again.skips(JOB)
    known = again.known["J"]
    assert (known.start, known.end, known.expected, known.received) == (0, MIB - 1, SENT, GOT)
    assert SENT in known.describe()
    assert again.bad(JOB, 2) and not again.bad(JOB, 3)  # archive coordinates: range from 2 MiB
    assert not again.skips(replace(JOB, tree_hash="c" * 64))  # the service says something new
    assert not again.skips(replace(JOB, job_id="K"))


@pytest.mark.expected_logs(r"is damaged")
def test_a_failure_the_message_does_not_explain_keeps_the_bytes_that_were_asked(
    disk: DiskCache,
) -> None:
    damage = loaded(disk)
    trio.run(damage.mark, JOB, IntegrityError("the whole output does not match"), MIB, 3 * MIB)
    known = loaded(disk).known["J"]
    assert (known.start, known.end, known.expected) == (MIB, 3 * MIB, None)


@pytest.mark.expected_logs(r"is damaged")
def test_reads_that_pass_their_check_shrink_the_damage_until_it_is_forgotten(
    disk: DiskCache,
) -> None:
    damage = loaded(disk)
    trio.run(damage.mark, JOB, mismatch(0, 4 * MIB - 1), 0, 0)
    trio.run(damage.passed, JOB, 5 * MIB, 6 * MIB)  # elsewhere: nothing changes
    assert (damage.known["J"].start, damage.known["J"].end) == (0, 4 * MIB - 1)
    trio.run(damage.passed, JOB, 0, MIB + 10)  # leaves 0 and 1 are good now
    assert (damage.known["J"].start, damage.known["J"].end) == (2 * MIB, 4 * MIB - 1)
    assert loaded(disk).known["J"].start == 2 * MIB
    trio.run(damage.passed, JOB, 3 * MIB, 3 * MIB)  # the last leaf
    assert (damage.known["J"].start, damage.known["J"].end) == (2 * MIB, 3 * MIB - 1)
    trio.run(damage.passed, JOB, 2 * MIB + 5, 2 * MIB + 6)
    assert "J" not in damage.known and "J" not in loaded(disk).known


def test_a_saved_value_that_is_not_a_damage_is_ignored(disk: DiskCache) -> None:
    disk.put_meta("damaged", "J", {"start": "nonsense"})
    disk.put_meta("damaged", "K", [1, 2])
    fields = {"start": "0", "end": 1, "expected": None, "received": None, "record": {}}
    disk.put_meta("damaged", "L", fields)
    assert loaded(disk).known == {}
