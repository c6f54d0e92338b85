"""Inventory outputs, in the two formats Glacier writes.

The CSV is quoted as the API reference describes it, which is not RFC 4180: a field
with a comma or a double quote is enclosed in double quotes, a double quote inside
it is written as backslash + quote, and a backslash is written as it is.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Protocol

CSV_HEADER = "ArchiveId,ArchiveDescription,CreationDate,Size,SHA256TreeHash"


class Listed(Protocol):
    archive_id: str
    description: str
    created: float
    size: int
    tree_hash: str


def _iso(moment: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment))


def csv_field(text: str) -> str:
    if "," in text or '"' in text:
        return '"' + text.replace('"', '\\"') + '"'
    return text


def render_inventory(arn: str, when: float, archives: Iterable[Listed], fmt: str) -> bytes:
    if fmt == "CSV":
        rows = [CSV_HEADER] + [
            ",".join(
                (
                    a.archive_id,
                    csv_field(a.description),
                    _iso(a.created),
                    str(a.size),
                    a.tree_hash,
                )
            )
            for a in archives
        ]
        return ("\n".join(rows) + "\n").encode()
    document = {
        "VaultARN": arn,
        "InventoryDate": _iso(when),
        "ArchiveList": [
            {
                "ArchiveId": a.archive_id,
                "ArchiveDescription": a.description,
                "CreationDate": _iso(a.created),
                "Size": a.size,
                "SHA256TreeHash": a.tree_hash,
            }
            for a in archives
        ],
    }
    return json.dumps(document).encode()
