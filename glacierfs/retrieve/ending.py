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
    archives = total = cached = verified = 0
    for holding in engine.holdings(snapshot):
        archives += 1
        total += holding.archive.size
        if holding.wholly_cached:
            cached += 1
            verified += engine.index.verified(holding.archive, engine.vault_arn)
    return {
        "archives": archives,
        "bytes": total,
        "cached": cached,
        "verified": verified,
        "re_requested": len({r.archive_id for r in requests if r.again}),
        "failed": len(snapshot.given_up),
        "evicted": len(snapshot.evicted),
        "jobs": len(requests),
        "spent": round(spent, 6),
    }
