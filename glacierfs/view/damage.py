"""Jobs whose output fails its check, remembered with the cache.

A job whose bytes never match the checksum the service sends with them (an output
damaged at the service, or a service that lies) would otherwise be fetched for its
name, and fail, at every mount: a megabyte and its retries each time. The failure is
kept in the cache's metadata with the job's record as the service gave it, the
bytes of the request that failed and the digest the service sent for them. While
the service answers with the same record, a mount does not probe the job again; a
read of it still asks (and fails with EIO while the bytes stay bad), and a read that
passes the check forgets the failure. A changed record earns the job a fresh try.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass, replace
from typing import Any

from glacierfs.cache.aio import AsyncDisk
from glacierfs.errors import IntegrityError
from glacierfs.jobs import Job, job_to_record
from glacierfs.treehash import MIB

log = logging.getLogger(__name__)

DAMAGED_META = "damaged"

_MISMATCH = re.compile(r"bytes (\d+)-(\d+): checksum mismatch: expected (\w+), received (\w+)")
"""What :class:`~glacierfs.read.reader.Reader` says of a response that failed its checksum."""


@dataclass(frozen=True)
class Damage:
    start: int  # bytes of the output the failing request asked for
    end: int
    expected: str | None  # the tree hash the service sent with them
    received: str | None  # what the bytes received hash to
    record: dict[str, Any]  # the job's record when it failed

    def leaves(self, job: Job) -> range:
        """The failing leaves, in archive coordinates."""
        return range(job.first_leaf + self.start // MIB, job.first_leaf + self.end // MIB + 1)

    def describe(self) -> str:
        sent = f"the service sent tree hash {self.expected}" if self.expected else "no match"
        return f"bytes {self.start}-{self.end} fail their check ({sent})"


def _damage(value: Any) -> Damage | None:
    """A damage saved by an earlier mount, or None when the value is not one."""
    try:
        damage = Damage(**value)
    except TypeError:
        return None
    numbers = all(isinstance(n, int) and n >= 0 for n in (damage.start, damage.end))
    digests = all(d is None or isinstance(d, str) for d in (damage.expected, damage.received))
    return damage if numbers and digests and isinstance(damage.record, dict) else None


class DamagedJobs:
    """The jobs known to fail their check, kept in the cache's metadata (if given one)."""

    def __init__(self, disk: AsyncDisk | None = None) -> None:
        self._disk = disk
        self.known: dict[str, Damage] = {}

    async def load(self) -> None:
        if self._disk is None:
            return
        saved = await self._disk.list_meta(DAMAGED_META)
        for job_id, value in saved.items():
            damage = _damage(value) if isinstance(value, dict) else None
            if damage is not None:
                self.known[job_id] = damage

    def skips(self, job: Job) -> bool:
        """True when the job failed its check and the service still says the same of it."""
        damage = self.known.get(job.job_id)
        return damage is not None and damage.record == job_to_record(job)

    def bad(self, job: Job, leaf: int) -> bool:
        damage = self.known.get(job.job_id)
        return damage is not None and leaf in damage.leaves(job)

    async def mark(self, job: Job, error: IntegrityError, start: int, end: int) -> None:
        """Remember that a read of output bytes ``start..end`` of ``job`` failed its check."""
        found = _MISMATCH.search(str(error))
        expected = received = None
        if found:
            start, end = int(found.group(1)), int(found.group(2))
            expected, received = found.group(3), found.group(4)
        damage = Damage(start, end, expected, received, job_to_record(job))
        if self.known.get(job.job_id) == damage:
            return
        log.error("job %s is damaged: %s", job.job_id, damage.describe())
        await self._save(job.job_id, damage)

    async def passed(self, job: Job, start: int, end: int) -> None:
        """Output bytes ``start..end`` of ``job`` were read and passed their check.

        Leaves at either end of the damage that were read are no longer counted in
        it; the damage is forgotten once none is left.
        """
        damage = self.known.get(job.job_id)
        if damage is None or end < damage.start or start > damage.end:
            return
        first, last = damage.start // MIB, damage.end // MIB
        if start // MIB <= first:
            first = end // MIB + 1
        if end // MIB >= last:
            last = start // MIB - 1
        if first > last:
            del self.known[job.job_id]
            log.info("job %s: its damaged bytes now pass their check", job.job_id)
            if self._disk is not None:
                await self._disk.delete_meta(DAMAGED_META, job.job_id)
        elif (first, last) != (damage.start // MIB, damage.end // MIB):
            end = min(last * MIB + MIB, job.size) - 1
            await self._save(job.job_id, replace(damage, start=first * MIB, end=end))

    async def _save(self, job_id: str, damage: Damage) -> None:
        self.known[job_id] = damage
        if self._disk is not None:
            await self._disk.put_meta(DAMAGED_META, job_id, asdict(damage))
