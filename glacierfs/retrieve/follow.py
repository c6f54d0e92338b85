"""``retrieve --follow``: look, save, request, wait; until every selected archive is saved.

Each round is one look at the service (:meth:`.engine.Engine.look`): outputs that are
ready are saved first, soonest-expiring first, through whichever process holds the
cache (:mod:`.save`); then the next batch is requested as the caps allow. An output
that expired before it was wholly saved shows up as an expired request, and its
archive is requested again in a later round. The loop ends when every archive is
cached (or given up), with a summary. A round the service fails (throttling, an
unreachable endpoint) is tried again at the next one. Stopped at any moment
(``kill -9``, a reboot), it continues from the state kept with the cache when started
again.

On a terminal, one status line is redrawn (requested, ready, saved, bytes, rate, time
left); elsewhere (systemd's journal, a pod's log) each event is one line.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from glacierfs.config import HEARTBEAT
from glacierfs.errors import ConfigError, TransientServiceError
from glacierfs.humane import plural, size
from glacierfs.logs import escape
from glacierfs.read.ledger import TREE_HASH
from glacierfs.retrieve.delivery import Deliverer
from glacierfs.retrieve.ending import summarise
from glacierfs.retrieve.engine import Engine
from glacierfs.retrieve.heartbeat import heartbeat_line
from glacierfs.retrieve.plan import Plan
from glacierfs.retrieve.pricing import dollars
from glacierfs.retrieve.save import UNCHECKABLE, Access, Saved, ToSave

RATE_FACT = "download_rate"
RATE_SAMPLE = 1 << 20
"""Saves of fewer bytes than this say more about latency than about the link's rate."""


class Progress:
    """Events and a status line, for a terminal or a log.

    On a terminal the status line is redrawn at every round; elsewhere it is written as
    a ``status:`` line once every ``heartbeat`` seconds (the first round's at once), so
    that a journal shows the run alive through the hours a Bulk job takes.
    """

    def __init__(self, out: TextIO = sys.stderr, heartbeat: float = HEARTBEAT) -> None:
        self.out = out
        self.tty = out.isatty()
        self.heartbeat = heartbeat
        self._status = ""
        self._beat: float | None = None

    def event(self, kind: str, text: str) -> None:
        line = escape(f"{kind}: {text}")  # paths, job ids, the service's messages
        if self.tty:
            print(f"\r\033[K{line}\n{self._status}", end="", file=self.out, flush=True)
        else:
            print(f"glacierfs retrieve: {line}", file=self.out, flush=True)

    def status(self, text: str) -> None:
        self._status = text = escape(text)
        if self.tty:
            print(f"\r\033[K{text}", end="", file=self.out, flush=True)
            return
        now = time.monotonic()
        if self._beat is None or now - self._beat >= self.heartbeat:
            self._beat = now
            self.event("status", text)

    def close(self) -> None:
        if self.tty and self._status:
            print(file=self.out, flush=True)


