"""Safe names from hostile text, and unique paths for every file of the archives view."""

from __future__ import annotations

import random
import time
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glacierfs.names.safe import (
    MAX_DEPTH,
    MAX_NAME_BYTES,
    Wanted,
    assign_paths,
    safe_components,
    safe_name,
)


def is_safe(component: str) -> bool:
    return (
        component not in ("", ".", "..")
        and "/" not in component
        and "\0" not in component
        and len(component.encode("utf-8")) <= MAX_NAME_BYTES
        and not any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Cs") for c in component)
        and unicodedata.is_normalized("NFC", component)
    )


def check_layout(result: dict[str, tuple[str, ...]]) -> None:
    """Unique paths, none a directory of another, every component safe."""
    paths = list(result.values())
    assert len(set(paths)) == len(paths)
    directories = {path[:i] for path in paths for i in range(1, len(path))}
    assert not directories & set(paths)
    assert all(is_safe(c) for path in paths for c in path)


def wanted(key: str, *components: str, when: str = "1", tag: str | None = None) -> Wanted:
    return Wanted(key, ("archives", *components), (when, key), tag or f"TAG{key}XXXXXXXXXXXX")


# safe_name


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("photo.jpg", "photo.jpg"),
        ("a/b\\c", "a_b_c"),
        ("line\nbreak\r\ttab", "line_break__tab"),
        ("nul\0del\x7fc1\x85", "nul_del_c1_"),
        ("lone \ud800 surrogate", "lone _ surrogate"),
        ("invoice\u202efdp.exe", "invoice_fdp.exe"),
        ("\u2066isolated\u2069 \u2067r\u2068", "_isolated_ _r_"),
        ("zero\u200bwidth\ufeff", "zero_width_"),
        ("line\u2028para\u2029", "line_para_"),
        ("soft\u00adhyphen \U000e0041tag", "soft_hyphen _tag"),
        ("cafe\u0301", "caf\u00e9"),
        ("..", "default"),
        (".", "default"),
        ("", "default"),
        ("...", "..."),
        (".hidden", ".hidden"),
        (" ", " "),
    ],
)
def test_safe_name(text: str, expected: str) -> None:
    assert safe_name(text, "default") == expected


def test_nfc_and_nfd_forms_of_one_name_are_one_path_and_collide() -> None:
    composed, decomposed = "caf\u00e9.txt", "cafe\u0301.txt"
    result = assign_paths(
        [
            wanted("old", composed, when="1", tag="OLDARCHIVEID12345"),
            wanted("new", decomposed, when="2", tag="NEWARCHIVEID12345"),
        ]
    )
    assert result == {
        "old": ("archives", composed),
        "new": ("archives", "caf\u00e9~NEWARCHI.txt"),
    }


def test_safe_name_bad_default_is_made_safe() -> None:
    assert safe_name("", "..") == "_"
    assert safe_name("..", "a/b") == "a_b"


def test_safe_name_cuts_at_255_bytes_without_splitting_characters() -> None:
    for char in ["a", "é", "日", "😀"]:
        name = safe_name(char * 300, "x")
        assert len(name.encode("utf-8")) <= MAX_NAME_BYTES
        assert len(name.encode("utf-8")) > MAX_NAME_BYTES - 4
        assert set(name) == {char}


def test_safe_name_keeps_a_short_extension_when_cutting() -> None:
    name = safe_name("日" * 200 + ".jpeg", "x")
    assert name.endswith("日.jpeg") and len(name.encode()) <= MAX_NAME_BYTES
    label = safe_name("a" * 300 + ".range-100000000000-999999999999", "x")
    assert label.endswith("a.range-100000000000-999999999999") and len(label.encode()) == 255
    long_extension = safe_name("a" * 300 + "." + "b" * 40, "x")
    assert long_extension == "a" * MAX_NAME_BYTES


@given(st.text(max_size=400), st.text(max_size=20))
def test_safe_name_is_always_safe(text: str, default: str) -> None:
    name = safe_name(text, default)
    assert is_safe(name)
    name.encode("utf-8")  # no lone surrogate left


# safe_components


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("../../etc/passwd", ("etc", "passwd")),
        ("/abs/path", ("abs", "path")),
        ("a/./b//c", ("a", "b", "c")),
        ("a/../b", ("a", "b")),
        ("C:\\Users\\me\\f.txt", ("C:", "Users", "me", "f.txt")),
        ("dir/with\nnewline", ("dir", "with_newline")),
        ("", ()),
        ("/./../", ()),
    ],
)
def test_safe_components(path: str, expected: tuple[str, ...]) -> None:
    assert safe_components(path) == expected


def test_safe_components_of_2000_byte_paths() -> None:
    assert safe_components("x" * 2000) == ("x" * MAX_NAME_BYTES,)
    deep = "/".join(f"d{i}" for i in range(500)) + "/file.txt"
    parts = safe_components(deep)
    assert len(parts) == MAX_DEPTH
    assert parts[0] == "d0" and parts[-2] == f"d{MAX_DEPTH - 2}" and parts[-1] == "file.txt"


