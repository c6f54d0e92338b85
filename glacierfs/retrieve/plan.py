"""What a run would request, skip and cost, printed before any money is spent. Pure code.

An archive is skipped when it is wholly cached, or when the cache and its live jobs
together hold every leaf (the jobs are in progress, or succeeded and not expired).
Everything else becomes units (:mod:`.pacing`): the whole archive, or aligned ranges
for gaps and for archives larger than a day's cap. The batch is what the caps allow now;
the rest waits for later runs or for ``--follow``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from glacierfs.humane import plural, size, utc
from glacierfs.retrieve.coverage import Holding, LiveJob
from glacierfs.retrieve.pacing import DAY, Limits, Requested, Unit, take_batch, units_for, used
from glacierfs.retrieve.pricing import (
    FREE_TRANSFER_GB,
    PRICES,
    PRICES_DATE,
    PRICES_WHERE,
    TierPrice,
    cost,
    dollars,
    duration,
    transfer_cost,
)


@dataclass
class Plan:
    """Counts over every archive selected, and the batch: what may be requested now.

    The jobs to request are counted as they are found, not kept: a plan of ten million
    archives holds the batch only (see :func:`make_plan`).
    """

    tier: TierPrice
    limits: Limits
    now: float  # service time
    selected: int = 0
    selected_bytes: int = 0
    cached: int = 0
    cached_bytes: int = 0
    in_progress: int = 0  # archives held by the cache and jobs still in progress
    ready: int = 0  # archives held by the cache and succeeded jobs not yet saved
    waiting: int = 0  # archives with live jobs, not wholly cached
    first_expected: float | None = None  # the soonest an output in progress is expected
    empty: int = 0
    jobs: int = 0  # jobs to request, now and later
    bytes: int = 0  # their bytes
    archives: int = 0  # archives with something still to request
    split: int = 0  # archives requested in more than one piece
    batch: list[Unit] = field(default_factory=list)
    next: Unit | None = None  # the first unit after the batch (of the front), if any
    outstanding: int = 0  # live jobs whose output is not yet saved
    evicted: int = 0  # archives saved once and since evicted from the cache: not requested
    capacity: int | None = None  # of the disk cache
    room: int | None = None  # bytes the cache can take for new outputs (None: not counted)
    policy: str | None = None  # the account's data retrieval policy, in words
    notes: list[str] = field(default_factory=list)  # more for the user to know
    older_versions: int = 0  # archives left out by --latest: not the newest of their path
    older_bytes: int = 0

    @property
    def batch_bytes(self) -> int:
        return sum(u.size for u in self.batch)

    def cost(self) -> float:
        return cost(self.tier, self.bytes, self.jobs)

    def batch_cost(self) -> float:
        return cost(self.tier, self.batch_bytes, len(self.batch))

    def expect(self, jobs: Iterable[LiveJob]) -> None:
        """Note when the jobs in progress are expected, by their tier's shortest time."""
        for job in jobs:
            if job.status == "InProgress":
                ready = job.created + (PRICES[job.tier].ready[0] if job.tier in PRICES else 0)
                if self.first_expected is None or ready < self.first_expected:
                    self.first_expected = ready

    def count(self, units: Sequence[Unit]) -> None:
        """One archive's units, counted."""
        self.jobs += len(units)
        self.bytes += sum(u.size for u in units)
        self.archives += bool(units)
        self.split += any(not u.whole for u in units)


class _Front:
    """The units, in order, up to and including the first that today's room cannot take:
    the batch (:func:`take_batch` cuts it to the caps) and the unit after it, never more."""

    def __init__(self, history: Sequence[Requested], now: float, limits: Limits) -> None:
        self.room = limits.per_day - used(history, now)
        self.most = limits.max_jobs
        self.units: list[Unit] = []
        self.closed = False

    def offer(self, units: Iterable[Unit]) -> None:
        for unit in units:
            if self.closed:
                return
            if unit.size > self.room or (self.most is not None and len(self.units) >= self.most):
                self.closed = True
                self.units.append(unit)  # the next after the batch: what waits
                return
            self.units.append(unit)
            self.room -= unit.size


def make_plan(
    holdings: Iterable[Holding],
    history: Sequence[Requested],
    limits: Limits,
    tier: TierPrice,
    now: float,
    room: int | None = None,
) -> Plan:
    """The plan over ``holdings`` (read once, as they come). ``room``: bytes the cache
    can take for new outputs without touching what it must keep (None: the disk does not
    limit the batch)."""
    plan = Plan(tier, limits, now, room=room)
    front = _Front(history, now, limits)
    for holding in holdings:
        archive = holding.archive
        plan.selected += 1
        plan.selected_bytes += archive.size
        plan.outstanding += len(holding.unsaved_jobs())
        plan.waiting += bool(holding.jobs) and not holding.wholly_cached
        plan.expect(holding.jobs)
        if archive.size == 0:
            plan.empty += 1
        elif holding.wholly_cached:
            plan.cached += 1
            plan.cached_bytes += archive.size
        else:
            units = units_for(archive, holding.covered(), limits.largest, limits.piece)
            plan.count(units)
            front.offer(units)
            if not units:
                running = any(j.status == "InProgress" for j in holding.jobs)
                plan.in_progress += running
                plan.ready += not running
    plan.batch = take_batch(front.units, history, plan.outstanding, now, limits, room)
    plan.next = front.units[len(plan.batch)] if len(front.units) > len(plan.batch) else None
    return plan


