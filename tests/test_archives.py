"""Archives assembled from jobs: which are whole, which leaf is read through which job. Pure."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from glacierfs.jobs import Job
from glacierfs.view.archives import assemble, choose, covers, plan, probe_job

MIB = 1 << 20
ARN = "arn:aws:glacier:us-east-1:123456789012:vaults/v"
SIZE = 5 * MIB + 1000  # six leaves, the last one ragged


def job(job_id: str, start: int = 0, end: int | None = None, completed: float = 1.0) -> Job:
    """A job of archive A (``SIZE`` bytes) retrieving bytes ``start..end`` (all by default)."""
    last = SIZE - 1 if end is None else end
    return Job(job_id, "archive", last - start + 1, completed, 0.0, ARN, "A", SIZE, "t" * 64, start)


def never(job: Job, leaf: int) -> bool:
    return False


def test_a_full_job_makes_a_whole_archive() -> None:
    assembly = assemble([job("F")])
    assert [a.archive_id for a in assembly.archives] == ["A"] and assembly.loose == []
    archive = assembly.archives[0]
    assert (archive.size, archive.leaves, archive.key) == (SIZE, 6, "archive/A")


def test_ranges_that_cover_every_leaf_make_a_whole_archive_and_a_gap_does_not() -> None:
    ranges = [job("R1", 0, 2 * MIB - 1), job("R2", 2 * MIB, 4 * MIB - 1), job("R3", 4 * MIB)]
    assert [a.archive_id for a in assemble(ranges).archives] == ["A"]
    gap = assemble([ranges[0], ranges[2]])
    assert gap.archives == [] and [j.job_id for j in gap.loose] == ["R1", "R3"]


def test_a_range_that_stops_inside_a_leaf_does_not_cover_that_leaf() -> None:
    short = job("R1", 0, 2 * MIB - 2)  # one byte short of leaf 1's end
    assert covers(short, 0) and not covers(short, 1)
    assert assemble([short, job("R2", 2 * MIB)]).archives == []
    assert covers(job("T", 5 * MIB), 5)  # the ragged last leaf ends with the archive


def test_a_job_that_disagrees_about_the_archive_is_shown_alone() -> None:
    liar = replace(job("L", completed=2.0), archive_tree_hash="f" * 64)
    assembly = assemble([job("F"), liar])
    assert [j.job_id for j in assembly.archives[0].jobs] == ["F"]
    assert [j.job_id for j in assembly.loose] == ["L"]


def test_the_inventory_not_the_oldest_record_says_what_the_archive_is() -> None:
    """The soak's second finding: a job of another archive whose record claims A's id
    (its own size and tree hash kept) completed first, so it defined A and A's own jobs
    were shown apart; with the inventory's word it is the one shown alone."""
    claimer = replace(job("C", completed=0.5), archive_size=SIZE - 7, archive_tree_hash="c" * 64)
    honest = job("F", completed=2.0)
    assert [j.job_id for j in assemble([claimer, honest]).archives[0].jobs] == ["C"]
    listed = assemble([claimer, honest], {"A": (SIZE, "t" * 64)}.get)
    assert [j.job_id for j in listed.archives[0].jobs] == ["F"]
    assert listed.archives[0].size == SIZE and [j.job_id for j in listed.loose] == ["C"]


def test_an_empty_archive_is_whole() -> None:
    empty = Job("E", "archive", 0, 1.0, 0.0, ARN, "Z", 0, "e" * 64)
    archive = assemble([empty]).archives[0]
    assert archive.leaves == 0 and plan(archive, 0, 10, never, never) == []


def test_leaves_go_to_a_job_that_has_them_cached_then_a_sound_one_then_full_then_oldest() -> None:
    full = job("F", completed=3.0)
    old, new = job("R1", 0, 3 * MIB - 1, completed=1.0), job("R2", 0, SIZE - 2, completed=2.0)
    archive = assemble([new, old, full]).archives[0]
    assert choose(archive, 0, never, never).job_id == "F"
    assert choose(archive, 0, lambda j, leaf: j.job_id == "R2", never).job_id == "R2"
    assert choose(archive, 0, never, lambda j, leaf: j.job_id == "F").job_id == "R1"
    ranges = assemble([new, old, job("T", 5 * MIB)]).archives[0]
    assert choose(ranges, 0, never, never).job_id == "R1"
    assert choose(ranges, 4, never, never).job_id == "R2"  # the only one holding leaf 4


