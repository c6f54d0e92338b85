"""The classes of cached leaves, derived from live jobs and the delivery record."""

from __future__ import annotations

import hashlib
from pathlib import Path

from glacierfs.cache.disk import DiskCache
from glacierfs.cache.disk.classes import ClassBytes
from glacierfs.config import CUSTODY_MARGIN
from glacierfs.custody import Custody, cache_classes, live_ranges
from glacierfs.jobs import EXPIRY, Job
from glacierfs.retrieve.delivered import RELEASED, DeliveryRecord
from glacierfs.treehash import MIB

VAULT = "arn:aws:glacier:us-east-1:123:vaults/v"
DAY = EXPIRY.total_seconds()


def job(job_id: str, archive: str, completed: float, size: int = 3 * MIB, start: int = 0) -> Job:
    tree_hash = archive * 64
    return Job(job_id, "archive", size, completed, 0.0, VAULT, archive, 8 * MIB, tree_hash, start)


def test_a_job_is_live_until_its_expiry_less_the_margin_by_the_services_clock() -> None:
    whole, part = job("j", "a", 1000.0), job("k", "b", 1000.0, MIB, 2 * MIB)
    until = 1000.0 + DAY - CUSTODY_MARGIN
    ranges = live_ranges([whole, part])
    assert ranges == {whole.cache_key: ((0, 3, until),), part.cache_key: ((2, 3, until),)}


def test_the_classes_follow_the_listing_and_the_delivery_record(tmp_path: Path) -> None:
    service = [1000.0]
    custody = Custody(tmp_path, service_time=lambda: service[0])
    a, b = job("j", "a", 1000.0), job("k", "b", 1000.0)
    assert custody.archive_class(a.cache_key, [0, 1, 2]) == "custody"  # nothing listed yet
    custody.update([a])
    assert custody.archive_class(a.cache_key, [0, 1, 2]) == "replaceable"
    assert custody.archive_class(a.cache_key, [0, 5]) == "custody"  # leaf 5: no job has it
    assert custody.archive_class(b.cache_key, [0]) == "custody"
    service[0] += DAY - CUSTODY_MARGIN  # expired with its margin, no listing since
    assert custody.archive_class(a.cache_key, [0]) == "custody"
    with DeliveryRecord.open(tmp_path) as record:
        record.record(VAULT, "b", "b" * 64, 8 * MIB, RELEASED, "b.bin")
    assert custody.archive_class(b.cache_key, [0]) == "custody"  # read at the next listing
    custody.update([])
    assert custody.archive_class(b.cache_key, [0]) == "delivered"
    assert custody.classes().delivered == {b.cache_key}


def test_bytes_of_each_class_are_counted_beside_the_cache_read_only(tmp_path: Path) -> None:
    a, b, c = job("j", "a", 1000.0), job("k", "b", 1000.0), job("l", "c", 1000.0)
    assert cache_classes(tmp_path, [a], 1000.0) == ClassBytes()  # no cache yet
    with DiskCache(tmp_path, 64 * MIB) as cache:
        for key in (a.cache_key, b.cache_key, c.cache_key):
            data = bytes(2 * MIB)
            digest = hashlib.sha256(bytes(MIB)).digest()
            assert cache.put(key, 0, data, [digest, digest], "block", owner="o")
        with DeliveryRecord.open(tmp_path) as record:
            record.record(VAULT, "c", "c" * 64, 8 * MIB, RELEASED, "c.bin")
        assert cache_classes(tmp_path, [a], 1000.0) == ClassBytes(2 * MIB, 2 * MIB, 2 * MIB)
        assert cache_classes(tmp_path, [a], 1000.0 + DAY) == ClassBytes(2 * MIB, 0, 4 * MIB)
