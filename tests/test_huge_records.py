"""Records of the largest archives the service holds (32 TiB), and of sizes it cannot
hold (2^70 bytes), through a real mount and real `retrieve` runs: the first are shown,
refreshed and planned as a small one is (their work is counted in test_intervals.py),
the second refused with one line."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.emulator import Emulator
from tests.support.mount import Mount, needs_fuse, wait_for
from tests.support.retrieve import FLAGS, Retrieve
from tests.support.vault import retrieve, sample, upload

VAULT = "huge"
BIG = 1 << 45  # 32 TiB
ABSURD = 1 << 70


def listing(archives: list[tuple[str, str, int]], tree_hash: str = "0" * 64) -> dict[str, Any]:
    return {
        "VaultARN": f"arn:aws:glacier:us-east-1:123456789012:vaults/{VAULT}",
        "InventoryDate": "2026-01-01T00:00:00Z",
        "ArchiveList": [
            {
                "ArchiveId": archive_id,
                "ArchiveDescription": description,
                "CreationDate": "2025-01-01T00:00:00Z",
                "Size": size,
                "SHA256TreeHash": tree_hash,
            }
            for archive_id, description, size in archives
        ],
    }


def test_retrieve_plans_a_32_tib_archive_in_pieces_and_refuses_2_70_bytes_in_a_line_each(
    emulator_factory: Callable[..., Emulator], tmp_path: Path
) -> None:
    emulator = emulator_factory(*FLAGS)
    client = emulator.client()
    client.create_vault(vaultName=VAULT)
    absurd_job = retrieve(client, VAULT, upload(client, VAULT, b"x"))  # in progress
    emulator.set_job(absurd_job, ArchiveSizeInBytes=ABSURD)
    inventory = tmp_path / "inventory.json"
    archives = [("BIG", "big.bin", BIG), ("ABSURD\x1b[2J", "absurd.bin", ABSURD)]
    inventory.write_text(json.dumps(listing([*archives, ("SMALL", "small.txt", 10)])))
    run = Retrieve(emulator, VAULT, tmp_path / "cache", tmp_path / "log")
    # A piece is at most a quarter of the cache (issue 21) and a day's cap: with 8 TiB of
    # cache, the 1 TiB cap makes them 1 TiB.
    options = f"inventory={inventory},cache_size=8T"
    argv = ("-o", options, "--all", "--dry-run", "--max-bytes-per-day", "1T")
    result = run.run(*argv, "--json")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.strip().splitlines()  # one for the entry, one for the job record
    assert len(lines) == 2 and all(str(ABSURD) in line for line in lines), lines
    assert "\x1b" not in result.stderr and absurd_job in result.stderr
    plan = json.loads(result.stdout)
    assert (plan["selected"], plan["selected_bytes"]) == (2, BIG + 10)
    assert (plan["jobs"], plan["split"], plan["bytes"]) == (33, 1, BIG + 10)  # 32 pieces of 1 TiB


@needs_fuse
def test_a_mount_shows_and_refreshes_a_job_record_of_32_tib(
    emulator: Emulator, mount_factory: Callable[..., Mount], tmp_path: Path
) -> None:
    client = emulator.client()
    client.create_vault(vaultName=VAULT)
    uploaded = client.upload_archive(vaultName=VAULT, body=sample(5000, 1))
    archive, tree_hash = uploaded["archiveId"], uploaded["checksum"]
    job = retrieve(client, VAULT, archive)
    # What a job of a 32 TiB archive says (its bytes are never read here).
    emulator.set_job(job, ArchiveSizeInBytes=BIG, RetrievalByteRange=f"0-{BIG - 1}")
    inventory = tmp_path / "inventory.json"  # names without reading the output's header
    inventory.write_text(json.dumps(listing([(archive, "big.bin", BIG)], tree_hash)))
    mount = mount_factory(emulator.url, VAULT, {"inventory": str(inventory)})
    big = mount.path / "archives" / "big.bin"
    assert big.stat().st_size == BIG and mount.job_file(job).stat().st_size == BIG
    assert os.getxattr(big, "user.glacierfs.cached") == b"0"
    assert os.getxattr(big, "user.glacierfs.state") == b"remote"
    other = retrieve(client, VAULT, upload(client, VAULT, b"small", "small.txt"))
    os.kill(mount.pid, signal.SIGHUP)
    wait_for(lambda: mount.job_file(other).exists(), "a refresh with the 32 TiB record")
    assert big.stat().st_size == BIG
    assert " ERROR " not in mount.log() and " WARNING " not in mount.log(), mount.log()
