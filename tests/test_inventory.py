"""Inventory parsing: Glacier's JSON and CSV, streamed in bounded memory."""

from __future__ import annotations

import io
import json
import random
import time
import tracemalloc
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glacierfs.errors import InventoryError
from glacierfs.inventory import Entry, parse

HEADER = "ArchiveId,ArchiveDescription,CreationDate,Size,SHA256TreeHash"
DATE = "2019-01-02T03:04:05Z"
HASH = "a" * 64


class Trickle(io.RawIOBase):
    """A stream whose reads return 1 to 7 bytes, whatever is asked."""

    def __init__(self, data: bytes, seed: int = 0) -> None:
        self._data, self._pos = data, 0
        self._random = random.Random(seed)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = min(self._random.randint(1, 7), len(buffer))
        chunk = self._data[self._pos : self._pos + n]
        buffer[: len(chunk)] = chunk
        self._pos += len(chunk)
        return len(chunk)


class Generated(io.RawIOBase):
    """A stream over bytes made on demand by a generator, never held whole."""

    def __init__(self, pieces: Iterator[bytes]) -> None:
        self._pieces, self._pending = pieces, bytearray()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while len(self._pending) < len(buffer):
            piece = next(self._pieces, b"")
            if not piece:
                break
            self._pending += piece
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        del self._pending[:size]
        return size


def entry_json(entry: Entry) -> dict[str, object]:
    return {
        "ArchiveId": entry.archive_id,
        "ArchiveDescription": entry.description,
        "CreationDate": entry.creation_date,
        "Size": entry.size,
        "SHA256TreeHash": entry.tree_hash,
    }


def inventory_json(
    entries: list[Entry], archive_list_first: bool = False, indent: int | None = None
) -> bytes:
    head = {"VaultARN": "arn:aws:glacier:eu-west-1:1:vaults/v", "InventoryDate": DATE}
    body = {"ArchiveList": [entry_json(e) for e in entries]}
    document = {**body, **head} if archive_list_first else {**head, **body}
    return json.dumps(document, indent=indent, ensure_ascii=False).encode("utf-8")


def csv_field(text: str) -> str:
    """A field as Glacier writes it: quoted when it holds a comma or a quote."""
    if "," in text or '"' in text or "\n" in text:
        return '"' + text.replace('"', '\\"') + '"'
    return text


def inventory_csv(entries: list[Entry], newline: str = "\n") -> bytes:
    lines = [HEADER] + [
        ",".join(
            [e.archive_id, csv_field(e.description), e.creation_date, str(e.size), e.tree_hash]
        )
        for e in entries
    ]
    return (newline.join(lines) + newline).encode("utf-8")


def entries(*descriptions: str) -> list[Entry]:
    return [Entry(f"id{i}", d, DATE, i * 10, HASH) for i, d in enumerate(descriptions)]


def parsed(data: bytes, fmt: str | None = None) -> list[Entry]:
    return list(parse(io.BytesIO(data), fmt))


# CSV


def test_csv_spec_example_escaped_quote() -> None:
    data = f'{HEADER}\nid,"my archive description,1\\"2",{DATE},5,{HASH}\n'.encode()
    assert parsed(data)[0].description == 'my archive description,1"2'


def test_csv_spec_example_backslash_before_escaped_quote() -> None:
    data = f'{HEADER}\nid,"my archive description,1\\\\"2",{DATE},5,{HASH}\n'.encode()
    assert parsed(data)[0].description == 'my archive description,1\\"2'


def test_csv_backslash_alone_is_literal() -> None:
    data = f'{HEADER}\nid,"a\\b,c",{DATE},5,{HASH}\nid2,C:\\dir\\f,{DATE},6,{HASH}\n'.encode()
    assert [e.description for e in parsed(data)] == ["a\\b,c", "C:\\dir\\f"]


def test_csv_quoted_field_ending_in_backslash_is_read_again() -> None:
    data = f'{HEADER}\nid,"a,b\\",{DATE},5,{HASH}\nid2,"x,y",{DATE},6,{HASH}\n'.encode()
    assert [e.description for e in parsed(data)] == ["a,b\\", "x,y"]
    tricky = f'{HEADER}\nid,"a\\",b\\",{DATE},5,{HASH}\n'.encode()  # text: a",b\
    assert [e.description for e in parsed(tricky)] == ['a",b\\']


def test_csv_quoted_newline_and_commas() -> None:
    data = f'{HEADER}\nid,"two\nlines, and, commas",{DATE},5,{HASH}\nid2,x,{DATE},6,{HASH}\n'
    result = parsed(data.encode())
    assert [e.description for e in result] == ["two\nlines, and, commas", "x"]
    assert result[1].size == 6


def test_csv_empty_description_and_quoted_empty() -> None:
    data = f'{HEADER}\nid,,{DATE},5,{HASH}\nid2,"",{DATE},6,{HASH}\n'.encode()
    assert [e.description for e in parsed(data)] == ["", ""]


