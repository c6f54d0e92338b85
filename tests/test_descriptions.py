"""Archive descriptions: each upload tool's format, and anything else as plain text."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from glacierfs.names.decoders import DecodedName, decode_description, parse_mtime

STAMP = "20190102T030405Z"
WHEN = datetime(2019, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()


def mt2(filename: object, mtime: object = STAMP) -> str:
    text = json.dumps({"mtime": mtime, "filename": filename}, ensure_ascii=False)
    return "mt2 " + base64.urlsafe_b64encode(text.encode("utf-8")).decode().rstrip("=")


def mt1(filename: str, mtime: str = STAMP) -> str:
    text = json.dumps({"mtime": mtime, "filename": filename}, ensure_ascii=False)
    twice = text.encode("utf-8").decode("latin-1").encode("utf-8")
    return "mt1 " + base64.urlsafe_b64encode(twice).decode().rstrip("=")


def b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode()


def fastglacier(path: str, version: int = 4, lm: str = STAMP) -> str:
    return f"<m><v>{version}</v><p>{b64(path)}</p><lm>{lm}</lm></m>"


def cloudberry(path: str, modified: str = STAMP) -> str:
    utf7 = path.encode("utf-7").decode("ascii")
    return json.dumps({"Path": utf7, "UTCDateModified": modified, "Size": 12})


# mt-aws-glacier


def test_mt2_path_and_mtime() -> None:
    assert decode_description(mt2("photos/2019/été.jpg")) == DecodedName(
        "photos/2019/été.jpg", WHEN, False, "mt2"
    )


def test_mt1_double_encoded_utf8() -> None:
    assert decode_description(mt1("dir/日本語 ü.txt")) == DecodedName(
        "dir/日本語 ü.txt", WHEN, False, "mt1"
    )


def test_mt2_bad_mtime_keeps_the_path() -> None:
    for mtime in ["garbage", "20191302T030405Z", 12, None, "00000101T000000Z"]:
        decoded = decode_description(mt2("a/b", mtime))
        assert (decoded.path, decoded.mtime, decoded.fmt) == ("a/b", None, "mt2")


@pytest.mark.parametrize(
    "description",
    [
        "mt2 !!!not base64!!!",
        "mt2 " + base64.urlsafe_b64encode(b"\xff\xfe not utf-8").decode().rstrip("="),
        "mt2 " + base64.urlsafe_b64encode(b'{"filename": "a/b", "mti').decode().rstrip("="),
        "mt2 " + base64.urlsafe_b64encode(b'["a", "b"]').decode().rstrip("="),
        "mt2 " + base64.urlsafe_b64encode(b'{"mtime": "x"}').decode().rstrip("="),
        mt2(["not", "a", "string"]),
        mt2(12),
        "mt2 abcde",
        "mt2 ",
    ],
)
def test_mt_malformed_is_plain(description: str) -> None:
    assert decode_description(description) == DecodedName(description.strip(), None, False, "plain")


def test_mt2_prefix_needs_the_space() -> None:
    assert decode_description("mt2x").fmt == "plain"


# FastGlacier


@pytest.mark.parametrize("version", [2, 3, 4])
def test_fastglacier_versions(version: int) -> None:
    decoded = decode_description(fastglacier("/Backups/photos/img 1.jpg", version))
    assert decoded == DecodedName("/Backups/photos/img 1.jpg", WHEN, False, f"fastglacier{version}")


def test_fastglacier_directory_marker() -> None:
    decoded = decode_description(fastglacier("Backups/photos/"))
    assert decoded.is_directory and decoded.path == "Backups/photos/"


def test_fastglacier_extra_elements_and_whitespace() -> None:
    description = f"<m>\n <v>4</v>\n <p>{b64('a/b.txt')}</p>\n <lm>{STAMP}</lm><x>1</x></m>"
    assert decode_description(description).path == "a/b.txt"


def test_fastglacier_v1() -> None:
    description = f"<ArchiveMetadata><Path>{b64('docs/ä.pdf')}</Path></ArchiveMetadata>"
    assert decode_description(description) == DecodedName("docs/ä.pdf", None, False, "fastglacier1")
    with_time = description.replace("</Path>", f"</Path><LastModified>{STAMP}</LastModified>")
    assert decode_description(with_time).mtime == WHEN


def test_fastglacier_bad_lm_keeps_the_path() -> None:
    decoded = decode_description(fastglacier("a", lm="yesterday"))
    assert (decoded.path, decoded.mtime, decoded.fmt) == ("a", None, "fastglacier4")


@pytest.mark.parametrize(
    "description",
    [
        "<m><v>4</v><p>not base64 !</p></m>",
        "<m><v>4</v><p>" + base64.b64encode(b"\xff\xfe").decode() + "</p></m>",
        "<m><v>4</v></m>",
        f"<m><v>9</v><p>{b64('a')}</p></m>",
        f"<m><v>4</v><p>{b64('a')}</p>",
        "<m><v>4<p></m>",
        f"<other><p>{b64('a')}</p></other>",
        f"<m><v>4</v><p>{b64('a')}&undefined;</p></m>",
        '<!DOCTYPE m [<!ENTITY x "y">]><m><v>4</v><p>&x;</p></m>',
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]>'
        "<m><v>4</v><p>&lol2;</p></m>",
        "<m><v>4</v><p><![CDATA[YQ==]]></p></m>",
        "< not xml at all",
    ],
)
def test_fastglacier_malformed_or_hostile_is_plain(description: str) -> None:
    assert decode_description(description) == DecodedName(description, None, False, "plain")


# CloudBerry and QNAP


def test_cloudberry_utf7_path() -> None:
    path = "C:/Users/zoë/Документы/a+b.txt"
    assert decode_description(cloudberry(path)) == DecodedName(path, WHEN, False, "cloudberry")


@pytest.mark.parametrize(
    ("kind", "is_directory"), [("file", False), ("folder", True), ("dir", True), ("Folder", True)]
)
def test_qnap(kind: str, is_directory: bool) -> None:
    description = json.dumps({"path": "/share/photos", "type": kind})
    assert decode_description(description) == DecodedName(
        "/share/photos", None, is_directory, "qnap"
    )


@pytest.mark.parametrize(
    "description",
    [
        '{"Path": "a/b", "UTCDateModified": "2019',
        '{"Path": 12}',
        '{"Path": "caf\\u00e9"}',
        '{"Path": "+AGEAYgBj-bad+ZZZ"}',
        '{"path": ["a"]}',
        '{"path": "a", "type": 3}',
        '{"name": "a"}',
        "[1, 2]",
        "{" * 1000,
        '{"a":' * 200 + "1" + "}" * 200,
    ],
)
def test_json_malformed_is_plain(description: str) -> None:
    assert decode_description(description) == DecodedName(description, None, False, "plain")


# Plain


@pytest.mark.parametrize(
    ("description", "path"),
    [
        ("backup-2019.tar.gz", "backup-2019.tar.gz"),
        ("  spaced name  ", "spaced name"),
        ("../../etc/passwd", "../../etc/passwd"),
        ("", None),
        ("   ", None),
    ],
)
def test_plain(description: str, path: str | None) -> None:
    assert decode_description(description) == DecodedName(path, None, False, "plain")


def test_parse_mtime_variants() -> None:
    assert parse_mtime(STAMP) == WHEN
    assert parse_mtime("2019-01-02T03:04:05Z") == WHEN
    assert parse_mtime("20190102T030405.5Z") == WHEN + 0.5
    assert parse_mtime("19600101T000000Z") == datetime(1960, 1, 1, tzinfo=UTC).timestamp()
    assert parse_mtime("20190230T000000Z") is None
    assert parse_mtime("20190102T250405Z") is None
    assert parse_mtime(20190102) is None


@given(st.text(max_size=1024))
def test_any_text_decodes_without_raising(description: str) -> None:
    assert isinstance(decode_description(description), DecodedName)


@given(st.binary(max_size=300), st.sampled_from(["mt1 ", "mt2 "]))
def test_any_mt_payload_decodes_without_raising(payload: bytes, prefix: str) -> None:
    description = prefix + base64.urlsafe_b64encode(payload).decode().rstrip("=")
    assert isinstance(decode_description(description), DecodedName)


@given(st.binary(max_size=300), st.text(max_size=30))
def test_any_fastglacier_payload_decodes_without_raising(payload: bytes, lm: str) -> None:
    description = f"<m><v>4</v><p>{base64.b64encode(payload).decode()}</p><lm>{lm}</lm></m>"
    assert isinstance(decode_description(description), DecodedName)


@given(st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=100))
def test_mt2_and_fastglacier_round_trip(path: str) -> None:
    assert decode_description(mt2(path)).path == path
    assert decode_description(fastglacier(path)).path == path