@given(st.text(max_size=600))
def test_safe_components_are_always_safe(path: str) -> None:
    parts = safe_components(path)
    assert len(parts) <= MAX_DEPTH and all(is_safe(p) for p in parts)


# assign_paths


def test_unique_names_are_kept() -> None:
    result = assign_paths([wanted("j1", "a", "x.jpg"), wanted("j2", "a", "y.jpg")])
    assert result == {"j1": ("archives", "a", "x.jpg"), "j2": ("archives", "a", "y.jpg")}


def test_same_path_oldest_keeps_the_name_others_get_the_tag() -> None:
    result = assign_paths(
        [
            wanted("new", "p", "img.jpg", when="2", tag="NEWARCHIVEID12345"),
            wanted("old", "p", "img.jpg", when="1", tag="OLDARCHIVEID12345"),
        ]
    )
    assert result == {
        "old": ("archives", "p", "img.jpg"),
        "new": ("archives", "p", "img~NEWARCHI.jpg"),
    }


def test_directory_beats_file_of_the_same_path() -> None:
    result = assign_paths(
        [wanted("file", "photos", when="0", tag="FILETAG123"), wanted("inner", "photos", "x")]
    )
    assert result == {"inner": ("archives", "photos", "x"), "file": ("archives", "photos~FILETAG1")}
    check_layout(result)


def test_suffix_never_lands_on_a_taken_name() -> None:
    result = assign_paths(
        [
            wanted("a", "f.txt", when="1", tag="SAMETAGXYZ"),
            wanted("b", "f.txt", when="2", tag="SAMETAGXYZ"),
            wanted("c", "f.txt", when="3", tag="SAMETAGXYZ"),
            wanted("d", "f~SAMETAGX.txt", when="9", tag="OTHER"),
            wanted("e", "f~SAMETAGXYZ.txt", "inside", when="9"),
        ]
    )
    check_layout(result)
    assert result["a"] == ("archives", "f.txt")
    assert result["d"] == ("archives", "f~SAMETAGX.txt")
    assert result["b"][-1].startswith("f~SAMETAGX") and result["b"][-1].endswith(".txt")
    assert result["b"] != result["c"]


def test_suffixed_long_names_fit_255_bytes() -> None:
    long = "é" * 127 + ".tar"
    result = assign_paths([wanted("a", long, when="1"), wanted("b", long, when="2")])
    check_layout(result)
    assert result["b"][-1].endswith(".tar") and "~TAGb" in result["b"][-1]


def test_unsafe_or_empty_components_are_made_safe() -> None:
    result = assign_paths(
        [Wanted("k", ("archives", "..", "a/b"), ("1",), "t"), Wanted("e", (), ("1",), "tag")]
    )
    check_layout(result)
    assert result["k"] == ("archives", "_", "a_b")


def test_duplicate_keys_keep_one_claim_whatever_the_order() -> None:
    claims = [wanted("k", "a", when="2"), wanted("k", "b", when="1")]
    assert assign_paths(claims) == assign_paths(claims[::-1]) == {"k": ("archives", "b")}


names = st.sampled_from(["a", "b", "a.txt", "a~TAGX0000.txt", "..", "", "x/y", "é" * 130])
claims = st.lists(
    st.builds(
        lambda key, parts, when, tag: Wanted(key, ("archives", *parts), (when,), tag),
        st.text("kK0", min_size=1, max_size=4),
        st.lists(names, min_size=0, max_size=4).map(tuple),
        st.sampled_from(["1", "2", "3"]),
        st.sampled_from(["TAGX0000", "TAGX0000ZZ", "other", "", "!!"]),
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(claims, st.randoms(use_true_random=False))
def test_any_claims_get_a_consistent_layout_independent_of_order(
    claims: list[Wanted], shuffler: random.Random
) -> None:
    result = assign_paths(claims)
    assert set(result) == {w.key for w in claims}
    check_layout(result)
    shuffled = claims[:]
    shuffler.shuffle(shuffled)
    assert assign_paths(shuffled) == result


def test_a_million_files_in_a_few_seconds() -> None:
    claims = [
        Wanted(
            f"job{i:07d}",
            ("archives", f"dir{i % 1000}", f"sub{i % 7}", f"file{i % 400_000}.dat"),
            (f"{i:020d}", f"job{i:07d}"),
            f"ARCHIVE{i:07d}",
        )
        for i in range(1_000_000)
    ]
    started = time.perf_counter()
    result = assign_paths(claims)
    elapsed = time.perf_counter() - started
    print(f"assign_paths, 1M files: {elapsed:.2f} s")
    assert len(set(result.values())) == 1_000_000
    assert elapsed < 15
