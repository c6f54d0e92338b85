"""What brought the wrong bytes: answers with a flipped byte and no checksum.

The daemon refuses an answer whose due ``x-amz-sha256-tree-hash`` is missing; were it
to check such an answer by its length only, its flipped byte would be served. So the
report counts those answers (they must have been sent for the run to test anything),
and a wrong byte is *explained* when an answer that had both faults covered its place in
the archive (a range job's leaves are its archive's: one job's answer can reach
another job's reader through the shared cache). A wrong byte nothing explains is a
new finding; :func:`whose` says where the first wrong answers' bytes came from (a lied-
about job's own bytes served as another's, say).
"""

from __future__ import annotations

import mmap
from typing import Any

from tests.soak.vault import SoakJob

BOTH = frozenset({"flip", "drop-checksum"})


def unchecked_flips(log: list[Any]) -> int:
    """Get Job Output answers sent with a flipped byte and without their checksum."""
    return sum(
        entry.get("operation") == "GetJobOutput"
        and not entry.get("error")
        and set(entry.get("faults", [])) >= BOTH
        for entry in log
    )


def explained(jobs: list[SoakJob], wrong: list[tuple[str, int]], log: list[Any]) -> int:
    """How many of the wrong bytes (JobId, output offset) an unchecked flip accounts for."""
    by_id = {job.job_id: job for job in jobs}
    suspects: dict[str, list[tuple[int, int]]] = {}
    for entry in log:
        job = by_id.get(entry.get("job") or "")
        if entry.get("operation") != "GetJobOutput" or entry.get("error") or job is None:
            continue
        if job.archive is None or not set(entry.get("faults", [])) >= BOTH:
            continue
        start, end = (int(n) for n in entry["range"].split("-"))
        suspects.setdefault(job.archive, []).append((job.offset + start, job.offset + end))
    count = 0
    for job_id, offset in wrong:
        job = by_id[job_id]
        place = job.offset + offset
        count += any(s <= place <= e for s, e in suspects.get(job.archive or "", []))
    return count


def whose(
    answers: list[tuple[str, int, bytes]], jobs: list[SoakJob], sources: dict[str, mmap.mmap]
) -> list[str]:
    """For each kept wrong answer (JobId, offset, its first bytes), where else those
    bytes are: a place in another job's source, or nowhere (corrupted)."""
    out = []
    for job_id, offset, got in answers:
        found = "in no job's bytes"
        for job in jobs:
            at = sources[job.job_id].find(got) if len(got) >= 16 else -1
            if at >= 0:
                found = f"are {job.kind} {job.job_id[:16]}...'s bytes at {at}"
                break
        out.append(f"{job_id[:16]}... at {offset}: {len(got)} bytes served {found}")
    return out
