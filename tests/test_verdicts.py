"""Verdicts that bind, through real mounts behind a lying proxy: once a file's output is
``mismatch``, every read of it fails with EIO, however short the file and whichever jobs
it is assembled from; and no job is judged, or served, by another job's bytes."""

from __future__ import annotations

import errno
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.emulator import Emulator
from tests.support.liar import Liar
from tests.support.mount import Mount, needs_fuse, wait_for
from tests.support.trust import digest, impersonate, read_error, record, sha256sum, status
from tests.support.vault import inventory, retrieve

pytestmark = needs_fuse

MIB = 1 << 20
VAULT = "verdicts"
FAST = {"retries": "2", "timeout": "20"}


@pytest.fixture
def vault(emulator: Emulator) -> Emulator:
    emulator.client().create_vault(vaultName=VAULT)
    return emulator


def archive_file(mount: Mount, archive: str) -> Path:
    """The file under ``archives/`` of this ArchiveId."""
    for path in (mount.path / "archives").rglob("*"):
        if path.is_file() and os.getxattr(path, "user.glacier.archive_id").decode() == archive:
            return path
    raise AssertionError(f"no file of archive {archive} under archives/")


def refused(path: Path) -> None:
    """Every way of reading the file fails with EIO: open and read, cat, sha256sum."""
    assert read_error(path) == errno.EIO
    assert subprocess.run(["cat", str(path)], capture_output=True).returncode != 0
    assert sha256sum(path)[0] != 0


# --- a verdict on a short or empty file -------------------------------------------


@pytest.mark.expected_logs(r"ArchiveSizeInBytes is 0, the inventory says 3000000")
def test_an_empty_file_whose_size_the_inventory_denies_cannot_be_read(
    vault: Emulator, liar: Liar, mount_factory: Any
) -> None:
    """As a third-party mock answered: ArchiveSizeInBytes 0 for a 3,000,000-byte archive.
    The file is 0 bytes: no read reaches the daemon, so the open fails."""
    archive, _ = vault.seeded_archive(VAULT, 3_000_000, 1, "")
    job = retrieve(vault.client(), VAULT, archive)
    inventory(vault.client(), VAULT)
    liar.lie(job, ArchiveSizeInBytes=0, RetrievalByteRange=None)
    mount: Mount = mount_factory(liar.url, VAULT, FAST)
    wait_for(lambda: status(mount)[job]["problem"] is not None, "the disagreement")
    assert status(mount)[job]["verified"] == "mismatch"
    assert mount.job_file(job).stat().st_size == 0
    refused(mount.job_file(job))
    refused(archive_file(mount, archive))
    mount.stop()
    again: Mount = mount_factory(liar.url, VAULT, FAST, cache_dir=mount.cache_dir)
    refused(again.job_file(job))


def lying_inventory(path: Path, archive: str, size: int, tree_hash: str) -> Path:
    listing = {
        "VaultARN": f"arn:aws:glacier:us-east-1:123456789012:vaults/{VAULT}",
        "InventoryDate": "2026-01-01T00:00:00Z",
        "ArchiveList": [
            {
                "ArchiveId": archive,
                "ArchiveDescription": "a.bin",
                "CreationDate": "2026-01-01T00:00:00Z",
                "Size": size,
                "SHA256TreeHash": tree_hash,
            }
        ],
    }
    path.write_text(json.dumps(listing))
    return path


@pytest.mark.expected_logs(r"ArchiveSizeInBytes is \d+, the inventory says \d+")
def test_a_job_an_inventory_contradicts_is_refused_though_its_bytes_are_cached(
    vault: Emulator, liar: Liar, mount_factory: Any, tmp_path: Path
) -> None:
    """Read whole and verified first; then an inventory that disagrees about its size:
    ``mismatch``, and the cached bytes are no longer served."""
    size = 2 * MIB + 7
    archive, tree_hash = vault.seeded_archive(VAULT, size, 2, "")
    job = retrieve(vault.client(), VAULT, archive)
    first: Mount = mount_factory(liar.url, VAULT, FAST)
    assert sha256sum(first.job_file(job)) == (0, digest(vault.content(VAULT, archive)))
    first.stop()
    listing = lying_inventory(tmp_path / "inventory.json", archive, size + 1, tree_hash)
    options = {**FAST, "inventory": str(listing)}
    mount: Mount = mount_factory(liar.url, VAULT, options, cache_dir=first.cache_dir)
    wait_for(lambda: status(mount)[job]["problem"] is not None, "the disagreement")
    assert status(mount)[job]["verified"] == "mismatch"
    refused(mount.job_file(job))
    refused(archive_file(mount, archive))


