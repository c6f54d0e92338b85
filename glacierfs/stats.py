"""Counters of what the daemon did, read by ``glacierfs status`` through an xattr."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class Stats:
    requests: int = 0  # Get Job Output responses received
    bytes_fetched: int = 0  # body bytes received from the service
    bytes_served: int = 0  # bytes returned to readers
    served_from_cache: int = 0  # of those, bytes that needed no request by that read
    retries: int = 0
    checksum_failures: int = 0
    disk_cache_misses: int = 0  # leaves expected on disk but evicted or damaged
    demand_waits: int = 0  # reads' requests of leaves nothing covered that waited for a connection
    urged_waits: int = 0  # reads that came to wait on a read-ahead request not yet sent
    in_flight: dict[str, list[str]] = field(default_factory=dict)  # job -> ranges

    def as_dict(self) -> dict[str, object]:
        return asdict(self)
