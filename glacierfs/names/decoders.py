"""Original file names out of archive descriptions, in the formats upload tools write.

A description is untrusted text of up to 1,024 characters. Tools known here:

* mt-aws-glacier: ``mt2 `` + base64url (no padding) of JSON ``{"filename", "mtime"}``;
  ``mt1 `` is the same with the JSON text encoded to UTF-8 twice (Latin-1 misread).
* FastGlacier (and QNAP Hybrid Backup Sync, CrushFTP): ``<m><v>2|3|4</v><p>BASE64
  </p><lm>YYYYMMDDTHHMMSSZ</lm>...</m>``; version 1 is ``<ArchiveMetadata><Path>
  BASE64</Path>...``. A path ending in ``/`` marks a directory.
* CloudBerry: JSON ``{"Path": "<UTF-7 path>", "UTCDateModified": "YYYYMMDDTHHMMSSZ"}``.
* QNAP's older Glacier app: JSON ``{"path": "/dir/file", "type": "file"}``.
* Anything else is the plain name.

:func:`decode_description` never raises: a description that looks like a format but
does not decode (bad base64, bad XML, truncated JSON, wrong types) is plain text.
XML with ``<!`` (a DOCTYPE, an ENTITY) is never parsed, so no entity is expanded.
The path comes back as the tool wrote it; :mod:`glacierfs.names.safe` makes it safe.
"""

from __future__ import annotations

import base64
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

_MTIME = re.compile(
    r"\s*(\d{4})-?(\d{2})-?(\d{2})[T ](\d{2}):?(\d{2}):?(\d{2})(?:[.,](\d{1,9}))?Z?\s*",
    re.ASCII,
)
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*", re.ASCII)
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}", re.ASCII)

_MALFORMED = (ValueError, UnicodeError, TypeError, KeyError, SyntaxError, RecursionError)
"""What a malformed description can raise (json, base64, codecs, ElementTree)."""


@dataclass(frozen=True, slots=True)
class DecodedName:
    """The path and mtime a description gives, and the format they came from."""

    path: str | None
    mtime: float | None
    is_directory: bool
    fmt: str


def parse_mtime(text: object) -> float | None:
    """``YYYYMMDDTHHMMSSZ`` (separators allowed) in UTC as POSIX time, or None."""
    match = _MTIME.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction = float("0." + match.group(7)) if match.group(7) else 0.0
    try:  # a leap second (60) is the next second, as timegm counts it
        moment = datetime(year, month, day, hour, minute, min(second, 59), tzinfo=UTC)
    except ValueError:
        return None
    return moment.timestamp() + (second - min(second, 59)) + fraction


def _named(path: object, mtime: object, fmt: str, is_directory: bool = False) -> DecodedName:
    if not isinstance(path, str):
        raise TypeError(f"{fmt}: the path is not a string")
    is_directory = is_directory or path.endswith(("/", "\\"))
    return DecodedName(path or None, parse_mtime(mtime), is_directory, fmt)


def _json_object(text: str) -> dict[str, object]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise TypeError("not a JSON object")
    return value


def _mt(description: str) -> DecodedName | None:
    """mt-aws-glacier ``mt2 `` / ``mt1 ``."""
    fmt, encoded = description[:3], description[4:].strip()
    if description[3:4] != " " or fmt not in ("mt1", "mt2"):
        return None
    if not _BASE64URL.fullmatch(encoded):
        raise ValueError("not base64url")
    text = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode("utf-8")
    if fmt == "mt1":
        text = text.encode("latin-1").decode("utf-8")
    meta = _json_object(text)
    return _named(meta["filename"], meta.get("mtime"), fmt)


def _base64_text(element: ET.Element | None) -> str:
    encoded = "".join((element.text or "").split()) if element is not None else ""
    if element is None or not _BASE64.fullmatch(encoded):
        raise ValueError("no base64 path")
    return base64.b64decode(encoded, validate=True).decode("utf-8")


def _child_text(root: ET.Element, *tags: str) -> str | None:
    wanted = {tag.lower() for tag in tags}
    for child in root:
        if child.tag.lower() in wanted:
            return child.text
    return None


def _fastglacier(description: str) -> DecodedName | None:
    """FastGlacier ``<m>`` (versions 2 to 4) and ``<ArchiveMetadata>`` (version 1)."""
    if "<!" in description:
        raise ValueError("DTD or entity declarations are never parsed")
    root = ET.fromstring(description)
    if root.tag == "m":
        version = (root.findtext("v") or "").strip()
        if version not in ("2", "3", "4"):
            raise ValueError(f"unknown FastGlacier version {version!r}")
        return _named(_base64_text(root.find("p")), root.findtext("lm"), f"fastglacier{version}")
    if root.tag == "ArchiveMetadata":
        path = _base64_text(root.find("Path"))
        return _named(path, _child_text(root, "LastModified", "lm"), "fastglacier1")
    return None


def _json_tools(description: str) -> DecodedName | None:
    """CloudBerry (``Path`` in UTF-7) and QNAP (``path`` and ``type``)."""
    meta = _json_object(description)
    if "Path" in meta:
        path = meta["Path"]
        if not isinstance(path, str):
            raise TypeError("CloudBerry Path is not a string")
        decoded = path.encode("ascii").decode("utf-7")
        return _named(decoded, meta.get("UTCDateModified"), "cloudberry")
    if "path" in meta:
        kind = meta.get("type", "file")
        if not isinstance(kind, str):
            raise TypeError("QNAP type is not a string")
        folder = kind.lower() in ("folder", "dir", "directory")
        return _named(meta["path"], meta.get("mtime"), "qnap", folder)
    return None


def _decoder(description: str) -> Callable[[str], DecodedName | None] | None:
    start = description.lstrip()[:1]
    if description.startswith(("mt1 ", "mt2 ")):
        return _mt
    if start == "<":
        return _fastglacier
    if start == "{":
        return _json_tools
    return None


def plain(description: str) -> DecodedName:
    """The description itself as the name (``None`` when it is blank)."""
    return DecodedName(description.strip() or None, None, False, "plain")


def decode_description(description: str) -> DecodedName:
    """The name an archive's description gives, in whichever format it is written."""
    decoder = _decoder(description)
    if decoder is None:
        return plain(description)
    try:
        decoded = decoder(description.strip())
    except _MALFORMED:
        return plain(description)
    return decoded if decoded is not None else plain(description)
