"""What a ``--follow`` run says at its end: archives saved and verified, jobs, money.

Read from the selection a batch at a time (:meth:`.engine.Engine.holdings`), as every
pass over a selection of millions is.
"""

from __future__ import annotations

from typing import Any

from glacierfs.retrieve.engine import Engine, Snapshot
from glacierfs.retrieve.pricing import cost, price


def summarise(engine: Engine, snapshot: Snapshot) -> dict[str, Any]:
    requests = engine.state.requests()
    chosen = engine.selected.lookup(r.archive_id for r in requests)
    requests = [r for r in requests if r.archive_id in chosen]
    spent = sum(cost(price(r.tier), r.size, 1) for r in requests)
    held = engine.held  # what delivery took out of the cache
    archives = total = cached = verified = delivered = failed = 0
    for holding in engine.holdings(snapshot):
        archive = holding.archive
        archives += 1
        total += archive.size
        delivered += held.delivered(archive.archive_id)
        failed += held.given_up(archive.archive_id)
        if holding.wholly_cached:
            cached += 1
            verified += held.delivered(archive.archive_id) or engine.index.verified(
                archive, engine.vault_arn
            )
    return {
        "archives": archives,
        "bytes": total,
        "cached": cached,
        "verified": verified,
        "re_requested": len({r.archive_id for r in requests if r.again}),
        "failed": len(snapshot.given_up) + failed,
        "delivered": delivered,
        "evicted": len(snapshot.evicted),
        "jobs": len(requests),
        "spent": round(spent, 6),
    }