def test_csv_crlf_and_no_final_newline() -> None:
    data = f'{HEADER}\r\nid,"a,b",{DATE},5,{HASH}\r\nid2,plain,{DATE},6,{HASH}'.encode()
    assert parsed(data) == [
        Entry("id", "a,b", DATE, 5, HASH),
        Entry("id2", "plain", DATE, 6, HASH),
    ]


def test_csv_columns_in_any_order_by_header() -> None:
    data = (
        f'Size,SHA256TreeHash,ArchiveId,CreationDate,ArchiveDescription\n7,{HASH},id,{DATE},"d,e"\n'
    )
    assert parsed(data.encode()) == [Entry("id", "d,e", DATE, 7, HASH)]


def test_csv_blank_lines_are_skipped_and_bom_accepted() -> None:
    data = b"\xef\xbb\xbf" + f"{HEADER}\n\nid,d,{DATE},5,{HASH}\n\r\n".encode()
    assert parsed(data) == [Entry("id", "d", DATE, 5, HASH)]


def test_csv_header_only_yields_nothing() -> None:
    assert parsed(f"{HEADER}\n".encode()) == []


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (f'id,"never closed,{DATE},5,{HASH}\n', "line 2"),
        (f"id,d,{DATE},5\n", "line 2"),
        (f"id,d,{DATE},5,{HASH},extra\n", "line 2"),
        (f"id,d,{DATE},five,{HASH}\n", "line 2"),
        (f"id,d,{DATE},-5,{HASH}\n", "line 2"),
        (f'id,"d"x,{DATE},5,{HASH}\n', "line 2"),
        (f"id,d,{DATE},5,{HASH}\nid,d,{DATE},5\n", "line 3"),
    ],
)
def test_csv_malformed_records_raise_with_line(body: str, where: str) -> None:
    with pytest.raises(InventoryError, match=where):
        parsed(f"{HEADER}\n{body}".encode(), "CSV")


def test_csv_missing_header_column_raises() -> None:
    with pytest.raises(InventoryError, match="SHA256TreeHash"):
        parsed(f"ArchiveId,ArchiveDescription,CreationDate,Size\nid,d,{DATE},5\n".encode())


def test_csv_empty_inventory_raises() -> None:
    with pytest.raises(InventoryError, match="empty"):
        parsed(b"", "CSV")


def test_csv_not_utf8_raises() -> None:
    with pytest.raises(InventoryError, match="UTF-8"):
        parsed(f"{HEADER}\nid,\xe9,{DATE},5,{HASH}\n".encode("latin-1"))


# JSON


def test_json_basic_and_unicode() -> None:
    expected = entries("photos/été.jpg", "", 'quote " and \\ backslash', "a\nb")
    assert parsed(inventory_json(expected)) == expected


@pytest.mark.parametrize("archive_list_first", [False, True])
@pytest.mark.parametrize("indent", [None, 0, 4])
def test_json_key_order_and_whitespace(archive_list_first: bool, indent: int | None) -> None:
    expected = entries("a", "b/c", "d")
    data = inventory_json(expected, archive_list_first, indent)
    assert parsed(data) == expected
    assert parsed(b" \r\n\t" + data + b"\n\n", "json") == expected


def test_json_empty_archive_list_yields_nothing() -> None:
    assert parsed(b'{"VaultARN": "x", "ArchiveList": [ ], "InventoryDate": "y"}') == []


def test_json_unknown_keys_of_any_shape_are_skipped() -> None:
    data = (
        b'{"Other": {"nested": [1, 2, {"a": null}]}, "N": 12345, "T": true,'
        b' "ArchiveList": [{"ArchiveId": "a", "ArchiveDescription": "", "Extra": [1],'
        b' "CreationDate": "c", "Size": 0, "SHA256TreeHash": "h"}], "Z": -1.5e3}'
    )
    assert parsed(data) == [Entry("a", "", "c", 0, "h")]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b'{"VaultARN": "x"}', "no ArchiveList"),
        (b"[]", "JSON object"),
        (b'{"ArchiveList": {}}', "array"),
        (b'{"ArchiveList": [1]}', "entry 1"),
        (b'{"ArchiveList": [{"ArchiveId": "a"}]}', "entry 1: no"),
        (b'{"ArchiveList": [{"ArchiveId": "a"', "entry 1"),
        (b'{"ArchiveList": [', "character"),
        (b'{"ArchiveList": [] "x": 1}', "expected"),
        (b'{"ArchiveList": []} trailing', "after the inventory"),
        (b'{"ArchiveList": [], "N": 12', "character"),
        (b'{"ArchiveList": [], "N": tru}', "the value of N"),
        (b'{"ArchiveList": [], 5: 1}', "key"),
        (b'{"ArchiveList": [{"ArchiveId": "a", "A', "entry 1"),
    ],
)
def test_json_malformed_raises(data: bytes, match: str) -> None:
    with pytest.raises(InventoryError, match=match):
        parsed(data, "JSON")
    with pytest.raises(InventoryError, match=match):
        list(parse(Trickle(data), "JSON"))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("Size", "12"),
        ("Size", 1.5),
        ("Size", True),
        ("ArchiveId", 5),
        ("ArchiveDescription", None),
        ("SHA256TreeHash", ["x"]),
    ],
)
def test_json_wrong_types_raise_with_entry_number(field: str, value: object) -> None:
    good = entry_json(entries("ok")[0])
    bad = {**good, field: value}
    data = json.dumps({"ArchiveList": [good, good, bad]}).encode()
    with pytest.raises(InventoryError, match="entry 3"):
        parsed(data)