# --- an archive assembled from range jobs -------------------------------------------


@pytest.mark.expected_logs(r"archive/\S+: .*tree hash")
def test_an_archive_assembled_from_ranges_that_fails_its_tree_hash_is_never_read_whole(
    vault: Emulator, liar: Liar, mount_factory: Any
) -> None:
    """One range job sends another archive's first MiB, with a tree hash of its own that
    matches it: each job checks out, the archive does not. The read that completes it
    fails, and every later one, in this mount and the next."""
    size = 3 * MIB + 5
    other, _ = vault.seeded_archive(VAULT, size, 21, "other.bin")
    archive, _ = vault.seeded_archive(VAULT, size, 22, "b.bin")
    inventory(vault.client(), VAULT)
    head = retrieve(vault.client(), VAULT, other, f"0-{MIB - 1}")
    tail = retrieve(vault.client(), VAULT, archive, f"{MIB}-{size - 1}")
    truth = record(vault, VAULT, tail)
    liar.lie(
        head,
        ArchiveId=archive,
        ArchiveSHA256TreeHash=truth["ArchiveSHA256TreeHash"],
        ArchiveSizeInBytes=size,
    )
    mount: Mount = mount_factory(liar.url, VAULT, FAST)
    path = mount.path / "archives" / "b.bin"
    for _ in range(2):
        assert sha256sum(path)[0] != 0
    assert os.getxattr(path, "user.glacierfs.verified") == b"mismatch"
    assert status(mount)[tail]["verified"] == "size"  # the jobs are not blamed
    assert mount.job_file(tail).read_bytes() == vault.content(VAULT, archive)[MIB:]
    mount.stop()
    again: Mount = mount_factory(liar.url, VAULT, FAST, cache_dir=mount.cache_dir)
    refused(again.path / "archives" / "b.bin")


# --- a claimer and the genuine job, names from the first-block probe ------------------


@pytest.mark.expected_logs(r"job \S+: SHA256TreeHash", r"job \S+ is damaged")
@pytest.mark.parametrize("first", ["claimer", "genuine"])
def test_a_claimer_probed_for_a_name_never_poisons_the_genuine_job(
    vault: Emulator, liar: Liar, mount_factory: Any, first: str
) -> None:
    """No inventory: the archive's name comes from the first leaf of one of its jobs.
    The claimer (another archive's bytes under the genuine job's whole record) completed
    first, so it is the one probed; its leaf serves only itself."""
    size = 4 * MIB + 9
    stranger, _ = vault.seeded_archive(VAULT, size, 31, "a.bin")
    archive, _ = vault.seeded_archive(VAULT, size, 32, "b.bin")
    claimer = retrieve(vault.client(), VAULT, stranger)
    genuine = retrieve(vault.client(), VAULT, archive)
    impersonate(liar, vault, VAULT, claimer, genuine)
    truth = vault.content(VAULT, archive)
    mount: Mount = mount_factory(liar.url, VAULT, FAST)
    order = [claimer, genuine] if first == "claimer" else [genuine, claimer]
    for job in order:
        if job == genuine:
            assert sha256sum(mount.job_file(job)) == (0, digest(truth))
        else:
            refused(mount.job_file(job))
    states = status(mount)
    assert states[genuine]["verified"] == "tree-hash"
    assert states[genuine]["damaged"] is None and states[genuine]["problem"] is None
    mount.stop()
    liar.hide(claimer)
    again: Mount = mount_factory(liar.url, VAULT, FAST, cache_dir=mount.cache_dir)
    assert sha256sum(again.job_file(genuine)) == (0, digest(truth))
    assert status(again)[genuine]["damaged"] is None
