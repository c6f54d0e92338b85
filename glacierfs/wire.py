"""What the client's calls take and give, without botocore: its settings, one output
part, and the Content-Range header's grammar."""

from __future__ import annotations

import re
from dataclasses import dataclass

from glacierfs.errors import BadResponse

_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


@dataclass(frozen=True)
class OutputPart:
    """The bytes of one Get Job Output response, with what the service said of them."""

    data: bytes
    tree_hash: str | None
    description: str | None
    first_byte: float | None = None  # time.monotonic() as the headers came: the latency


@dataclass(frozen=True)
class ClientSettings:
    vault: str
    account_id: str = "-"
    region: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None
    connections: int = 8
    connect_timeout: float = 10.0
    read_timeout: float = 30.0


def parse_content_range(header: str) -> tuple[int, int, int | None]:
    """``bytes a-b/total`` -> ``(a, b, total)``; BadResponse for anything else."""
    match = _CONTENT_RANGE.match(header.strip())
    if not match:
        raise BadResponse(f"malformed Content-Range: {header!r}")
    start, end, total = match.groups()
    if int(end) < int(start):
        raise BadResponse(f"Content-Range ends before it starts: {header!r}")
    return int(start), int(end), None if total == "*" else int(total)
