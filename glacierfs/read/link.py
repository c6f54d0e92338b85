"""What the link to the service is like, measured: first-byte latency and per-connection rate.

Pure code. One :class:`LinkModel` per mount keeps exponentially weighted averages of the
first-byte latency ``L`` (request sent to response headers) and of the body rate ``B`` of
one connection (body bytes over the seconds from first to last byte), from every
response of at least :data:`MEASURED_BYTES`; smaller ones say more about per-request
overheads than about the link. Until measured, the priors are those of a distant region
(:data:`PRIOR_LATENCY`, :data:`PRIOR_RATE`).

From them comes the request size ``S*`` (:meth:`LinkModel.request_size`): the smallest
1 MiB x 2^n whose first-byte latency is at most :data:`LATENCY_SHARE` of its whole time,
``L <= share x (L + S/B)``, so that a connection spends most of its time carrying bytes;
then clamped to ``max_request``. Every size is a power of two of leaves, so a request
aligned to its size is tree-hash aligned and the service sends its checksum. Measured
(docs/pipeline-notes.md, 4.2): 16 MiB on the WAN shape (40 ms, 25 MB/s), 32 MiB on
loopback (about 2 ms, 1 GB/s).
"""

from __future__ import annotations

from glacierfs.treehash import MIB

PRIOR_LATENCY = 0.050
"""Seconds to the first byte before any is measured: a distant region's round trips plus
the service's own time to answer."""

PRIOR_RATE = 25e6
"""Bytes/s one connection carries before any is measured: what a single TCP stream gets
from a distant region (the benchmark's WAN shape)."""

MEASURED_BYTES = MIB
"""Responses smaller than this are not measured: their time is mostly per-request work."""

WEIGHT = 0.25
"""Weight of each new response in the averages: about the last 4 to 8 responses count,
so the model follows a link that changes within a second or two of traffic, and one
slow response (a retry, a busy disk) moves it only a quarter of the way."""

LATENCY_SHARE = 0.10
"""The largest share of a request's time that may go to waiting for its first byte."""


class LinkModel:
    """Averages of first-byte latency and per-connection rate, and the request size."""

    def __init__(self, latency: float = PRIOR_LATENCY, rate: float = PRIOR_RATE) -> None:
        self.latency = latency
        self.rate = rate
        self.samples = 0

    def record(self, latency: float, size: int, body_seconds: float) -> None:
        """One response: ``latency`` seconds to its headers, then ``size`` body bytes in
        ``body_seconds``. Small responses and impossible figures are ignored."""
        if size < MEASURED_BYTES or latency < 0 or body_seconds <= 0:
            return
        self.latency += WEIGHT * (latency - self.latency)
        self.rate += WEIGHT * (size / body_seconds - self.rate)
        self.samples += 1

    def request_size(self, max_request: int, smallest: int = MIB) -> int:
        """``S*``: the smallest ``smallest`` x 2^n with first-byte latency at most
        :data:`LATENCY_SHARE` of the request's time, at most ``max_request`` (itself
        rounded down to a power of two of leaves), at least ``smallest``."""
        ceiling = max(_floor_power_of_two_leaves(max_request), smallest)
        # L <= share (L + S/B)  <=>  S >= L B (1 - share) / share
        needed = self.latency * self.rate * (1 - LATENCY_SHARE) / LATENCY_SHARE
        size = smallest
        while size < needed and size < ceiling:
            size *= 2
        return min(size, ceiling)

    def size_within(self, seconds: float, smallest: int, largest: int) -> int:
        """The largest ``smallest`` x 2^n that one connection carries in ``seconds``
        (``L + S/B``), at most ``largest``, at least ``smallest``."""
        size = smallest
        while size * 2 <= largest and self.request_seconds(size * 2) <= seconds:
            size *= 2
        return size

    def request_seconds(self, size: int) -> float:
        """How long one request of ``size`` bytes takes on one connection: ``L + S/B``."""
        return self.latency + size / self.rate


def _floor_power_of_two_leaves(size: int) -> int:
    leaves = max(size // MIB, 1)
    return (1 << (leaves.bit_length() - 1)) * MIB
