"""What ``retrieve --follow`` says while it waits: one line of where the run stands.

Bulk outputs take 5 to 12 hours; a journal with no line for that long looks like a dead
service. So besides one line per event (requested, ready, saved), ``--follow`` writes
this line at least every ``--heartbeat`` seconds when its output is not a terminal (a
terminal keeps it as the redrawn status line): what is pending, the earliest moment an
output is expected, bytes saved and to go, and when the next request may be made. Pure
code over one look's plan (its counts and its first output expected).
"""

from __future__ import annotations

from collections.abc import Iterable

from glacierfs.humane import plural, size, utc
from glacierfs.retrieve.pacing import Requested, next_room
from glacierfs.retrieve.plan import Plan

MOMENT = "%Y-%m-%d %H:%M UTC"


def next_request(plan: Plan, history: Iterable[Requested]) -> str:
    """When the next job may be requested, in words."""
    if plan.batch:
        return "now"
    if plan.limits.max_jobs is not None and plan.outstanding >= plan.limits.max_jobs:
        return "once an output is saved (--max-jobs)"
    room = next_room(history, plan.now)
    return f"at {utc(room, MOMENT)} (daily cap)" if room is not None else "next round"


def heartbeat_line(plan: Plan, history: Iterable[Requested], rate: float | None) -> str:
    """Counted over the archives still planned for (given up and evicted left out)."""
    left = plan.selected_bytes - plan.cached_bytes
    soonest = plan.first_expected
    expected = f"first expected {utc(soonest, MOMENT)}" if soonest else "none in progress"
    speed = f"{size(rate)}/s" if rate else "rate not measured yet"
    return (
        f"saved {plan.cached}/{plural(plan.selected, 'archive')} ({size(plan.cached_bytes)} of "
        f"{size(plan.selected_bytes)}, {size(left)} to go); {plural(plan.waiting, 'archive')} "
        f"pending ({expected}); {_requests(plan, history)}; {speed}"
    )


def _requests(plan: Plan, history: Iterable[Requested]) -> str:
    if not plan.jobs:
        return "nothing left to request"
    return f"{plural(plan.jobs, 'job')} to request, next {next_request(plan, history)}"