class Follower:
    def __init__(
        self,
        engine: Engine,
        access: Callable[[], Access],
        poll: float,
        progress: Progress,
        deliverer: Deliverer | None = None,
    ) -> None:
        self.engine, self.access, self.poll, self.progress = engine, access, poll, progress
        self.deliverer = deliverer
        self._full_since: float | None = None  # when the cache was last said to be full
        self._announced: set[str] = set()
        self._rate: float | None = engine.state.fact(RATE_FACT)

    def run(self) -> dict[str, Any]:
        """Round after round until done; the summary."""
        try:
            while True:
                try:
                    summary = self._round()
                except TransientServiceError as error:
                    self.progress.event("note", f"the service failed this round: {error}")
                    summary = None
                if summary is not None:
                    return summary
                time.sleep(self.poll)  # jobs take hours: look again later
        finally:
            self.progress.close()

    def _round(self) -> dict[str, Any] | None:
        """One look, the saves and the requests it calls for; the summary once done."""
        snapshot = self.engine.look()
        ready = self.engine.to_save(snapshot)
        if ready:
            self._save(ready)
            snapshot = self.engine.snapshot(snapshot.now, snapshot.live)
        if self.deliverer is not None and self.deliverer.deliver(self.engine.index):
            snapshot = self.engine.snapshot(snapshot.now, snapshot.live)
        if self.engine.done(snapshot):
            return summarise(self.engine, snapshot)
        plan = self.engine.plan(snapshot)
        self.engine.request(plan.batch)
        self._say_if_full(plan)
        self.progress.status(self._line(plan))
        return None

    def _say_if_full(self, plan: Plan) -> None:
        """Once when the cache stops the requests, and at each heartbeat (``HEARTBEAT``
        seconds) while it does."""
        blocked = (  # by saved outputs, not by outputs on their way
            plan.room is not None
            and plan.outstanding == 0
            and plan.next is not None
            and plan.next.size > plan.room
        )
        if not blocked:
            self._full_since = None
            return
        now = time.monotonic()
        if self._full_since is not None and now - self._full_since < HEARTBEAT:
            return
        self._full_since = now
        how = "delivering as they come; " if self.deliverer is not None else ""
        self.progress.event(
            "waiting",
            f"the cache ({size(plan.capacity or 0)}) is full of outputs not yet delivered, "
            f"{size(max(plan.room or 0, 0))} free for new outputs: {how}deliver them "
            "(--deliver-to DIR, --deliver-exec CMD, glacierfs deliver), release them "
            "(glacierfs release) or raise -o cache_size; nothing is requested until then",
        )

    def _save(self, ready: list[ToSave]) -> None:
        for item in ready:
            if item.job_id not in self._announced:
                self._announced.add(item.job_id)
                self.progress.event(
                    "ready", f"{self.engine.path(item.archive_id)}: job {item.job_id}"
                )
        try:
            access = self.access()
        except ConfigError as error:
            self.progress.event("note", f"not saving now: {error}")
            return
        paths = {item.job_id: self.engine.path(item.archive_id) for item in ready}
        started, saved = time.monotonic(), 0

        def report(result: Saved) -> None:
            nonlocal saved
            where = paths.get(result.job_id, result.job_id)
            if result.ok:
                saved += result.size
                self.engine.saved(result.job_id)
                verified = result.verified + ("" if result.verified == TREE_HASH else UNCHECKABLE)
                self.progress.event("saved", f"{where}: {result.size} bytes, verified={verified}")
            else:
                self.engine.save_failed(result.job_id, result.error)
                self.progress.event("note", f"{where}: not saved yet: {result.error}")

        try:
            access.save(ready, report)
        except ConfigError as error:  # say, a mount took the cache since we looked
            self.progress.event("note", f"not saving now: {error}")
        self._measure(saved, time.monotonic() - started)

    def _measure(self, nbytes: int, seconds: float) -> None:
        if nbytes < RATE_SAMPLE or seconds <= 0:
            return
        rate = nbytes / seconds
        self._rate = rate if self._rate is None else 0.7 * self._rate + 0.3 * rate
        self.engine.state.set_fact(RATE_FACT, self._rate)

    def _line(self, plan: Plan) -> str:
        return heartbeat_line(plan, self.engine.state.history(), self._rate)


def render_summary(summary: dict[str, Any]) -> str:
    return (
        f"done: {plural(summary['archives'], 'archive')}, {size(summary['bytes'])}; "
        f"{summary['cached']} saved, {summary['verified']} verified against their tree hash, "
        f"{summary['re_requested']} re-requested, {summary['failed']} failed"
        + (f", {summary['delivered']} delivered" if summary.get("delivered") else "")
        + (
            f", {summary['evicted']} evicted from the cache since saved"
            if summary["evicted"]
            else ""
        )
        + "; "
        f"{plural(summary['jobs'], 'job')}, about {dollars(summary['spent'])} spent on retrieval"
    )
