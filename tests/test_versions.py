"""Versions of one path: the newest keeps the plain name, older ones are named by date."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from glacierfs.names.known import KnownVersions
from glacierfs.names.safe import MAX_NAME_BYTES
from glacierfs.names.versions import Version, latest_keys, stamp, versioned


def at(year: int, month: int = 1, day: int = 1) -> float:
    return datetime(year, month, day, 12, 30, 5, tzinfo=UTC).timestamp()


def test_the_newest_keeps_the_plain_name_and_older_ones_are_dated() -> None:
    versions = [
        Version("A2019", ("docs", "a.txt"), created=at(2019)),
        Version("B2021", ("docs", "a.txt"), created=at(2021)),
        Version("C2020", ("docs", "a.txt"), created=at(2020)),
    ]
    assert versioned(versions) == {
        "B2021": ("docs", "a.txt"),
        "C2020": ("docs", "a~20200101T123005Z.txt"),
        "A2019": ("docs", "a~20190101T123005Z.txt"),
    }
    assert latest_keys(versions) == {"B2021"}


def test_the_uploaders_mtime_comes_before_the_creation_date() -> None:
    # Uploaded in 2021, but the file was last changed in 2018: the 2020 upload is newer.
    versions = [
        Version("late-upload", ("a",), mtime=at(2018), created=at(2021)),
        Version("early-upload", ("a",), created=at(2020)),
    ]
    assert versioned(versions) == {"early-upload": ("a",), "late-upload": ("a~20180101T123005Z",)}


def test_an_archive_id_tag_is_added_only_where_dates_tie() -> None:
    versions = [
        Version("AAAAAAAAAAAA1", ("a.txt",), created=at(2019)),
        Version("BBBBBBBBBBBB2", ("a.txt",), created=at(2019)),
        Version("CCCCCCCCCCCC3", ("a.txt",), created=at(2020)),
        Version("DDDDDDDDDDDD4", ("a.txt",), created=at(2022)),
    ]
    assert versioned(versions) == {
        "DDDDDDDDDDDD4": ("a.txt",),
        "CCCCCCCCCCCC3": ("a~20200101T123005Z.txt",),
        "AAAAAAAAAAAA1": ("a~20190101T123005Z-AAAAAAAA.txt",),
        "BBBBBBBBBBBB2": ("a~20190101T123005Z-BBBBBBBB.txt",),
    }


def test_a_version_without_any_date_is_older_and_named_by_its_archive_id() -> None:
    versions = [Version("nodate-archive", ("a.txt",)), Version("dated", ("a.txt",), mtime=0.0)]
    assert versioned(versions) == {"dated": ("a.txt",), "nodate-archive": ("a~nodate-a.txt",)}


def test_an_absurd_date_is_no_date() -> None:
    assert stamp(1e300) is None
    assert stamp(-1e300) is None
    assert stamp(0.0) == "19700101T000000Z"


def test_a_long_name_is_cut_to_fit_with_its_date() -> None:
    long = "x" * 250 + ".tar.gz"
    result = versioned([Version("a", (long,), created=at(2019)), Version("b", (long,))])
    older = result["b"][0]
    assert len(older.encode()) <= MAX_NAME_BYTES and older.endswith("~b.gz")


versions_strategy = st.lists(
    st.builds(
        Version,
        st.text("ABCDEFGH", min_size=1, max_size=3),
        st.sampled_from([("a.txt",), ("d", "a.txt"), ("b",), ()]),
        st.one_of(st.none(), st.sampled_from([0.0, 1.0, 86400.0, 1.5e9])),
        st.one_of(st.none(), st.sampled_from([0.0, 2.0, 1.5e9])),
    ),
    max_size=12,
    unique_by=lambda v: v.key,
)


@given(versions_strategy)
def test_names_are_unique_per_path_and_independent_of_order(versions: list[Version]) -> None:
    result = versioned(versions)
    shuffled = list(versions)
    random.Random(len(versions)).shuffle(shuffled)
    assert versioned(shuffled) == result
    assert latest_keys(shuffled) == latest_keys(versions)
    assert set(result) == {v.key for v in versions}
    named = [result[v.key] for v in versions if v.components]
    assert len(set(named)) == len(named)
    for path in {v.components for v in versions if v.components}:
        group = [v for v in versions if v.components == path]
        plain = [v for v in group if result[v.key] == path]
        assert len(plain) == 1  # exactly one version keeps the plain name
        assert plain[0].key in latest_keys(versions)
        assert all(v.rank() <= plain[0].rank() for v in group)


def test_a_mount_names_by_the_inventorys_versions_and_keeps_them_across_mounts() -> None:
    known = KnownVersions()
    path = ("docs", "a.txt")
    known.claim(Version("OLD", path, mtime=at(2019)))  # the only version with a job
    assert known.name("OLD", path) == path and not known.settled(path)
    assert known.unscanned() == {path}
    scan = {path: [Version("OLD", path, at(2019), at(2019)), Version("NEW", path, None, at(2021))]}
    known.add_scan({path}, scan)
    assert known.name("OLD", path) == ("docs", "a~20190101T123005Z.txt") and known.settled(path)
    assert known.unscanned() == set()
    remount = KnownVersions()
    remount.load(json.loads(json.dumps(known.saved())))
    remount.claim(Version("OLD", path, mtime=at(2019)))
    assert remount.name("OLD", path) == ("docs", "a~20190101T123005Z.txt")
    assert remount.unscanned() == set()
    broken = KnownVersions()
    broken.load([[["x"], [["id", "not a date", None]]], "junk", None])
    assert broken.saved() == []  # malformed: looked for again
