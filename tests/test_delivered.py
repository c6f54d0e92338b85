"""The delivery record: archives delivered or released, kept with the retrieval state."""

from __future__ import annotations

from pathlib import Path

import pytest

from glacierfs.cacheroot import open_root
from glacierfs.jobs import Job
from glacierfs.retrieve.delivered import (
    DELIVERED_TO,
    RELEASED,
    DeliveryRecord,
    delivered_keys,
    read_deliveries,
)
from glacierfs.retrieve.state import State

VAULT = "arn:aws:glacier:us-east-1:123:vaults/v"
HASH = "ab" * 32


def test_an_archive_recorded_is_delivered_and_recording_again_keeps_the_first(
    tmp_path: Path,
) -> None:
    with DeliveryRecord.open(tmp_path) as record:
        assert not record.is_delivered(VAULT, "A")
        assert record.record(VAULT, "A", HASH, 10, DELIVERED_TO, "/dest/a", at=5.0)
        assert not record.record(VAULT, "A", HASH, 10, RELEASED, "again", at=6.0)
        assert record.is_delivered(VAULT, "A")
        assert not record.is_delivered(VAULT, "B")
        assert not record.is_delivered("other", "A")
        found = record.delivery(VAULT, "A")
        assert found is not None and (found.how, found.target, found.at) == (
            DELIVERED_TO,
            "/dest/a",
            5.0,
        )
        assert [d.archive_id for d in record.deliveries(VAULT)] == ["A"]
        assert record.deliveries("other") == []


def test_the_record_is_read_beside_the_retrieval_state_without_writing(tmp_path: Path) -> None:
    assert read_deliveries(tmp_path) == [] and delivered_keys(tmp_path) == frozenset()
    with open_root(tmp_path) as root, State(root, VAULT):  # the state file, no table yet
        assert delivered_keys(tmp_path) == frozenset()
    with (
        open_root(tmp_path) as root,
        DeliveryRecord.open(tmp_path) as record,
        State(root, VAULT) as state,
    ):
        record.record(VAULT, "A", HASH, 10, RELEASED, "a.tar")
        record.record(VAULT, "B", None, 3, RELEASED, "b.tar")
        assert state.requests() == []
    job = Job("j", "archive", 10, 0.0, 0.0, VAULT, "A", 10, HASH)
    untreed = Job("k", "archive", 3, 0.0, 0.0, VAULT, "B", 3, None)
    assert delivered_keys(tmp_path) == {job.cache_key, untreed.cache_key}
    assert [d.archive_id for d in read_deliveries(tmp_path, VAULT)] == ["A", "B"]


def test_the_delivery_log_refuses_a_planted_symlink_and_writes_nothing_through_it(
    tmp_path: Path,
) -> None:
    from glacierfs.errors import ConfigError
    from glacierfs.retrieve.progress_log import DeliveryLog

    root, victim = tmp_path / "cache", tmp_path / "victim"
    root.mkdir(mode=0o700)
    victim.mkdir(mode=0o700)
    (root / "retrieve").symlink_to(victim)
    with pytest.raises(ConfigError):
        DeliveryLog(root, "vault")
    assert list(victim.iterdir()) == []
