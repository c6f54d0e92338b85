"""Vault inventories (JSON or CSV), parsed as a stream of archive entries.

An inventory can list millions of archives and weigh hundreds of MB, so it is never
read whole: the stream is read in chunks (:data:`CHUNK_SIZE`), decoded as UTF-8
incrementally, and entries are yielded as soon as they are complete. Memory stays
at a few chunks whatever the size of the inventory.

JSON: the top-level object is walked key by key (in any order); each value, and
each entry of ``ArchiveList``, is read with ``json.JSONDecoder.raw_decode`` from
the buffer, which is refilled when a value runs past its end.

CSV: Glacier's quoting is not RFC 4180. A field may be in double quotes; inside
them ``\\"`` is a quote and any other backslash is itself, so ``"a,1\\"2"`` is
``a,1"2`` and ``"a,1\\\\"2"`` is ``a,1\\"2``. A quoted field may span lines. As
backslashes are not escaped, a quoted field that ends in a backslash (``"a,b\\"``)
is ambiguous: a record that does not parse with every ``\\"`` as a quote is read
again with one ``\\"`` before a comma or the record's end taken as backslash and
closing quote, the first that gives a record of the header's shape (with
one-line records, as Glacier's printable-ASCII descriptions make them, only one can).

Anything malformed raises :class:`InventoryError`, saying where.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from glacierfs.errors import InventoryError

CHUNK_SIZE = 1 << 20
"""Bytes asked of the stream at a time: few calls, and memory of a few MB."""

MAX_VALUE_CHARS = 16 << 20
"""A JSON value this long is malformed (an entry is ~1.5 KB): stop before memory goes."""

MAX_RECORD_CHARS = 64 << 10
"""A CSV record (or line) this long is malformed (a description is 1,024 characters)."""

FIELDS = ("ArchiveId", "ArchiveDescription", "CreationDate", "Size", "SHA256TreeHash")

_WHITESPACE = re.compile(r"[ \t\n\r]*")
_SIZE = re.compile(r"[0-9]{1,20}")
_QUOTED_RUN = re.compile(r'[^"\\]+')


@dataclass(frozen=True, slots=True)
class Entry:
    """One archive of an inventory."""

    archive_id: str
    description: str
    creation_date: str
    size: int
    tree_hash: str


def parse(stream: BinaryIO, fmt: str | None = None) -> Iterator[Entry]:
    """The archives of an inventory, as they are read; ``fmt`` None sniffs JSON or CSV."""
    head = b""
    if fmt is None:
        fmt, head = _sniff(stream)
    text = _Text(stream, head)
    if fmt.upper() == "JSON":
        yield from _parse_json(_JsonReader(text))
    elif fmt.upper() == "CSV":
        yield from _parse_csv(_Lines(text))
    else:
        raise InventoryError(f"unknown inventory format {fmt!r}")


def _sniff(stream: BinaryIO) -> tuple[str, bytes]:
    """JSON when the first byte that is not whitespace is ``{``, else CSV; and the bytes read."""
    head = b""
    while data := stream.read(CHUNK_SIZE):
        head += data
        if codecs.BOM_UTF8.startswith(head):
            continue
        if head.removeprefix(codecs.BOM_UTF8).lstrip():
            break
    return ("JSON" if head.removeprefix(codecs.BOM_UTF8).lstrip()[:1] == b"{" else "CSV"), head


class _Text:
    """A binary stream as text, one chunk at a time."""

    def __init__(self, stream: BinaryIO, head: bytes) -> None:
        self._stream, self._head = stream, head
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self.eof = False

    def read(self, size: int = CHUNK_SIZE) -> str:
        """The next text, ``""`` only at the end."""
        while not self.eof:
            data, self._head = self._head or self._stream.read(size) or b"", b""
            self.eof = not data
            try:
                text = self._decoder.decode(data, final=self.eof)
            except UnicodeDecodeError as error:
                raise InventoryError(f"inventory is not UTF-8: {error.reason}") from None
            if text:
                return text
        return ""


# JSON: a reader of values from a refilled buffer, then the document's shape.
class _JsonReader:
    """Whitespace, punctuation and whole values, out of a buffer refilled on demand."""

    def __init__(self, text: _Text) -> None:
        self._text = text
        self._buffer, self._pos, self._base = "", 0, 0
        self._decoder = json.JSONDecoder()

    def _more(self) -> bool:
        """Append the next chunk to what is left of the buffer; False at the end."""
        left = len(self._buffer) - self._pos
        if left > MAX_VALUE_CHARS:
            raise InventoryError(f"inventory JSON at {self.where()}: a value is too long")
        text = self._text.read(max(CHUNK_SIZE, left))  # doubling: linear on long values
        if not text:
            return False
        self._base += self._pos
        self._buffer, self._pos = self._buffer[self._pos :] + text, 0
        return True

    def where(self) -> str:
        return f"character {self._base + self._pos}"

    def peek(self) -> str:
        """The next character that is not whitespace, ``""`` at the end."""
        while True:
            match = _WHITESPACE.match(self._buffer, self._pos)
            self._pos = match.end() if match else self._pos
            if self._pos < len(self._buffer):
                return self._buffer[self._pos]
            if not self._more():
                return ""

    def expect(self, allowed: str, what: str) -> str:
        """Consume the next character, one of ``allowed``."""
        char = self.peek()
        if not char or char not in allowed:
            found = repr(char) if char else "the end"
            raise InventoryError(f"inventory JSON at {self.where()}: {what}, found {found}")
        self._pos += 1
        return char

    def value(self, what: str) -> object:
        """The next JSON value, whole."""
        self.peek()
        while True:
            try:
                value, end = self._decoder.raw_decode(self._buffer, self._pos)
            except json.JSONDecodeError as error:
                if self._may_be_cut(error) and self._more():
                    continue
                where = self.where()
                raise InventoryError(f"inventory JSON, {what}: {error.msg} ({where})") from None
            except (ValueError, RecursionError) as error:
                raise InventoryError(f"inventory JSON, {what}: {error}") from None
            if end < len(self._buffer) or not self._more():
                self._pos = end
                return value

    def _may_be_cut(self, error: json.JSONDecodeError) -> bool:
        """Whether the error can come from the value running past the buffer."""
        near_end = error.pos >= len(self._buffer) - 16  # e.g. a cut literal or \\u escape
        return near_end or error.msg.startswith("Unterminated string")


def _parse_json(reader: _JsonReader) -> Iterator[Entry]:
    reader.expect("{", "an inventory is a JSON object")
    found = False
    while reader.peek() != "}":
        if reader.peek() != '"':
            reader.expect('"', "expected a key")
        key = reader.value("a key")
        reader.expect(":", "expected ':' after a key")
        if key == "ArchiveList":
            found = True
            yield from _archive_list(reader)
        else:
            reader.value(f"the value of {key}")
        if reader.expect(",}", "expected ',' or '}'") == "}":
            break
    else:
        reader.expect("}", "expected '}'")
    if reader.peek():
        raise InventoryError(f"inventory JSON at {reader.where()}: data after the inventory")
    if not found:
        raise InventoryError("inventory JSON has no ArchiveList")


def _archive_list(reader: _JsonReader) -> Iterator[Entry]:
    reader.expect("[", "ArchiveList is a JSON array")
    if reader.peek() == "]":
        reader.expect("]", "expected ']'")
        return
    number = 0
    while True:
        number += 1
        yield _json_entry(reader.value(f"entry {number}"), number)
        if reader.expect(",]", f"expected ',' or ']' after entry {number}") == "]":
            return


def _json_entry(item: object, number: int) -> Entry:
    if not isinstance(item, dict):
        raise InventoryError(f"inventory entry {number}: not a JSON object")
    missing = [name for name in FIELDS if name not in item]
    if missing:
        raise InventoryError(f"inventory entry {number}: no {', '.join(missing)}")
    archive_id, description, date, size, tree_hash = (item[name] for name in FIELDS)
    for name in ("ArchiveId", "ArchiveDescription", "CreationDate", "SHA256TreeHash"):
        if not isinstance(item[name], str):
            raise InventoryError(f"inventory entry {number}: {name} is not a string")
    if not isinstance(size, int) or isinstance(size, bool):
        raise InventoryError(f"inventory entry {number}: Size {size!r} is not a size")
    # a negative or absurd Size is one bad entry, refused by whoever uses it
    return Entry(archive_id, description, date, size, tree_hash)


# CSV: lines that can be put back, then records of Glacier's quoting.
class _Lines:
    """Lines of text (without their ``\\n``), numbered, that can be put back."""

    def __init__(self, text: _Text) -> None:
        self._text = text
        self._ready: list[str] = []  # reversed: the next line is last
        self._rest = ""
        self.number = 0

    def next(self) -> str | None:
        while not self._ready:
            chunk = self._text.read()
            if not chunk:
                if not self._rest:
                    return None
                self._ready, self._rest = [self._rest], ""
                break
            lines = (self._rest + chunk).split("\n")
            self._rest = lines.pop()
            if len(self._rest) > MAX_RECORD_CHARS:
                where = self.number + len(self._ready) + len(lines) + 1
                raise InventoryError(f"inventory CSV line {where}: too long")
            lines.reverse()
            self._ready = lines
        self.number += 1
        return self._ready.pop()

    def put_back(self, lines: list[str]) -> None:
        self.number -= len(lines)
        self._ready.extend(reversed(lines))


@dataclass(frozen=True, slots=True)
class _Shape:
    """What a record must look like: the header's number of fields, a Size of digits."""

    columns: int
    size: int

    def problem(self, fields: list[str], number: int) -> InventoryError | None:
        where = f"inventory CSV line {number}"
        if len(fields) != self.columns:
            return InventoryError(f"{where}: {len(fields)} fields, the header has {self.columns}")
        if not _SIZE.fullmatch(fields[self.size]):
            return InventoryError(f"{where}: Size {fields[self.size]!r} is not a size")
        return None


def _parse_csv(lines: _Lines) -> Iterator[Entry]:
    header = _next_record(lines, None)
    if header is None:
        raise InventoryError("inventory CSV is empty: no header line")
    columns = {name.strip(): index for index, name in reversed(list(enumerate(header)))}
    missing = [name for name in FIELDS if name not in columns]
    if missing:
        raise InventoryError(f"inventory CSV header has no {', '.join(missing)}")
    indexes = [columns[name] for name in FIELDS]
    shape = _Shape(len(header), columns["Size"])
    while (record := _next_record(lines, shape)) is not None:
        archive_id, description, date, size, tree_hash = (record[i] for i in indexes)
        yield Entry(archive_id, description, date, int(size), tree_hash)


def _next_record(lines: _Lines, shape: _Shape | None) -> list[str] | None:
    """The fields of the next record that is not blank, None at the end."""
    while (line := lines.next()) is not None:
        if not line or line.isspace():
            continue
        if '"' in line:
            return _quoted_record(line, lines, shape)
        fields = line.removesuffix("\r").split(",")
        problem = shape.problem(fields, lines.number) if shape else None
        if problem:
            raise problem
        return fields
    return None


MAX_AMBIGUOUS_TRIES = 32
"""Readings of an ambiguous record tried before giving up (a description is short)."""


def _quoted_record(line: str, lines: _Lines, shape: _Shape | None) -> list[str]:
    """A record with quotes, read strictly (every ``\\"`` is a quote) or else with the
    k-th ``\\"`` before a comma or the end taken as backslash and closing quote, for
    the first k that gives a record of the right shape."""
    first_error: InventoryError | None = None
    close_at: int | None = None
    while True:
        reading = _Reading(lines, close_at)
        try:
            fields = _split(line, reading)
            error = shape.problem(fields, reading.number) if shape else None
            if error is None:
                return fields
        except InventoryError as failure:
            error = failure
        first_error = first_error or error
        lines.put_back(reading.taken)
        if close_at is None:
            tries, close_at = min(reading.ambiguous, MAX_AMBIGUOUS_TRIES), 0
        else:
            close_at += 1
        if close_at >= tries:
            raise first_error


class _Reading:
    """One attempt at a record: the lines it took, and which ambiguous quote closes."""

    def __init__(self, lines: _Lines, close_at: int | None) -> None:
        self.lines, self.close_at = lines, close_at
        self.number = lines.number
        self.taken: list[str] = []
        self.ambiguous = 0

    def closes(self, text: str, pos: int) -> bool:
        """Whether the ``\\"`` just before ``pos`` closes the field."""
        if not (pos == len(text) or text[pos] == "," or text[pos:] == "\r"):
            return False
        self.ambiguous += 1
        return self.ambiguous - 1 == self.close_at


def _split(text: str, reading: _Reading) -> list[str]:
    """The fields of the record starting with line ``text``."""
    fields, pos = list[str](), 0
    while True:
        if text.startswith('"', pos):
            value, pos, text = _quoted_field(text, pos + 1, reading)
            if pos < len(text) and text[pos] != "," and text[pos:] != "\r":
                raise InventoryError(
                    f"inventory CSV line {reading.number}: {text[pos]!r} after a closing quote"
                )
        else:
            comma = text.find(",", pos)
            end = len(text) if comma < 0 else comma
            value, pos = text[pos:end], end
            if comma < 0:
                value = value.removesuffix("\r")
        fields.append(value)
        if pos >= len(text) or text[pos:] == "\r":
            return fields
        pos += 1


def _quoted_field(text: str, pos: int, reading: _Reading) -> tuple[str, int, str]:
    """(value, position after the closing quote, the record's text so far)."""
    parts = list[str]()
    while True:
        run = _QUOTED_RUN.match(text, pos)
        if run:
            parts.append(run.group())
            pos = run.end()
        if pos == len(text):
            line = reading.lines.next()
            if line is None or len(text) > MAX_RECORD_CHARS:
                raise InventoryError(
                    f"inventory CSV line {reading.number}: a quote is never closed"
                )
            reading.taken.append(line)
            text += "\n" + line
        elif text[pos] == '"':
            return "".join(parts), pos + 1, text
        elif text.startswith('"', pos + 1) and not reading.closes(text, pos + 2):
            parts.append('"')
            pos += 2
        else:
            parts.append("\\")
            pos += 1
