"""Intents and requests the service's listing does not show yet: a run killed between
writing down an intent and InitiateJob's answer, and a listing that lags behind
InitiateJob. Either way, no archive is requested twice while a job of it may be live.
"""

from __future__ import annotations

from collections.abc import Callable

from glacierfs.retrieve.coverage import LiveJob
from glacierfs.retrieve.state import REQUESTED, State

INTENT_GRACE = 600.0
"""Seconds (service time) an intent with no job found still counts as live: long enough
for a lagging listing to show the job, short enough to retry a request that never got
through."""

ADOPT_SLACK = 60.0
"""Seconds a job's CreationDate may precede its intent's time (Date has 1 s resolution)."""

Event = Callable[[str, str], None]


def pending_jobs(
    state: State, now: float, live: dict[str, list[LiveJob]]
) -> dict[str, list[LiveJob]]:
    """Requests and young intents the listing does not show (yet): count them live."""
    shown = {j.job_id for jobs in live.values() for j in jobs}
    pending: dict[str, list[LiveJob]] = {}
    for r in state.requests():
        if r.status == REQUESTED and r.job_id not in shown:
            job = LiveJob(
                r.job_id, r.archive_id, r.start, r.end, "InProgress", r.requested, None, r.tier
            )
            pending.setdefault(r.archive_id, []).append(job)
    for i in state.intents():
        if i.noted > now - INTENT_GRACE:
            job = LiveJob(
                f"intent-{i.id}",
                i.archive_id,
                i.start,
                i.end,
                "InProgress",
                i.noted,
                None,
                i.tier,
            )
            pending.setdefault(i.archive_id, []).append(job)
    return pending


def adopt_intents(state: State, live: dict[str, list[LiveJob]], now: float, event: Event) -> None:
    """Match each intent to the job a stopped run started for it, or drop it once old."""
    known = {r.job_id for r in state.requests()}
    for intent in state.intents():
        found = sorted(
            (
                j
                for j in live.get(intent.archive_id, [])
                if (j.start, j.end) == (intent.start, intent.end)
                and j.created >= intent.noted - ADOPT_SLACK
                and j.job_id not in known
            ),
            key=lambda j: j.created,
        )
        if found:
            state.requested(intent.id, found[0].job_id)
            known.add(found[0].job_id)
            event("note", f"{intent.path}: job {found[0].job_id} found, started before a stop")
        elif intent.noted <= now - INTENT_GRACE:
            state.drop_intent(intent.id)
