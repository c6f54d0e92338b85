"""One look at a vault's retrieval: reconcile with the service, plan, request.

Every look starts from what the service says now (ListJobs: jobs in progress and
succeeded, and its clock, from the answer's Date) and from what the cache holds
(:mod:`.cacheview`), and brings the state (:mod:`.state`) up to date: intents left by
a run killed mid-request are matched to the job they started, or dropped; requests
whose job failed, or expired before its output was wholly saved, are marked so, and
their archives become requestable again (each archive at most :data:`MAX_TRIES`
times, so that a vault that keeps failing does not keep costing). An output saved
once and evicted while its job still lives (the cache may evict what a live job can
send again) is saved again: that costs no retrieval. Once its job has expired, the
archive is not requested again unless asked (``--request-evicted``): that would be
paying twice.

Job records are untrusted and checked one by one (:func:`.coverage.live_job`): a record
that cannot be read (a JobId holding a control character, a size that is not a number)
covers nothing and is logged once per run, and the other jobs count as usual. A job id
that InitiateJob answers must be new: one that is already a request's, or a listed
job's, is reported as a failed request, not taken as this one.

Coverage is generous on purpose: besides the service's live jobs, a request written
down but not (yet) listed, and an intent younger than :data:`INTENT_GRACE`, count as
live, so a listing that lags behind InitiateJob never makes a second request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from glacierfs.catalog import record_key
from glacierfs.client import GlacierClient
from glacierfs.errors import (
    BadResponse,
    InsufficientCapacity,
    JobExpired,
    PolicyEnforced,
    ServiceError,
    TransientServiceError,
)
from glacierfs.humane import size, utc
from glacierfs.intervals import covers, of_leaves
from glacierfs.retrieve.cacheview import CacheIndex, archive_key
from glacierfs.retrieve.coverage import Holding, LiveJob, live_jobs
from glacierfs.retrieve.intents import adopt_intents, pending_jobs
from glacierfs.retrieve.mismatched import MISMATCHED, Mismatched
from glacierfs.retrieve.pacing import Limits, Unit
from glacierfs.retrieve.plan import Plan, make_plan
from glacierfs.retrieve.policy import RetrievalPolicy
from glacierfs.retrieve.pricing import TierPrice
from glacierfs.retrieve.room import Held, NothingDelivered, disk_room, undelivered_bytes
from glacierfs.retrieve.save import REFUSED, ToSave
from glacierfs.retrieve.selected import Selected
from glacierfs.retrieve.selection import Archive
from glacierfs.retrieve.state import EXPIRED, FAILED, REQUESTED, SAVED, Request, State

log = logging.getLogger(__name__)

MAX_TRIES = 3
"""Requests of one archive that may fail or expire unsaved before it is given up."""

MAX_SAVE_FAILURES = 3
"""Looks in a row a job's output may fail to save before the job is marked failed."""

JOB_DESCRIPTION = "glacierfs retrieve"

CAPACITY_FACT = "expedited_refused"
"""When (service time) Expedited was last refused for lack of capacity."""

PROVISIONED = (
    "Expedited needs capacity the service did not have: buy provisioned capacity "
    "(aws glacier purchase-provisioned-capacity) for Expedited that is always accepted, "
    "or use --tier Standard"
)

Event = Callable[[str, str], None]
"""(kind, text): ``requested``, ``re-requested``, ``ready``, ``saved``, ``expired``,
``failed``, ``note``."""


@dataclass
class Snapshot:
    """What one look found: the service's live jobs and the state's own. The archives'
    holdings are read from it in batches (:meth:`Engine.holdings`), never all at once."""

    now: float
    live: dict[str, list[LiveJob]] = field(default_factory=dict)  # listed, by archive
    pending: dict[str, list[LiveJob]] = field(default_factory=dict)  # ours, not listed yet
    given_up: set[str] = field(default_factory=set)  # archive ids
    evicted: set[str] = field(default_factory=set)  # saved once, no longer wholly cached

    def finished(self, holding: Holding) -> bool:
        archive_id = holding.archive.archive_id
        return archive_id in self.given_up or archive_id in self.evicted

    def jobs(self, archive_id: str) -> tuple[LiveJob, ...]:
        return tuple(self.live.get(archive_id, [])) + tuple(self.pending.get(archive_id, []))


