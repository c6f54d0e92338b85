"""`glacierfs status` on a mount shows the retrievals `glacierfs retrieve` started on its
cache while they are in progress, with when they should complete, and as ready once the
service has completed them: through a real mount, the emulator and its clock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.emulator import Emulator
from tests.support.mount import Mount, isolated_env, needs_fuse, wait_for
from tests.support.retrieve import (
    FLAGS,
    HOUR,
    MIB,
    Retrieve,
    advance,
    history,
    seed,
    take_inventory,
)

pytestmark = needs_fuse

VAULT = "status-retrievals"
BULK = 6 * HOUR
"""The emulator's Bulk time here: one fixed time inside Bulk's typical 5 to 12 hours."""


def status(mount: Mount, *argv: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "glacierfs", "status", *argv, str(mount.path)],
        capture_output=True,
        text=True,
        env=isolated_env(),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result


def retrievals(mount: Mount) -> list[dict[str, Any]]:
    document = json.loads(status(mount, "--json").stdout)
    assert document["retrievals_problem"] is None
    return list(document["retrievals"])


def test_status_shows_a_bulk_retrieval_in_progress_then_ready(
    emulator_factory: Callable[..., Emulator], mount_factory: Callable[..., Mount], tmp_path: Path
) -> None:
    emulator = emulator_factory(*FLAGS, "--tier-delay", f"Bulk={BULK:.0f}")
    seed(emulator, VAULT, {"photos/2019/a.jpg": MIB + 3, "notes.txt": 500})
    take_inventory(emulator, VAULT)
    cache = tmp_path / "cache"
    mount = mount_factory(emulator.url, VAULT, cache_dir=cache)
    assert retrievals(mount) == []  # no state yet: nothing in progress
    started = Retrieve(emulator, VAULT, cache, tmp_path / "retrieve.log").run(
        "photos/**", "--yes", "--tier", "Bulk"
    )
    assert started.returncode == 0, started.stderr
    (job,) = history(emulator)

    (waiting,) = retrievals(mount)
    assert (waiting["job_id"], waiting["archive_id"]) == (job["JobId"], job["ArchiveId"])
    assert (waiting["state"], waiting["tier"], waiting["path"]) == (
        "in progress",
        "Bulk",
        "photos/2019/a.jpg",
    )
    assert waiting["expected"] == [
        waiting["requested"] + 5 * HOUR,
        waiting["requested"] + 12 * HOUR,
    ]
    assert waiting["completed"] is None and waiting["size"] == MIB + 3
    table = status(mount).stdout
    assert "retrievals (glacierfs retrieve): 1 in progress, 0 ready" in table
    assert job["JobId"][:25] in table and "photos/2019/a.jpg" in table

    advance(emulator, BULK + 60)
    os.kill(mount.pid, signal.SIGHUP)  # the mount lists completed jobs once it has looked
    wait_for(lambda: (mount.path / "jobs" / job["JobId"]).exists(), "the completed job")
    (ready,) = retrievals(mount)
    assert (ready["job_id"], ready["state"]) == (job["JobId"], "ready")
    # Completed by the service's clock within the window status expected.
    assert waiting["expected"][0] <= ready["completed"] <= waiting["expected"][1]
    assert "1 in progress" not in status(mount).stdout
    assert "0 in progress, 1 ready" in status(mount).stdout
