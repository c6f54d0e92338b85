"""Runs of leaves instead of leaves: the same answers as a per-leaf reference on small
archives, and work that does not grow with the size of the archive on huge ones."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glacierfs.errors import BadResponse
from glacierfs.intervals import clip, count, covers, gaps, normal, of_leaves, union
from glacierfs.inventory import Entry
from glacierfs.jobs import MAX_SIZE, Job
from glacierfs.retrieve.coverage import Holding, LiveJob, live_job, live_jobs
from glacierfs.retrieve.pacing import Limits, units_for
from glacierfs.retrieve.plan import make_plan
from glacierfs.retrieve.pricing import price
from glacierfs.retrieve.selection import Archive, refusal
from glacierfs.view.archives import assemble, job_leaves
from glacierfs.view.archives import covers as job_covers
from glacierfs.view.tree import Tree
from tests.support.operations import TooMuchWork, operations

MIB = 1 << 20
TIB = 1 << 40
ARN = "arn:aws:glacier:us-east-1:123456789012:vaults/v"
HASH = "ab" * 32

leaf_runs = st.lists(st.tuples(st.integers(0, 40), st.integers(0, 40)), max_size=8)


def leaves_of(runs: list[tuple[int, int]]) -> set[int]:
    return {leaf for first, stop in runs for leaf in range(first, stop)}


@given(leaf_runs, leaf_runs, st.integers(0, 40), st.integers(0, 40))
def test_runs_answer_as_sets_of_leaves_do(
    a: list[tuple[int, int]], b: list[tuple[int, int]], first: int, stop: int
) -> None:
    runs = normal(a)
    assert leaves_of(runs) == leaves_of(a) and runs == of_leaves(leaves_of(a))
    assert all(x[1] < y[0] for x, y in itertools.pairwise(runs))  # apart, sorted
    assert leaves_of(union(a, b)) == leaves_of(a) | leaves_of(b)
    assert leaves_of(gaps(first, stop, a)) == set(range(first, stop)) - leaves_of(a)
    assert gaps(first, stop, a) == of_leaves(set(range(first, stop)) - leaves_of(a))
    assert covers(a, first, stop) == (set(range(first, stop)) <= leaves_of(a))
    assert count(a) == len(leaves_of(a))
    assert leaves_of(clip(a, first, stop)) == leaves_of(a) & set(range(first, stop))


def archive_job(job_id: str, size: int, start: int = 0, end: int | None = None) -> Job:
    last = size - 1 if end is None else end
    return Job(job_id, "archive", last - start + 1, 1.0, 0.0, ARN, "A", size, HASH, start)


@given(st.integers(0, 6 * MIB), st.integers(0, 6), st.integers(0, 6 * MIB))
def test_the_leaves_a_job_holds_are_those_it_covers_one_by_one(
    size: int, first: int, length: int
) -> None:
    start = min(first * MIB, max(size - 1, 0) // MIB * MIB)
    end = min(start + length, size) - 1
    job = archive_job("J", size, start, end)
    leaves = -(-size // MIB)
    assert leaves_of([job_leaves(job)]) == {n for n in range(leaves) if job_covers(job, n)}


# The pacing's pieces, against the per-leaf code they replace.


def reference_gaps(leaves: int, covered: set[int]) -> list[tuple[int, int]]:
    runs, start = [], None
    for leaf in range(leaves):
        if leaf in covered:
            if start is not None:
                runs.append((start, leaf))
                start = None
        elif start is None:
            start = leaf
    return runs + ([(start, leaves)] if start is not None else [])


def reference_pieces(first: int, stop: int, leaves: int, block: int) -> list[tuple[int, int]]:
    pieces, position = [], first
    while position < stop:
        tail = leaves - position
        power = 1
        while power < tail:
            power *= 2
        if stop == leaves and tail <= block and position % power == 0:
            pieces.append((position, tail))
            break
        size = block
        while size > 1 and (position % size or position + size > stop):
            size //= 2
        pieces.append((position, size))
        position += size
    return pieces


def selected(size: int, archive_id: str = "A") -> Archive:
    return Archive(archive_id, size, HASH, 0.0, "", "f")


@settings(max_examples=300)
@given(st.integers(1, 40 * MIB), st.sets(st.integers(0, 40)), st.integers(1, 20))
def test_pieces_are_those_the_per_leaf_code_planned(
    size: int, covered: set[int], per_day_mib: int
) -> None:
    archive = selected(size)
    units = units_for(archive, of_leaves(covered), per_day_mib * MIB)
    missing = reference_gaps(archive.leaves, covered)
    if missing == [(0, archive.leaves)] and size <= per_day_mib * MIB:
        assert [(u.start, u.end, u.whole) for u in units] == [(0, size - 1, True)]
        return
    block = 1
    while block * 2 * MIB <= per_day_mib * MIB:
        block *= 2
    expected = [
        (leaf * MIB, min((leaf + count) * MIB, size) - 1)
        for first, stop in missing
        for leaf, count in reference_pieces(first, stop, archive.leaves, block)
    ]
    assert [(u.start, u.end) for u in units] == expected


def live(job_id: str, start: int, end: int, status: str = "Succeeded") -> LiveJob:
    return LiveJob(job_id, "A", start, end, status, 0.0, 1.0, "Bulk")


@given(st.integers(1, 12 * MIB), st.sets(st.integers(0, 12)), st.integers(0, 11), st.integers(0, 3))
def test_what_holds_an_archive_is_what_the_per_leaf_code_found(
    size: int, cached: set[int], first: int, count_: int
) -> None:
    archive = selected(size)
    start = min(first, archive.leaves - 1) * MIB
    end = min(start + (count_ + 1) * MIB, size) - 1
    job = live("J", start, end)
    holding = Holding(archive, frozenset(cached), (job,))
    job_leaves_ = set(range(start // MIB, -(-(end + 1) // MIB)))
    assert leaves_of(holding.covered()) == cached | job_leaves_
    assert holding.wholly_cached == all(n in cached for n in range(archive.leaves))
    assert holding.unsaved_jobs() == ([job] if job_leaves_ - cached else [])


# Huge sizes: the work is that of a small archive.


def test_a_32_tib_record_is_assembled_and_named_with_the_work_of_a_1_mib_one() -> None:
    def build(size: int) -> Tree:
        jobs = [archive_job("J1", size), archive_job("J2", size, 0, min(size, 4 * MIB) - 1)]
        tree = Tree()
        tree.build(jobs, lambda job: (("docs", "big.bin"), None))
        return tree

    small, _ = operations(lambda: build(MIB))
    big, tree = operations(lambda: build(1 << 45))
    assert big <= small * 1.1 and len(assemble([archive_job("J1", 1 << 45)]).archives) == 1
    archive = tree.nodes[tree.file_inodes["archive/A"]].archive
    assert archive is not None and archive.size == 1 << 45


def test_a_32_tib_archive_is_planned_in_its_pieces_not_its_leaves() -> None:
    def planned(size: int) -> int:
        archive = selected(size)
        partly = live("J", 0, size * 3 // 32 // MIB * MIB - 1, "InProgress")  # a range job
        holding = Holding(archive, frozenset({5_000_000, 5_000_001}), (partly,))
        plan = make_plan([holding], [], Limits(TIB), price("Bulk"), 0.0)
        return len(plan.units)

    small, pieces = operations(lambda: planned(MIB))
    assert pieces == 1
    big, pieces = operations(lambda: planned(1 << 45), limit=50_000)
    leaves, block = 1 << 25, TIB // MIB  # pieces of at most 1 TiB, tree-hash aligned
    expected = reference_pieces(3 * leaves // 32, 5_000_000, leaves, block)
    expected += reference_pieces(5_000_002, leaves, leaves, block)
    assert pieces == len(expected) == 47
    assert big < small + 400 * pieces


def test_the_per_leaf_way_is_caught_by_the_count() -> None:
    try:
        operations(lambda: reference_gaps(1 << 25, set()), limit=10_000)
    except TooMuchWork:
        return
    raise AssertionError("the per-leaf reference was not stopped")


def test_sizes_past_the_services_limits_are_refused_per_record() -> None:
    record = {
        "JobId": "J",
        "ArchiveId": "A",
        "Action": "ArchiveRetrieval",
        "StatusCode": "InProgress",
        "CreationDate": "2024-01-01T00:00:00Z",
        "ArchiveSizeInBytes": 1 << 70,
    }
    for size in (1 << 70, -1):
        with pytest.raises(BadResponse, match="ArchiveSizeInBytes"):
            live_job({**record, "ArchiveSizeInBytes": size})
    assert live_job({**record, "ArchiveSizeInBytes": 1 << 45}) is not None
    wrong_range = {**record, "ArchiveSizeInBytes": MIB, "RetrievalByteRange": "0-8388607"}
    with pytest.raises(BadResponse):
        live_job(wrong_range)
    refused: list[Any] = []
    records = [record, {**record, "JobId": "K", "ArchiveId": "B", "ArchiveSizeInBytes": MIB}]
    assert list(live_jobs(records, lambda r, why: refused.append(r))) == ["B"]
    assert refused == [record]  # one line for it, from the caller
    for size in (1 << 70, -5, MAX_SIZE + 1):
        why = refusal(Entry("A\x1b[2J", "d", "2024-01-01T00:00:00Z", size, HASH))
        assert why is not None and "\x1b" not in why and str(size) in why
    assert refusal(Entry("A", "d", "2024-01-01T00:00:00Z", MAX_SIZE, HASH)) is None
