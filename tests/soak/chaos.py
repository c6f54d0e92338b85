"""Faults at random: every kind the emulator has, added and removed over time, and one expiry.

Every fraction of a second to a few seconds the chaos thread adds a fault (a random
kind, for every job or one, for some operation or all, at a random rate or for the
next few requests) or removes one it added, keeping a handful active at once. Part way
through the run it expires one archive job at the service.

Flipped bytes and a dropped checksum, the faults that could make wrong bytes, are
picked three times as often as the others, and only ever strike jobs whose answers
carry a checksum, the bigger ones more often (they make most requests): an inventory
has no checksum, so a flipped byte in it cannot be caught (a documented limit, not a
finding). When both are in play, the run opens with the two together on the next answer
of every job that carries a checksum, so that even a short run sends a flipped answer
without its due checksum through the mount (the daemon must refuse it, not serve it on
its length).

With lies (:mod:`tests.soak.lies`), the first step tells one, and then a step in
:data:`LIE_SHARE` tells or lifts one instead of adding or removing a fault. The expiry
strikes an honest job only.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections import Counter
from typing import Any

from glacierfs.emulator.faults import BODY, ERRORS, KINDS
from tests.soak.lies import Lies
from tests.soak.readers import Expiry
from tests.soak.vault import MIB, SoakJob
from tests.support.emulator import Emulator

CORRUPTING = ("flip", "drop-checksum")
MAX_ACTIVE = 6
OPERATIONS = ("ListJobs", "DescribeJob", "GetJobOutput", "DescribeVault")
LIE_SHARE = 0.08


def kinds(drop_checksum: bool) -> tuple[str, ...]:
    return tuple(k for k in KINDS if drop_checksum or k != "drop-checksum")


class Chaos(threading.Thread):
    def __init__(
        self,
        emulator: Emulator,
        jobs: list[SoakJob],
        seed: int,
        kinds: tuple[str, ...],
        expiry: Expiry,
        expire_at: float,
        stop: threading.Event,
        lies: Lies | None = None,
    ) -> None:
        super().__init__(name="chaos", daemon=True)
        self.emulator, self.jobs, self.kinds, self.lies = emulator, jobs, kinds, lies
        self.random = random.Random(seed)
        self.expiry, self.expire_at, self.stop = expiry, expire_at, stop
        self.active: list[int] = []
        self.added: Counter[str] = Counter()
        self.removed = 0
        self.error: str | None = None

    def run(self) -> None:
        try:
            if set(CORRUPTING) <= set(self.kinds):
                self.pair()
            if self.lies is not None:
                self.lies.step()
            while not self.stop.wait(self.random.uniform(0.2, 2.0)):  # pacing, not a sync
                if self.expiry.job_id is None and time.monotonic() >= self.expire_at:
                    self.expire()
                if self.lies is not None and self.random.random() < LIE_SHARE:
                    self.lies.step()
                elif self.active and (len(self.active) >= MAX_ACTIVE or self.random.random() < 0.4):
                    self.remove()
                else:
                    self.add()
        except (AssertionError, OSError) as error:  # the emulator refused or went away
            self.error = str(error)

    def expire(self) -> None:
        candidates = [
            j for j in self.jobs if j.kind == "archive" and j.size >= 2 * MIB and not j.spare
        ]
        job = self.random.choice(candidates)
        self.expiry.start(job)
        self.emulator.expire(job.job_id)

    def pair(self) -> None:
        """A flipped byte and no checksum, together, on each checksummed job's next answer
        (counted faults: each goes once spent, so they are not kept in ``active``)."""
        for job in (j for j in self.jobs if j.checksummed):
            for kind in CORRUPTING:
                self.emulator.admin("POST", "faults", {"kind": kind, "job": job.job_id, "count": 1})
                self.added[kind] += 1

    def add(self) -> None:
        spec = self.spec()
        self.active.append(int(self.emulator.admin("POST", "faults", spec)["id"]))
        self.added[spec["kind"]] += 1

    def remove(self) -> None:
        fault_id = self.active.pop(self.random.randrange(len(self.active)))
        with contextlib.suppress(AssertionError):  # a counted fault is gone once spent
            self.emulator.admin("DELETE", f"faults/{fault_id}")
        self.removed += 1

    def spec(self) -> dict[str, Any]:
        chance = self.random.random
        weights = [3 if k in CORRUPTING else 1 for k in self.kinds]
        kind = self.random.choices(self.kinds, weights)[0]
        spec: dict[str, Any] = {"kind": kind}
        if kind in CORRUPTING:  # on a job that is often fetched: a big one
            checked = [j for j in self.jobs if j.checksummed]
            spec["job"] = self.random.choices(checked, [j.size for j in checked])[0].job_id
        elif kind in ERRORS and chance() < 0.4:
            spec["operation"] = self.random.choice(OPERATIONS)
        elif chance() < 0.3:
            spec["job"] = self.random.choice(self.jobs).job_id
        if chance() < 0.7:
            spec["rate"] = round(self.random.uniform(0.02, 0.4), 3)
        else:
            spec["count"] = self.random.randint(1, 5)
        if kind in BODY and chance() < 0.5:
            spec["at"] = self.random.randrange(2 * MIB)
        if kind == "stall":
            spec["ms"] = round(self.random.uniform(50, 2000))
        elif kind == "latency":
            spec["ms"] = round(self.random.uniform(5, 200))
        elif kind == "bandwidth":
            spec["bps"] = self.random.randint(1, 40) * 1_000_000
        return spec
