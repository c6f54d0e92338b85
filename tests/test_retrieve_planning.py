"""The pure parts of `glacierfs retrieve`: names and selection, aligned pieces, daily caps,
prices and the plan."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glacierfs.emulator.outputs import is_tree_node
from glacierfs.errors import BadResponse
from glacierfs.intervals import of_leaves
from glacierfs.inventory import Entry
from glacierfs.retrieve.coverage import Holding, live_job, live_jobs
from glacierfs.retrieve.follow import Progress, render_summary
from glacierfs.retrieve.pacing import (
    DAY,
    Limits,
    Requested,
    aligned_pieces,
    block_leaves,
    take_batch,
    units_for,
    used,
)
from glacierfs.retrieve.plan import make_plan, plan_document, render_plan
from glacierfs.retrieve.pricing import PRICES, cost, price
from glacierfs.retrieve.selection import (
    Archive,
    Criteria,
    glob_regex,
    name_archives,
    older_versions,
    parse_date,
    select,
    shard_of,
)

MIB = 1 << 20
HASH = "ab" * 32


def mt2(path: str) -> str:
    text = json.dumps({"filename": path, "mtime": "20190704T120000Z"}).encode()
    return "mt2 " + base64.urlsafe_b64encode(text).decode().rstrip("=")


def fastglacier(path: str) -> str:
    return f"<m><v>4</v><p>{base64.b64encode(path.encode()).decode()}</p></m>"


def entry(archive_id: str, description: str, size: int = 10, created: str = "2020-01-01") -> Entry:
    return Entry(archive_id, description, created + "T00:00:00Z", size, HASH)


def archive(size: int, archive_id: str = "A", path: str = "f") -> Archive:
    return Archive(archive_id, size, HASH, 0.0, "", path)


# names and selection


def test_archives_are_named_by_their_decoded_descriptions_as_the_mount_names_them() -> None:
    archives = name_archives(
        [
            entry("id1", mt2("photos/2019/a.jpg")),
            entry("id2", fastglacier("docs/taxes 2020.pdf")),
            entry("id3", "notes.txt"),
            entry("id4", fastglacier("a/dir/")),  # a directory marker: named by its id
            entry("id5", "../../etc/passwd"),
        ]
    )
    assert {a.archive_id: a.path for a in archives} == {
        "id1": "photos/2019/a.jpg",
        "id2": "docs/taxes 2020.pdf",
        "id3": "notes.txt",
        "id4": "id4",
        "id5": "etc/passwd",
    }


def test_the_newest_version_keeps_a_contested_name_and_older_ones_are_named_by_date() -> None:
    archives = name_archives(
        [entry("NEWERxxxxxx", "same.txt", created="2021-01-01"), entry("OLDERyyyyyy", "same.txt")]
    )
    assert {a.archive_id: (a.path, a.latest) for a in archives} == {
        "NEWERxxxxxx": ("same.txt", True),
        "OLDERyyyyyy": ("same~20200101T000000Z.txt", False),
    }


def test_latest_selects_the_newest_version_of_each_path_and_counts_the_rest() -> None:
    archives = name_archives(
        [
            entry("V2019", "docs/a.txt", 5, "2019-01-01"),
            entry("V2021", "docs/a.txt", 7, "2021-01-01"),
            entry("V2020", "docs/a.txt", 11, "2020-01-01"),
            entry("ONLY", "docs/b.txt", 13),
        ]
    )
    latest = Criteria(everything=True, latest=True)
    assert [a.archive_id for a in select(archives, latest)] == ["V2021", "ONLY"]
    older = older_versions(archives, latest)
    assert sorted(a.archive_id for a in older) == ["V2019", "V2020"]
    assert older_versions(archives, Criteria(everything=True)) == []
    plan = make_plan([], [], Limits(MIB), price("Bulk"), 0.0)
    plan.older_versions, plan.older_bytes = len(older), sum(a.size for a in older)
    assert "--latest left out 2 older versions (16 B)" in "\n".join(render_plan(plan, "v"))


@pytest.mark.parametrize(
    ("pattern", "matches", "misses"),
    [
        ("photos/2019/**", ["photos/2019/a.jpg", "photos/2019/x/y.jpg"], ["photos/2020/a.jpg"]),
        ("*.jpg", ["a.jpg"], ["photos/a.jpg", "a.jpeg"]),
        ("**/*.jpg", ["a.jpg", "photos/a.jpg", "p/q/r.jpg"], ["a.png"]),
        ("photos", ["photos/a.jpg", "photos"], ["photosx/a.jpg"]),
        ("photos/201[89]/*", ["photos/2018/a", "photos/2019/b"], ["photos/2017/a"]),
        ("img_00?.jpg", ["img_001.jpg"], ["img_0001.jpg", "img_00/.jpg"]),
        ("[!a]*", ["b"], ["a"]),
        ("a+b (1).txt", ["a+b (1).txt"], ["aab (1).txt"]),
    ],
)
def test_glob_patterns_match_paths_as_a_shell_would(
    pattern: str, matches: list[str], misses: list[str]
) -> None:
    regex = glob_regex(pattern)
    assert all(regex.fullmatch(p) for p in matches)
    assert not any(regex.fullmatch(p) for p in misses)


segment = st.text(alphabet="abc.-_ ", min_size=1, max_size=5)


@given(st.lists(segment, min_size=2, max_size=4))
def test_a_star_never_crosses_a_directory_and_two_stars_do(parts: list[str]) -> None:
    path = "/".join(parts)
    assert glob_regex("/".join("*" * len(parts))).fullmatch(path)
    assert not glob_regex("/".join("*" * (len(parts) + 1))).fullmatch(path)
    assert glob_regex("**").fullmatch(path)
    assert glob_regex(f"{parts[0]}/**").fullmatch(path)


@settings(max_examples=50)
@given(st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=60, unique=True))
def test_shards_partition_the_selection_exactly(ids: list[str]) -> None:
    archives = [Archive(i, 1, HASH, 0.0, "", i) for i in ids]
    for count in (1, 2, 3, 7):
        shards = [
            select(archives, Criteria(everything=True, shard=(k, count))) for k in range(count)
        ]
        chosen = [a.archive_id for shard in shards for a in shard]
        assert sorted(chosen) == sorted(ids)  # every archive once, in exactly one shard
        assert all(shard_of(i, count) == shard_of(i, count) for i in ids)


def test_criteria_filter_by_ids_sizes_and_dates() -> None:
    archives = name_archives(
        [
            entry("small", "s.txt", 5, "2018-06-01"),
            entry("mid", "m.txt", 500, "2019-06-01"),
            entry("big", "b.txt", 5000, "2020-06-01"),
        ]
    )

    def chosen(**kwargs: Any) -> list[str]:
        return sorted(a.archive_id for a in select(archives, Criteria(**kwargs)))

    assert chosen() == []
    assert chosen(archive_ids=["mid"]) == ["mid"]
    assert chosen(everything=True, min_size=500) == ["big", "mid"]
    assert chosen(everything=True, max_size=500) == ["mid", "small"]
    assert chosen(everything=True, created_after=parse_date("2019-01-01")) == ["big", "mid"]
    assert chosen(everything=True, created_before=parse_date("2019-06-01")) == ["small"]
    assert chosen(patterns=["?.txt"], min_size=10) == ["big", "mid"]


def test_bad_dates_are_refused() -> None:
    with pytest.raises(ValueError, match="not a date"):
        parse_date("last tuesday")


# pieces and caps


@settings(max_examples=300)
@given(
    st.integers(1, 300),
    st.integers(0, 8).map(lambda k: 1 << k),
    st.data(),
)
def test_pieces_are_contiguous_tree_nodes_within_the_block(
    leaves: int, block: int, data: st.DataObject
) -> None:
    first = data.draw(st.integers(0, leaves - 1))
    stop = data.draw(st.integers(first + 1, leaves))
    size = (leaves - 1) * MIB + data.draw(st.integers(1, MIB))
    pieces = aligned_pieces(first, stop, leaves, block)
    position = first
    for leaf, count in pieces:
        assert leaf == position and 1 <= count <= block
        start, end = leaf * MIB, min((leaf + count) * MIB, size)
        assert is_tree_node(start, end, size), (leaf, count, leaves)
        position += count
    assert position == stop


def test_archive_within_the_cap_is_one_whole_job_and_a_larger_one_aligned_ranges() -> None:
    small = archive(3 * MIB + 5)
    assert [(u.start, u.end, u.whole) for u in units_for(small, set(), 4 * MIB)] == [
        (0, 3 * MIB + 4, True)
    ]
    big = archive(10 * MIB + 7)
    units = units_for(big, set(), 3 * MIB)  # a day's cap of 3 MiB: pieces of 2 MiB
    assert block_leaves(3 * MIB) == 2
    assert [(u.start, u.end) for u in units] == [
        (0, 2 * MIB - 1),
        (2 * MIB, 4 * MIB - 1),
        (4 * MIB, 6 * MIB - 1),
        (6 * MIB, 8 * MIB - 1),
        (8 * MIB, 10 * MIB - 1),
        (10 * MIB, 10 * MIB + 6),
    ]
    assert not any(u.whole for u in units) and sum(u.size for u in units) == big.size


def test_only_the_gaps_of_a_partly_held_archive_are_requested() -> None:
    held = archive(8 * MIB)
    units = units_for(held, of_leaves({0, 1, 2, 5}), 100 * MIB)
    assert [(u.start // MIB, u.size // MIB) for u in units] == [(3, 1), (4, 1), (6, 2)]
    assert units_for(held, [(0, 8)], 100 * MIB) == []


def test_a_batch_stays_within_the_day_and_the_jobs_and_stops_at_the_first_misfit() -> None:
    units = [
        u
        for size in (3, 3, 5, 1)
        for u in units_for(archive(size * MIB, f"a{size}-{id(object())}"), set(), 10 * MIB)
    ]
    history = [Requested(1000.0, 2 * MIB), Requested(1000.0 - DAY - 5, 50 * MIB)]
    assert used(history, 1000.0) == 2 * MIB
    batch = take_batch(units, history, 0, 1000.0, Limits(10 * MIB))
    assert [u.size // MIB for u in batch] == [3, 3]  # 2 + 3 + 3 = 8; 5 more would pass 10
    assert len(take_batch(units, [], 2, 1000.0, Limits(100 * MIB, max_jobs=3))) == 1
    later = take_batch(units, history, 0, 1000.0 + DAY + 2, Limits(10 * MIB))
    assert [u.size // MIB for u in later] == [3, 3]  # the old 2 MiB left the window


@settings(max_examples=100)
@given(st.lists(st.integers(1, 8), min_size=1, max_size=40), st.integers(8, 20))
def test_requests_paced_by_the_batch_never_pass_the_cap_in_any_24_hours(
    sizes: list[int], cap_mib: int
) -> None:
    units = [
        u
        for n, s in enumerate(sizes)
        for u in units_for(archive(s * MIB, str(n)), set(), cap_mib * MIB)
    ]
    history: list[Requested] = []
    now = 0.0
    while units:
        batch = take_batch(units, history, 0, now, Limits(cap_mib * MIB))
        history += [Requested(now, u.size) for u in batch]
        units = units[len(batch) :]
        now += 3600.0 * 5
    for first in history:
        window = sum(r.size for r in history if first.when <= r.when < first.when + DAY)
        assert window <= cap_mib * MIB


# prices and plans


PUBLISHED = {
    "Expedited": (0.03, 10.00),
    "Standard": (0.01, 0.05),
    "Bulk": (0.0025, 0.025),
}
"""Retrieval from S3 Glacier vaults, US East (N. Virginia), dollars per GB and per 1,000
requests, as AWS publishes them (aws.amazon.com/s3/glacier/pricing; Standard and
Expedited also in AWS's knowledge-center article on data retrieval costs): typed here by
hand, not read from the table under test. (Bulk restores from the S3 Glacier Flexible
Retrieval storage class are free; the vault API's Bulk is not.)"""


def test_the_price_table_is_the_published_one() -> None:
    assert {tier: (p.per_gb, p.per_thousand_requests) for tier, p in PRICES.items()} == PUBLISHED


def test_costs_follow_the_dated_table_and_its_overrides() -> None:
    gib, tib = 1 << 30, 1 << 40
    assert cost(PRICES["Bulk"], tib, 1000) == pytest.approx(2.56 + 0.025)
    assert cost(PRICES["Standard"], 100 * gib, 4000) == pytest.approx(1.00 + 0.20)
    assert cost(PRICES["Expedited"], 10 * gib, 100) == pytest.approx(0.30 + 1.00)
    assert cost(price("Bulk", per_gb=1.0, per_thousand=0.0), 2 * gib, 5) == pytest.approx(2.0)


def record(job_id: str, archive_id: str, status: str, size: int, rng: str | None = None) -> Any:
    return {
        "JobId": job_id,
        "Action": "ArchiveRetrieval",
        "ArchiveId": archive_id,
        "ArchiveSizeInBytes": size,
        "RetrievalByteRange": rng or f"0-{size - 1}",
        "StatusCode": status,
        "CreationDate": "2024-01-01T00:00:00.000Z",
        "CompletionDate": "2024-01-01T05:00:00.000Z" if status == "Succeeded" else None,
        "Tier": "Bulk",
    }


def test_live_jobs_are_read_from_records_and_anything_odd_covers_nothing() -> None:
    good = record("J", "A", "InProgress", 3 * MIB, f"{MIB}-{2 * MIB - 1}")
    job = live_job(good)
    assert job is not None and (job.start, job.end, job.leaves) == (MIB, 2 * MIB - 1, (1, 2))
    for other in ({**good, "StatusCode": "Failed"}, {**good, "Action": "InventoryRetrieval"}):
        assert live_job(other) is None
    unreadable = [
        {**good, "CreationDate": "yesterday"},
        {**good, "ArchiveSizeInBytes": "3"},
        {**good, "ArchiveSizeInBytes": True},
        {**good, "RetrievalByteRange": f"0-{3 * MIB}"},
        {**good, "JobId": "\x1b]0;title\x07\x1b[31mJ\nsaved: forged"},
        {**good, "ArchiveId": "A\n"},
        "not a record",
    ]
    for bad in unreadable:
        with pytest.raises(BadResponse):
            live_job(bad)
    refused: list[Any] = []
    found = live_jobs([good, {**good, "JobId": "K"}, *unreadable], lambda r, e: refused.append(r))
    assert list(found) == ["A"] and [j.job_id for j in found["A"]] == ["J", "K"]
    assert refused == unreadable
    empty = live_job(record("E", "A", "Succeeded", 0, "0--1"))
    assert empty is not None and (empty.start, empty.end, empty.leaves) == (0, -1, (0, 0))


def test_the_plan_skips_what_is_cached_or_covered_and_says_why() -> None:
    a = [archive(2 * MIB, f"id{n}", f"f{n}") for n in range(5)]
    jobs = live_jobs(
        [record("run", "id1", "InProgress", 2 * MIB), record("done", "id2", "Succeeded", 2 * MIB)]
    )
    holdings = [
        Holding(a[0], frozenset({0, 1}), ()),  # wholly cached
        Holding(a[1], frozenset(), tuple(jobs["id1"])),  # in progress
        Holding(a[2], frozenset({0}), tuple(jobs["id2"])),  # ready, half saved
        Holding(a[3], frozenset({1}), ()),  # half cached: its first leaf only
        Holding(a[4], frozenset(), ()),
        Holding(archive(0, "empty"), frozenset(), ()),
    ]
    plan = make_plan(holdings, [], Limits(MIB * 100), PRICES["Bulk"], 1e9)
    assert (plan.selected, plan.cached, plan.in_progress, plan.ready, plan.empty) == (6, 1, 1, 1, 1)
    assert [(u.archive.archive_id, u.size, u.whole) for u in plan.units] == [
        ("id3", MIB, False),
        ("id4", 2 * MIB, True),
    ]
    assert plan.batch == plan.units and plan.outstanding == 2
    document = plan_document(plan)
    assert (document["jobs"], document["bytes"], document["batch_jobs"]) == (2, 3 * MIB, 2)
    text = "\n".join(render_plan(plan, "photos"))
    assert "1 wholly cached" in text and "1 covered by jobs in progress" in text
    assert "2 Bulk jobs" in text and "$" in text and "prices of" in text
    assert "first 100 GB a month are free" in text and "--in-region" in text
    assert "data transfer out: none" in "\n".join(render_plan(plan, "photos", in_region=True))


def test_a_plan_with_nothing_to_request_says_so_and_promises_no_outputs() -> None:
    cached = Holding(archive(2 * MIB, "id0", "f0"), frozenset({0, 1}), ())
    plan = make_plan([cached], [], Limits(MIB * 100), PRICES["Bulk"], 1e9)
    text = "\n".join(render_plan(plan, "photos"))
    assert "1 archive selected" in text and "now: nothing to request" in text
    assert "outputs ready" not in text and "later:" not in text


# progress and summary


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_redraws_one_line_on_a_terminal_and_writes_lines_elsewhere() -> None:
    screen, log = Terminal(), io.StringIO()
    for out in (screen, log):
        progress = Progress(out)
        progress.status("saved 1/2 archives")
        progress.event("saved", "a.jpg: 10 bytes, verified=tree-hash")
        progress.status("saved 2/2 archives")
        progress.close()
    assert log.getvalue() == (
        "glacierfs retrieve: status: saved 1/2 archives\n"  # the first round's, at once
        "glacierfs retrieve: saved: a.jpg: 10 bytes, verified=tree-hash\n"
    )
    text = screen.getvalue()
    assert "\r\033[Ksaved 1/2 archives" in text and text.endswith("saved 2/2 archives\n")
    assert "\r\033[Ksaved: a.jpg" in text


def test_off_a_terminal_the_status_line_is_a_heartbeat_not_every_round() -> None:
    quiet, beating = io.StringIO(), io.StringIO()
    for out, heartbeat in ((quiet, 900.0), (beating, 1e-9)):
        progress = Progress(out, heartbeat=heartbeat)
        for n in range(3):
            progress.status(f"round {n}")
    assert quiet.getvalue().count("status: ") == 1
    assert beating.getvalue().count("status: ") == 3


def test_the_summary_says_what_became_of_every_archive_and_what_it_cost() -> None:
    line = render_summary(
        {
            "archives": 3,
            "bytes": 3 * MIB,
            "cached": 2,
            "verified": 2,
            "re_requested": 1,
            "failed": 1,
            "evicted": 0,
            "jobs": 4,
            "spent": 0.5,
        }
    )
    assert line == (
        "done: 3 archives, 3.0 MiB; 2 saved, 2 verified against their tree hash, "
        "1 re-requested, 1 failed; 4 jobs, about $0.5000 spent on retrieval"
    )
