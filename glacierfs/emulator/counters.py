"""What the emulator counts: requests and bytes per operation and per job, faults applied,
and the latest requests themselves (``GET /_emulator/counters`` and ``/requests``)."""

from __future__ import annotations

import collections
import json
import threading
import time
from typing import Any


def _applied(entry: dict[str, Any]) -> list[str]:
    """The faults that acted on a request: an error answer's own, or every one that struck
    an answer that did not fail for another reason (a job not found has no body to cut)."""
    if entry.get("fault"):
        return [entry["fault"]]
    return [] if entry.get("error") else list(entry.get("faults", []))


class Counters:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.requests, self.bytes = 0, 0
            self.operations: dict[str, dict[str, int]] = {}
            self.jobs: dict[str, dict[str, int]] = {}
            self.faults: dict[str, int] = {}
            self.log: collections.deque[dict[str, Any]] = collections.deque(maxlen=100_000)

    def count(self, entry: dict[str, Any]) -> None:
        entry["ended"] = time.monotonic()
        with self._lock:
            self.requests += 1
            self.bytes += entry["bytes"]
            self.log.append(entry)
            operation = self.operations.setdefault(entry["operation"], {"requests": 0, "bytes": 0})
            operation["requests"] += 1
            operation["bytes"] += entry["bytes"]
            if entry.get("job"):  # a job's bytes are those of its output only
                job = self.jobs.setdefault(entry["job"], {"requests": 0, "bytes": 0})
                job["requests"] += 1
                if entry["operation"] == "GetJobOutput":
                    job["bytes"] += entry["bytes"]
            for kind in _applied(entry):
                self.faults[kind] = self.faults.get(kind, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return json.loads(
                json.dumps(
                    {
                        "requests": self.requests,
                        "bytes": self.bytes,
                        "operations": self.operations,
                        "jobs": self.jobs,
                        "faults": self.faults,
                    }
                )
            )
