"""What ``retrieve --follow`` says while it waits: one line of where the run stands.

Bulk outputs take 5 to 12 hours; a journal with no line for that long looks like a dead
service. So besides one line per event (requested, ready, saved), ``--follow`` writes
this line at least every ``--heartbeat`` seconds when its output is not a terminal (a
terminal keeps it as the redrawn status line): what is pending, the earliest moment an
output is expected, bytes saved and to go, and when the next request may be made. Pure
code over one look's snapshot and plan.
"""

from __future__ import annotations

from collections.abc import Iterable

from glacierfs.humane import plural, size, utc
from glacierfs.retrieve.engine import Snapshot
from glacierfs.retrieve.pacing import Requested, next_room
from glacierfs.retrieve.plan import Plan
from glacierfs.retrieve.pricing import PRICES

MOMENT = "%Y-%m-%d %H:%M UTC"


def earliest_ready(snapshot: Snapshot) -> float | None:
    """The soonest an output in progress is expected, by its tier's shortest time."""
    moments = [
        job.created + PRICES[job.tier].ready[0] if job.tier in PRICES else job.created
        for holding in snapshot.holdings
        for job in holding.jobs
        if job.status == "InProgress"
    ]
    return min(moments, default=None)


def next_request(plan: Plan, history: Iterable[Requested]) -> str:
    """When the next job may be requested, in words."""
    if plan.batch:
        return "now"
    if plan.limits.max_jobs is not None and plan.outstanding >= plan.limits.max_jobs:
        return "once an output is saved (--max-jobs)"
    room = next_room(history, plan.now)
    return f"at {utc(room, MOMENT)} (daily cap)" if room is not None else "next round"


def heartbeat_line(
    snapshot: Snapshot, plan: Plan, history: Iterable[Requested], rate: float | None
) -> str:
    holdings = [h for h in snapshot.holdings if not snapshot.finished(h)]
    saved = [h for h in holdings if h.wholly_cached]
    pending = sum(1 for h in holdings if h.jobs and not h.wholly_cached)
    saved_bytes = sum(h.archive.size for h in saved)
    total = sum(h.archive.size for h in holdings)
    left = total - saved_bytes
    soonest = earliest_ready(snapshot)
    expected = f"first expected {utc(soonest, MOMENT)}" if soonest else "none in progress"
    speed = f"{size(rate)}/s" if rate else "rate not measured yet"
    return (
        f"saved {len(saved)}/{plural(len(holdings), 'archive')} ({size(saved_bytes)} of "
        f"{size(total)}, {size(left)} to go); {plural(pending, 'archive')} pending "
        f"({expected}); {_requests(plan, history)}; {speed}"
    )


def _requests(plan: Plan, history: Iterable[Requested]) -> str:
    if not plan.units:
        return "nothing left to request"
    return f"{plural(len(plan.units), 'job')} to request, next {next_request(plan, history)}"