def _refused(record: Any, why: BadResponse) -> None:
    REFUSED.warning(record_key(record), "job not counted as covering its archive: %s", why)


class Engine:
    def __init__(
        self,
        client: GlacierClient,
        state: State,
        index: CacheIndex,
        selected: Selected,
        vault_arn: str,
        tier: TierPrice,
        limits: Limits,
        event: Event,
        capacity: int | None = None,
        request_evicted: bool = False,
        policy: RetrievalPolicy | None = None,
        held: Held | None = None,
    ) -> None:
        self.client, self.state, self.index = client, state, index
        self.selected = selected
        self.vault_arn, self.tier, self.limits, self.event = vault_arn, tier, limits, event
        self._paths: dict[str, str] = {}  # archive id -> path, of the outputs to save
        self.refused: set[str] = set()  # archives the service refused to retrieve this run
        self._mismatched = Mismatched(
            index, vault_arn, event, self._selected_path, lambda i: bool(selected.lookup([i]))
        )
        self.capacity = capacity  # of the disk cache, to warn when the selection is larger
        self.request_evicted = request_evicted
        self.policy = policy or RetrievalPolicy(None)
        self.held: Held = held or NothingDelivered()
        self._records: list[Any] = []  # of the latest look, for the bytes in custody
        self._listed: set[str] = set()  # every JobId the last look listed

    def key(self, archive: Archive) -> str:
        return archive_key(archive, self.vault_arn)

    # --- looking ------------------------------------------------------------------------

    def now(self) -> float:
        if self.client.service_time is None:
            log.warning("the service sent no Date header: using this host's clock")
            return time.time()
        return self.client.service_time

    def look(self, update: bool = True) -> Snapshot:
        """Ask the service for its jobs and (``update``) bring the state up to date; a
        look that does not update leaves the state to the run that holds it."""
        records = self.client.list_all_jobs()
        self._records = records
        now = self.now()
        live, mismatched = self._mismatched.sift(live_jobs(records, _refused))
        listed = {
            r["JobId"]: r
            for r in records
            if isinstance(r, dict) and isinstance(r.get("JobId"), str)
        }
        self._listed = set(listed)
        if update:
            adopt_intents(self.state, live, now, self.event)
            self._update_requests(listed, mismatched)
        return self.snapshot(now, live)

    def snapshot(self, now: float, live: dict[str, list[LiveJob]]) -> Snapshot:
        """The live jobs (verdicts read again: a save may have found a job a mismatch since
        the look), the state's own, and what the state says is given up or evicted."""
        live, _ = self._mismatched.sift(live)
        pending = pending_jobs(self.state, now, live)
        requests = self.state.requests()
        tries: dict[str, int] = {}
        for request in requests:
            if request.status in (EXPIRED, FAILED):
                tries[request.archive_id] = tries.get(request.archive_id, 0) + 1
        given_up = {a for a, n in tries.items() if n >= MAX_TRIES} | self.refused
        evicted = set()
        if not self.request_evicted:
            listed = {j.job_id for jobs in live.values() for j in jobs if j.status == "Succeeded"}
            # a job listed as succeeded can send its output again, for free
            saved = [r for r in requests if r.status == SAVED and r.job_id not in listed]
            chosen = self.selected.lookup(r.archive_id for r in saved)
            evicted = {
                r.archive_id
                for r in saved
                if r.archive_id in chosen and not self._wholly_saved(r, chosen[r.archive_id])
            }
        return Snapshot(now, live, pending, given_up, evicted)

    def holdings(self, snapshot: Snapshot) -> Iterator[Holding]:
        """What holds each archive selected, in path order, read a batch at a time."""
        for batch in self.selected.batches():
            yield from self._held(batch, snapshot)

    def _held(self, archives: list[Archive], snapshot: Snapshot) -> list[Holding]:
        keys = [self.key(a) for a in archives]
        cached = self.index.leaves_of(keys)
        return [
            Holding(a, self._with_delivered(a, cached[k]), snapshot.jobs(a.archive_id))
            for a, k in zip(archives, keys, strict=True)
        ]

    def _held_leaves(self, archive: Archive) -> frozenset[int]:
        """Leaves in the cache or delivered out of it."""
        return self._with_delivered(archive, self.index.leaves(self.key(archive)))

    def _with_delivered(self, archive: Archive, cached: frozenset[int]) -> frozenset[int]:
        if self.held.delivered(archive.archive_id):
            return frozenset(range(archive.leaves))
        return cached | self.held.written(archive.archive_id)

    def _update_requests(self, listed: dict[str, Any], mismatched: set[str]) -> None:
        waiting = [r for r in self.state.requests() if r.status == REQUESTED]
        chosen = self.selected.lookup(r.archive_id for r in waiting)
        for request in waiting:
            archive = chosen.get(request.archive_id)
            if archive is None:
                continue
            if request.job_id in mismatched:  # requested again, up to MAX_TRIES
                self.state.mark(request.job_id, FAILED, MISMATCHED)
                self.event("failed", f"{request.path}: job {request.job_id}: {MISMATCHED}")
                continue
            if self._wholly_saved(request, archive):
                self.state.mark(request.job_id, SAVED)
                continue
            record = listed.get(request.job_id)
            if record is None:
                record = self._described(request)
            if record is None:
                continue
            if record.get("StatusCode") == "Failed":
                note = str(record.get("StatusMessage") or "the job failed")
                self.state.mark(request.job_id, FAILED, note)
                self.event("failed", f"{request.path}: job {request.job_id} failed: {note}")

    def _described(self, request: Request) -> dict[str, Any] | None:
        """The job's record when the listing lacks it; None when it is not known yet."""
        try:
            return self.client.describe_job(request.job_id)
        except JobExpired:
            self.state.mark(request.job_id, EXPIRED, "expired before its output was saved")
            self.event("expired", f"{request.path}: job expired before its output was saved")
        except TransientServiceError as error:
            log.info("job %s not described now: %s", request.job_id, error)
        except BadResponse as error:  # this job's answer only: the others go on
            REFUSED.warning(repr(request.job_id), "job not described: %s", error)
        return None

    def _wholly_saved(self, request: Request, archive: Archive) -> bool:
        held = self._held_leaves(archive)
        first, stop = request.start >> 20, -(-(request.end + 1) >> 20)
        return covers(of_leaves(held), first, stop)

    # --- deciding -----------------------------------------------------------------------

    def plan(self, snapshot: Snapshot) -> Plan:
        holdings = (h for h in self.holdings(snapshot) if not snapshot.finished(h))
        history, room = self.state.history(), self.room(snapshot)
        plan = make_plan(holdings, history, self.limits, self.tier, snapshot.now, room)
        plan.evicted, plan.capacity = len(snapshot.evicted), self.capacity
        plan.policy = self.policy.words()
        refused = self.state.fact(CAPACITY_FACT)
        if self.tier.tier == "Expedited" and refused is not None:
            plan.notes.append(f"Expedited was refused for lack of capacity at {utc(refused)}")
            plan.notes.append(PROVISIONED)
        return plan

    def room(self, snapshot: Snapshot) -> int | None:
        """Bytes the cache can take for new outputs (:func:`.room.disk_room`)."""
        if self.capacity is None:
            return None
        kept = undelivered_bytes(self.index.root.path, self._records, snapshot.now)
        return disk_room(self.holdings(snapshot), self.capacity, self.held, kept)

    def to_save(self, snapshot: Snapshot) -> list[ToSave]:
        """Outputs ready and not wholly cached, soonest-expiring first (one saved before
        and evicted while its job lives is saved again: it costs no retrieval; read from
        the archives with live jobs only)."""
        done = {r.job_id for r in self.state.requests() if r.status == FAILED}
        chosen = self.selected.lookup(set(snapshot.live) | set(snapshot.pending))
        held = self._held(sorted(chosen.values(), key=lambda a: a.archive_id), snapshot)
        ready = [
            (job.expires, job.job_id, h.archive)
            for h in held
            for job in h.unsaved_jobs()
            if job.status == "Succeeded" and job.job_id not in done
        ]
        self._paths.update((a.archive_id, a.path) for _, _, a in ready)
        return [
            ToSave(j, a.archive_id, a.description) for _, j, a in sorted(ready, key=lambda r: r[:2])
        ]

    def path(self, archive_id: str) -> str:
        """The path of an archive :meth:`to_save` gave (else its id)."""
        return self._paths.get(archive_id, archive_id)

    def _selected_path(self, archive_id: str) -> str:
        """The path of an archive selected, looked up in the store (else its id)."""
        archive = self.selected.lookup([archive_id]).get(archive_id)
        return archive.path if archive is not None else self.path(archive_id)

    def done(self, snapshot: Snapshot) -> bool:
        return all(self._settled(h, snapshot) for h in self.holdings(snapshot))

    def _settled(self, holding: Holding, snapshot: Snapshot) -> bool:
        archive_id = holding.archive.archive_id
        if snapshot.finished(holding) or self.held.given_up(archive_id):
            return True
        held = holding.archive.size == 0 or holding.wholly_cached
        return held and self.held.finished(archive_id)

    # --- requesting ---------------------------------------------------------------------

    def request(self, batch: Sequence[Unit]) -> list[str]:
        """Start a job for each unit, writing each down; the job ids.

        InsufficientCapacity ends the batch and is raised for the caller to report;
        another refusal (say, an archive deleted since the inventory) gives that archive
        up for this run; a transient failure ends the batch, leaving its intent for the
        next look to match with the job it may have started.
        """
        again = {r.archive_id for r in self.state.requests() if r.status in (EXPIRED, FAILED)}
        started = []
        for unit in batch:
            archive = unit.archive
            intent = self.state.intend(
                unit, self.tier.tier, self.now(), archive.archive_id in again
            )
            try:
                job_id = self._initiate(unit)
            except TransientServiceError as error:
                self.event(
                    "note", f"{archive.path}: request not confirmed ({error}); will look again"
                )
                break
            except InsufficientCapacity as error:
                self.state.drop_intent(intent)
                self.state.set_fact(CAPACITY_FACT, self.now())
                raise InsufficientCapacity(f"{error}; {PROVISIONED}") from None
            except PolicyEnforced:
                self.state.drop_intent(intent)
                raise PolicyEnforced(self.policy.refusal(archive.path)) from None
            except ServiceError as error:
                self.state.drop_intent(intent)
                self.refused.add(archive.archive_id)
                self.event("failed", f"{archive.path}: {error}")
                continue
            self.state.requested(intent, job_id, self.now())  # dated by its answer
            started.append(job_id)
            what = "" if unit.whole else f"bytes {unit.start}-{unit.end}, "
            kind = "re-requested" if archive.archive_id in again else "requested"
            self.event(kind, f"{archive.path} ({what}{size(unit.size)}): job {job_id}")
        return started

    def _initiate(self, unit: Unit) -> str:
        """InitiateJob for one unit; its job id. ServiceError when the service refuses,
        or when its answer cannot be this request's: a job id outside its alphabet, or
        one that is already another request's or another listed job's."""
        try:
            job_id = self.client.initiate_retrieval(
                unit.archive.archive_id, self.tier.tier, unit.byte_range, JOB_DESCRIPTION
            )
        except (TransientServiceError, InsufficientCapacity, PolicyEnforced):
            raise
        except BadResponse as error:
            raise ServiceError(f"the service's answer is unusable: {error}") from None
        except ServiceError as error:
            raise ServiceError(f"the service refused the request: {error}") from None
        whose = self._whose(job_id)
        if whose:
            raise ServiceError(
                f"the service answered job id {job_id}, which is already {whose}: "
                "not taken as this request"
            )
        return job_id

    def _whose(self, job_id: str) -> str:
        """Whose job ``job_id`` already is ("" when no one's): a job id the service
        answers InitiateJob with must be new."""
        for r in self.state.requests():
            if r.job_id == job_id:
                return f"the job of {self.path(r.archive_id)}"
        if job_id in self._listed:
            return "another job the service lists"
        return ""

    # --- saving -------------------------------------------------------------------------

    def saved(self, job_id: str) -> None:
        """The output is in the cache (a job not started by this cache has no row)."""
        self.state.mark(job_id, SAVED)

    def save_failed(self, job_id: str, error: str) -> None:
        if self.state.failed_once(job_id) >= MAX_SAVE_FAILURES:
            self.state.mark(job_id, FAILED, f"not saved: {error}")
