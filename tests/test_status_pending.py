"""Retrievals in progress as `status` shows them: the pure turn of state rows into pending
entries, and the read-only look at a state another process is writing."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from glacierfs.cacheroot import open_root
from glacierfs.retrieve.pacing import Unit
from glacierfs.retrieve.pending import IN_PROGRESS, READY, pending, read_requests
from glacierfs.retrieve.pricing import HOUR, PRICES
from glacierfs.retrieve.selection import Archive
from glacierfs.retrieve.state import EXPIRED, FAILED, REQUESTED, SAVED, Request, State

MIB = 1 << 20
ARN = "arn:aws:glacier:us-east-1:123456789012:vaults/v"


def request(
    job_id: str, status: str = REQUESTED, tier: str = "Bulk", at: float = 1000.0
) -> Request:
    return Request(job_id, f"archive-{job_id}", f"dir/{job_id}", 0, MIB - 1, True, tier, at, False,
                   status, 0)  # fmt: skip


def test_only_requests_not_yet_dealt_with_are_pending_each_within_its_tiers_times() -> None:
    rows = [
        request("saved", SAVED),
        request("expired", EXPIRED),
        request("failed", FAILED),
        request("bulk", at=5000.0),
        request("standard", tier="Standard", at=2000.0),
    ]
    found = pending(rows, {})
    assert [(p.request.job_id, p.state) for p in found] == [
        ("standard", IN_PROGRESS),
        ("bulk", IN_PROGRESS),
    ]
    assert found[0].expected == (2000.0 + 3 * HOUR, 2000.0 + 5 * HOUR)
    assert found[1].expected == (5000.0 + PRICES["Bulk"].ready[0], 5000.0 + 12 * HOUR)
    assert found[1].completed is None and found[1].request.size == MIB


def test_a_request_the_mount_lists_is_ready_at_the_services_completion_time() -> None:
    (found,) = pending([request("done")], {"done": 9999.0, "someone else's job": 1.0})
    assert (found.state, found.completed, found.expected) == (READY, 9999.0, (9999.0, 9999.0))
    document = found.as_dict()
    assert document["state"] == "ready" and document["range"] is None
    assert document["path"] == "dir/done" and document["tier"] == "Bulk"


def test_a_tier_the_price_table_does_not_know_has_no_window() -> None:
    (found,) = pending([request("odd", tier="Glacial")], {})
    assert (found.state, found.expected) == (IN_PROGRESS, None)


def test_a_range_request_says_which_bytes() -> None:
    row = Request("r", "A", "big", MIB, 2 * MIB - 1, False, "Bulk", 0.0, False, REQUESTED, 0)
    (found,) = pending([row], {})
    assert found.as_dict()["range"] == [MIB, 2 * MIB - 1] and found.request.size == MIB


def test_no_state_means_no_retrievals(tmp_path: Path) -> None:
    assert read_requests(tmp_path / "no such cache", ARN) == []
    assert read_requests(tmp_path, ARN) == []
    assert not (tmp_path / "retrieve").exists()  # looking created nothing


def test_the_state_is_read_while_a_writer_holds_it_and_without_its_lock(tmp_path: Path) -> None:
    archive = Archive("A", 5 * MIB, "00" * 32, 0.0, "", "a/b")
    with (
        open_root(tmp_path) as root,
        State(root, ARN) as state,
        State(root, "another vault") as other,
    ):
        state.lock()
        state.requested(state.intend(Unit(archive, 0, MIB - 1, False), "Bulk", 100.0, False), "J1")
        other.requested(other.intend(Unit(archive, 0, MIB - 1, True), "Bulk", 100.0, False), "J9")
        writer = sqlite3.connect(tmp_path / "retrieve" / "state.sqlite3", isolation_level=None)
        writer.execute("BEGIN IMMEDIATE")  # retrieve in the middle of a write
        writer.execute("UPDATE requests SET status = 'saved' WHERE job_id = 'J1'")
        try:
            (row,) = read_requests(tmp_path, ARN)  # only this vault's, the last committed
        finally:
            writer.execute("ROLLBACK")
            writer.close()
        assert (row.job_id, row.status, row.start, row.end, row.whole) == (
            "J1",
            REQUESTED,
            0,
            MIB - 1,
            False,
        )
        assert state.requests() == [row]  # what the state itself reads