def render_plan(plan: Plan, vault: str, in_region: bool = False) -> list[str]:
    """The plan in lines for people: what, what is skipped and why, how, how much, when."""
    tier = plan.tier
    lines = [
        f"vault {vault}: {plural(plan.selected, 'archive')} selected, {size(plan.selected_bytes)}",
        f"  skipped: {plan.cached} wholly cached ({size(plan.cached_bytes)}), "
        f"{plan.in_progress} covered by jobs in progress, {plan.ready} by jobs ready to save"
        + (f", {plan.empty} empty" if plan.empty else ""),
        f"  to retrieve: {plural(plan.archives, 'archive')}, {size(plan.bytes)} in "
        f"{plural(plan.jobs, tier.tier + ' job')}"
        + (f" ({plan.split} archive(s) in aligned ranges)" if plan.split else ""),
        f"  estimated retrieval cost: {dollars(plan.cost())} ({size(plan.bytes)} x "
        f"${tier.per_gb}/GB + {plural(plan.jobs, 'job')} x "
        f"${tier.per_thousand_requests}/1000; "
        f"prices of {PRICES_DATE}, {PRICES_WHERE})",
        _transfer_line(plan.bytes, in_region),
    ]
    cap = f"at most {size(plan.limits.per_day)} requested a day"
    if plan.limits.max_jobs is not None:
        cap += f", {plural(plan.limits.max_jobs, 'job')} unsaved at once"
    if plan.limits.per_hour is not None:
        cap += f", {size(plan.limits.per_hour)} an hour"
    days = plan.bytes / plan.limits.per_day if plan.limits.per_day else 0
    lines.append(f"  pacing: {cap}: about {max(days, 1.0 if plan.jobs else 0):.1f} days")
    if plan.room is not None:
        lines.append(f"  limited by the cache: {size(max(plan.room, 0))} free for new outputs")
    if plan.policy is not None:
        lines.append(f"  retrieval policy: {plan.policy}")
    lines.append(_now_line(plan))
    return lines + _notes(plan)


def _transfer_line(nbytes: int, in_region: bool) -> str:
    if in_region:
        return "  data transfer out: none (this host is in the vault's region: --in-region)"
    return (
        f"  data transfer out to the internet: about {dollars(transfer_cost(nbytes))} "
        f"(the first {FREE_TRANSFER_GB} GB a month are free; none from a host in the "
        "vault's region: --in-region)"
    )


def _now_line(plan: Plan) -> str:
    if not plan.jobs:
        return "  now: nothing to request"
    if not plan.batch:
        return "  now: nothing, the caps are reached; the rest later"
    low, high = plan.tier.ready
    return (
        f"  now: {plural(len(plan.batch), 'job')}, {size(plan.batch_bytes)}, "
        f"{dollars(plan.batch_cost())}; outputs ready {duration(low)} to {duration(high)} "
        f"after the request (by {utc(plan.now + high)})"
    )


def _notes(plan: Plan) -> list[str]:
    """What the plan leaves waiting, and what the user should know before it starts."""
    lines = [f"  note: {note}" for note in plan.notes]
    if plan.older_versions:
        lines.append(
            f"  --latest left out {plural(plan.older_versions, 'older version')} "
            f"({size(plan.older_bytes)})"
        )
    if plan.outstanding:
        lines.append(f"  {plural(plan.outstanding, 'live job')} with output not yet saved")
    if plan.evicted:
        lines.append(
            f"  {plural(plan.evicted, 'archive')} saved earlier no longer wholly in the cache "
            "(evicted?): not requested again (--request-evicted to pay for them again)"
        )
    if (
        plan.room is None
        and plan.capacity is not None
        and plan.cached_bytes + plan.bytes > plan.capacity
    ):
        lines.append(
            f"  warning: the cache holds at most {size(plan.capacity)}, less than the "
            f"{size(plan.cached_bytes + plan.bytes)} selected: outputs saved early will be "
            "evicted before the end (raise -o cache_size, or copy them out as they come)"
        )
    if len(plan.batch) < plan.jobs:
        lines.append(
            f"  later: {plural(plan.jobs - len(plan.batch), 'job')} as the caps allow "
            "(run again, or use --follow)"
        )
    return lines


def plan_document(plan: Plan) -> dict[str, object]:
    """The plan's figures, for scripts (``--json``)."""
    return {
        "selected": plan.selected,
        "selected_bytes": plan.selected_bytes,
        "cached": plan.cached,
        "in_progress": plan.in_progress,
        "ready": plan.ready,
        "empty": plan.empty,
        "archives": plan.archives,
        "jobs": plan.jobs,
        "bytes": plan.bytes,
        "split": plan.split,
        "tier": plan.tier.tier,
        "cost": round(plan.cost(), 6),
        "batch_jobs": len(plan.batch),
        "batch_bytes": plan.batch_bytes,
        "batch_cost": round(plan.batch_cost(), 6),
        "per_day": plan.limits.per_day,
        "per_hour": plan.limits.per_hour,
        "room": plan.room,
        "policy": plan.policy,
        "max_jobs": plan.limits.max_jobs,
        "outstanding": plan.outstanding,
        "evicted": plan.evicted,
        "older_versions": plan.older_versions,
        "older_bytes": plan.older_bytes,
        "days": plan.bytes / plan.limits.per_day if plan.limits.per_day else None,
        "prices_date": PRICES_DATE,
        "now": plan.now,
        "day": DAY,
    }