def test_a_proven_job_serves_a_leaf_before_one_that_has_it_cached_unproven() -> None:
    """The soak's finding: a range job whose record names another range of the archive
    (its answers' checksums matching its own bytes) had its leaves cached, and the archive
    file read them through it, though the full job was proven against its tree hash."""
    full, liar = job("F", completed=3.0), job("R2", 0, SIZE - 2, completed=2.0)
    archive = assemble([liar, full]).archives[0]

    def cached_for_liar(j: Job, leaf: int) -> bool:
        return j.job_id == "R2"

    def proven_full(j: Job) -> bool:
        return j.job_id == "F"

    def full_fails(j: Job, leaf: int) -> bool:
        return j.job_id == "F"

    assert choose(archive, 3, cached_for_liar, never).job_id == "R2"  # none proven: no request
    assert choose(archive, 3, cached_for_liar, never, proven_full).job_id == "F"
    assert choose(archive, 3, cached_for_liar, full_fails, proven_full).job_id == "R2"
    pieces = plan(archive, 0, SIZE, cached_for_liar, never, proven_full)
    assert [(j.job_id, offset, length) for j, offset, length in pieces] == [("F", 0, SIZE)]


def test_a_read_is_cut_where_the_job_changes_in_each_jobs_coordinates() -> None:
    ranges = [job("R1", 0, 2 * MIB - 1), job("R2", 2 * MIB, 4 * MIB - 1), job("R3", 4 * MIB)]
    archive = assemble(ranges).archives[0]
    pieces = plan(archive, MIB + 5, 3 * MIB, never, never)
    assert [(j.job_id, offset, length) for j, offset, length in pieces] == [
        ("R1", MIB + 5, MIB - 5),
        ("R2", 0, 2 * MIB),
        ("R3", 0, 5),
    ]
    assert plan(archive, SIZE - 10, MIB, never, never)[0][1:] == (MIB + 990, 10)
    assert plan(archive, SIZE, 1, never, never) == []


def test_the_name_probe_reads_the_first_leaf_through_the_job_the_archive_file_would() -> None:
    full, first = job("F", completed=5.0), job("R1", 0, MIB - 1, completed=1.0)
    later = job("R2", 2 * MIB, completed=0.5)
    assert probe_job([later, first, full], never_skip).job_id == "F"
    assert probe_job([later, first], never_skip).job_id == "R1"
    assert probe_job([later, first], lambda j: j.job_id == "R1").job_id == "R2"  # type: ignore[union-attr]
    assert probe_job([first], lambda j: True) is None


def never_skip(job: Job) -> bool:
    return False


@st.composite
def coverings(draw: st.DrawFn) -> list[Job]:
    """Range jobs (and maybe a full one) over archive A, in aligned leaf runs."""
    jobs = []
    for n in range(draw(st.integers(1, 5))):
        first = draw(st.integers(0, 5))
        last = draw(st.integers(first, 5))
        end = SIZE - 1 if last == 5 else (last + 1) * MIB - 1
        jobs.append(job(f"J{n}", first * MIB, end, completed=draw(st.floats(0, 10))))
    return jobs


@given(coverings(), st.integers(0, SIZE), st.integers(1, 3 * MIB), st.sets(st.integers(0, 5)))
def test_every_read_is_served_whole_and_in_order_by_jobs_that_hold_it(
    jobs: list[Job], offset: int, size: int, cached: set[int]
) -> None:
    assembly = assemble(jobs)
    covered = {leaf for j in jobs for leaf in range(6) if covers(j, leaf)}
    assert bool(assembly.archives) == (covered == set(range(6)))
    for archive in assembly.archives:
        pieces = plan(archive, offset, size, lambda j, leaf: leaf in cached, never)
        position = offset
        for piece_job, start, length in pieces:
            assert piece_job.range_start + start == position
            assert start >= 0 and start + length <= piece_job.size and length > 0
            position += length
        assert position == max(offset, min(offset + size, SIZE))
