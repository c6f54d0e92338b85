"""Faults the emulator injects, for all jobs or one, at a rate or for the next N requests.

A fault is a small JSON object, given at start (``--fault``) or posted to
``/_emulator/faults``::

    {"kind": "reset", "job": "<JobId>", "count": 1, "at": 1048576}

``kind`` is one of the names in :data:`KINDS`. ``job`` and ``operation`` narrow it
(absent: any); ``count`` makes it fire on the next N matching requests only,
``rate`` on that share of them (both: at a rate, at most N times; neither: every
time). ``at`` is the body offset where a body fault strikes (default: half way),
``ms`` the delay of ``latency`` and ``stall``, ``bps`` the cap of ``bandwidth``.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

ERRORS = {
    "throttle": (400, "ThrottlingException", "Rate exceeded"),
    "error500": (500, "ServiceUnavailableException", "Service is temporarily unavailable"),
    "error503": (503, "ServiceUnavailableException", "Service is temporarily unavailable"),
    "timeout408": (408, "RequestTimeoutException", "Request timed out"),
    "access-denied": (
        403,
        "AccessDeniedException",
        "User is not authorized to perform this operation",
    ),
    "insufficient-capacity": (
        503,
        "InsufficientCapacityException",
        "There is insufficient capacity to process this expedited request",
    ),
}
"""Error answers, in place of the operation's own."""

CAPACITY = "insufficient-capacity"
"""Strikes only InitiateJob with ``Tier: Expedited``, as the service refuses only those
when its expedited capacity is taken (Standard and Bulk are always accepted)."""

BODY = ("reset", "short", "flip", "stall", "bad-content-range", "drop-checksum")
"""Faults in a Get Job Output answer: a reset connection part way through the body,
a body cut short of its Content-Length (clean close), one flipped byte under a
correct checksum header, a pause of ``ms`` part way, a Content-Range one byte off,
no ``x-amz-sha256-tree-hash`` header where one is due (a range that is a node of the
tree hash; elsewhere none is sent anyway)."""

SHAPE = ("latency", "bandwidth")
"""Network shape: ``ms`` before the first byte, ``bps`` bytes/s per connection."""

BAD_JSON = "bad-json"
"""A 200 answer whose JSON body is cut short (operations that answer JSON). botocore's
rest-json parser does not raise on it: the caller gets a record with none of its fields."""

KINDS = (*ERRORS, *BODY, *SHAPE, BAD_JSON)

JSON_OPERATIONS = ("ListVaults", "DescribeVault", "ListJobs", "DescribeJob")


@dataclass
class Fault:
    kind: str
    job: str | None = None
    operation: str | None = None
    rate: float | None = None
    count: int | None = None
    at: int | None = None
    ms: float = 0.0
    bps: int = 0
    id: int = 0
    hits: int = 0

    def applies(self, operation: str, job: str | None, tier: str | None = None) -> bool:
        if self.job is not None and self.job != job:
            return False
        if self.operation is not None and self.operation != operation:
            return False
        if self.kind == CAPACITY:
            return operation == "InitiateJob" and tier == "Expedited"
        if self.kind in BODY:
            return operation == "GetJobOutput"
        if self.kind == BAD_JSON:
            return operation in JSON_OPERATIONS
        return True


def parse_fault(spec: Any) -> Fault:
    """A fault from its JSON object; ValueError says what is wrong with it."""
    if not isinstance(spec, dict):
        raise ValueError("a fault is a JSON object")
    unknown = set(spec) - {"kind", "job", "operation", "rate", "count", "at", "ms", "bps"}
    if unknown:
        raise ValueError(f"unknown fault fields: {', '.join(sorted(unknown))}")
    if spec.get("kind") not in KINDS:
        raise ValueError(f"fault kind must be one of {', '.join(KINDS)}")
    fault = Fault(**spec)
    if fault.rate is not None and not 0 <= fault.rate <= 1:
        raise ValueError("rate is between 0 and 1")
    if fault.count is not None and fault.count < 1:
        raise ValueError("count is at least 1")
    if fault.kind == "bandwidth" and fault.bps <= 0:
        raise ValueError("a bandwidth fault needs bps > 0")
    return fault


class Faults:
    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._random = random.Random(seed)
        self._next_id = 1

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            fault.id, self._next_id = self._next_id, self._next_id + 1
            self._faults.append(fault)
            return fault

    def remove(self, fault_id: int) -> bool:
        with self._lock:
            before = len(self._faults)
            self._faults = [f for f in self._faults if f.id != fault_id]
            return len(self._faults) < before

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def listed(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(f) for f in self._faults]

    def fire(self, operation: str, job: str | None, tier: str | None = None) -> list[Fault]:
        """The faults that strike this request; a counted fault is spent by striking.

        ``tier``: the retrieval tier an InitiateJob asks for.
        """
        struck = []
        with self._lock:
            for fault in list(self._faults):
                if not fault.applies(operation, job, tier):
                    continue
                if fault.rate is not None and self._random.random() >= fault.rate:
                    continue
                fault.hits += 1
                struck.append(fault)
                if fault.count is not None:
                    fault.count -= 1
                    if fault.count == 0:
                        self._faults.remove(fault)
        return struck


class RateLimit:
    """At most ``rate`` requests a second, in bursts of up to ``rate`` (a token bucket):
    what the service does to fast listers, who get ThrottlingException beyond it."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self._clock = rate, clock
        self._tokens, self._last = max(rate, 1.0), clock()
        self._lock = threading.Lock()

    def take(self) -> bool:
        """Whether one more request may be answered now."""
        with self._lock:
            now = self._clock()
            self._tokens = min(max(self.rate, 1.0), self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens < 1.0:
                return False
            self._tokens -= 1.0
            return True
