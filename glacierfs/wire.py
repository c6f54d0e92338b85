"""What the client's calls take and give, without botocore: its settings and one output
part (what the service's answers must hold is :mod:`glacierfs.answers`)."""

from __future__ import annotations

from dataclasses import dataclass


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