def test_a_negative_size_is_one_bad_entry_for_its_user_to_refuse_not_a_bad_inventory() -> None:
    good = entry_json(entries("ok")[0])
    data = json.dumps({"ArchiveList": [good, {**good, "Size": -1}]}).encode()
    assert [e.size for e in parsed(data)] == [good["Size"], -1]


def test_json_huge_number_raises_inventory_error() -> None:
    with pytest.raises(InventoryError):
        parsed(b'{"ArchiveList": [], "N": ' + b"9" * 5000 + b"}")


# Streaming, chunk boundaries, sniffing


@pytest.mark.parametrize("seed", range(5))
def test_one_to_seven_byte_reads_with_multibyte_characters(seed: int) -> None:
    expected = entries("photos/été/日本語.jpg", "emoji 😀,with comma", 'q"uote\\', "")
    for data, fmt in [(inventory_json(expected), "JSON"), (inventory_csv(expected), "CSV")]:
        assert list(parse(Trickle(data, seed))) == expected
        assert list(parse(Trickle(data, seed), fmt)) == expected


def test_buffered_reader_over_trickle() -> None:
    expected = entries(*(f"dir/file {i}.txt" for i in range(50)))
    stream = io.BufferedReader(Trickle(inventory_json(expected)), 64)
    assert list(parse(stream, "JSON")) == expected


def test_sniffing_after_leading_whitespace_and_bom() -> None:
    expected = entries("a")
    assert parsed(b"\xef\xbb\xbf  \n" + inventory_json(expected)) == expected
    assert list(parse(Trickle(b"\xef\xbb\xbf \n" + inventory_csv(expected)))) == expected


def test_unknown_format_raises() -> None:
    with pytest.raises(InventoryError, match="XML"):
        parsed(b"{}", "XML")


def test_entries_come_before_the_stream_ends() -> None:
    def endless() -> Iterator[bytes]:
        yield b'{"ArchiveList": ['
        while True:
            yield (
                b'{"ArchiveId": "a", "ArchiveDescription": "d", "CreationDate": "c",'
                b' "Size": 1, "SHA256TreeHash": "h"},'
            )

    assert next(parse(Generated(endless()))) == Entry("a", "d", "c", 1, "h")


descriptions = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@settings(max_examples=150, deadline=None)
@given(st.lists(descriptions, max_size=8), st.integers(0, 1000))
def test_round_trip_of_any_descriptions(texts: list[str], seed: int) -> None:
    expected = entries(*texts)
    assert list(parse(Trickle(inventory_json(expected), seed))) == expected
    assert list(parse(Trickle(inventory_csv(expected, "\r\n"), seed), "CSV")) == expected


# Memory: a real bound, not a timing


def generated_inventory(count: int) -> Iterator[bytes]:
    yield b'{"VaultARN": "arn:aws:glacier:eu-west-1:1:vaults/v", "ArchiveList": ['
    for i in range(count):
        description = f"mt2 {'x' * 200}/{i}"
        item = {
            "ArchiveId": f"{i:0138d}",
            "ArchiveDescription": description,
            "CreationDate": DATE,
            "Size": i,
            "SHA256TreeHash": HASH,
        }
        yield (b"," if i else b"") + json.dumps(item).encode()
    yield b'], "InventoryDate": "2019-01-02T03:04:05Z"}'


def test_100k_entries_parse_in_bounded_memory() -> None:
    count = 100_000
    tracemalloc.start()
    try:
        started = time.perf_counter()
        seen = total = 0
        for entry in parse(Generated(generated_inventory(count))):
            seen += 1
            total += entry.size
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (seen, total) == (count, count * (count - 1) // 2)
    print(f"100k entries: {elapsed:.2f} s under tracemalloc, peak {peak / 1e6:.1f} MB")
    assert peak < 8_000_000


nasty = st.text(st.sampled_from(["\\", '"', ",", "a", "\n", "\r", " "]), max_size=12)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(nasty, max_size=5).filter(
        lambda texts: not any("\n" in t for t in texts) or not any(t.endswith("\\") for t in texts)
    )
)
def test_csv_round_trip_of_quotes_backslashes_and_commas(texts: list[str]) -> None:
    """Even a quoted field ending in a backslash (ambiguous) reads back as written.

    Not both in one inventory with quoted newlines (which Glacier's printable-ASCII
    descriptions never hold): a backslash before a quote then is truly ambiguous.
    """
    expected = entries(*texts)
    assert parsed(inventory_csv(expected), "CSV") == expected
