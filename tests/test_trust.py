"""Answers that lie, through real mounts: no job's bytes are served as another's.

Every test mounts through the lying proxy (tests/support/liar.py) in front of the
honest emulator, so the truth is always at hand to compare with: a job record that
claims another archive, a size that disagrees with the inventory, an inventory body
shorter than its record, a checksum header left out where the spec says it comes.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.emulator import Emulator
from tests.support.liar import Liar
from tests.support.mount import Mount, cmp, isolated_env, needs_fuse, wait_for
from tests.support.trust import digest, read_error, sha256sum, status
from tests.support.vault import inventory, retrieve

pytestmark = needs_fuse

MIB = 1 << 20
VAULT = "trust"
SIZE = 6 * MIB + 17
FAST = {"retries": "2", "timeout": "20"}


def record(emulator: Emulator, job: str) -> dict[str, Any]:
    return dict(emulator.client().describe_job(vaultName=VAULT, jobId=job))


def archive_job(emulator: Emulator, seed: int, size: int = SIZE) -> tuple[str, str, bytes]:
    """A seeded archive and a full retrieval of it: (job, archive, its bytes)."""
    archive, _ = emulator.seeded_archive(VAULT, size, seed, "")
    return retrieve(emulator.client(), VAULT, archive), archive, emulator.content(VAULT, archive)


@pytest.fixture
def vault(emulator: Emulator) -> Emulator:
    emulator.client().create_vault(vaultName=VAULT)
    return emulator


def text_status(mount: Mount) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "glacierfs", "status", str(mount.path)],
        capture_output=True,
        text=True,
        env=isolated_env(),
        check=True,
    )
    return done.stdout


def xattr(path: Path, name: str) -> str:
    return os.getxattr(path, name).decode()


def claim(liar: Liar, emulator: Emulator, claimer: str, genuine: str, hashes: bool) -> None:
    """Make ``claimer``'s record name ``genuine``'s archive (its tree hash and size), and
    with ``hashes`` its output's tree hash too, so that the record agrees with itself."""
    truth = record(emulator, genuine)
    fields = {name: truth[name] for name in ("ArchiveSHA256TreeHash", "ArchiveSizeInBytes")}
    fields["RetrievalByteRange"] = truth["RetrievalByteRange"]
    if hashes:
        fields["SHA256TreeHash"] = truth["SHA256TreeHash"]
    liar.lie(claimer, **fields)


# --- a job that claims another archive -----------------------------------------------


@pytest.mark.parametrize("first", ["claimer", "genuine"])
@pytest.mark.parametrize("claimer_size", [SIZE, 3 * MIB + 5])
def test_a_job_claiming_another_archive_is_refused_and_the_genuine_file_stays_right(
    vault: Emulator, liar: Liar, mount_factory: Any, first: str, claimer_size: int
) -> None:
    genuine, _, truth = archive_job(vault, 1)
    claimer, _, own = archive_job(vault, 2, claimer_size)
    claim(liar, vault, claimer, genuine, hashes=False)
    mount: Mount = mount_factory(liar.url, VAULT, FAST)
    order = [claimer, genuine] if first == "claimer" else [genuine, claimer]
    for job in order:
        code, summed = sha256sum(mount.job_file(job))
        if job == genuine:
            assert (code, summed) == (0, digest(truth))
        else:
            assert code != 0 and summed not in (digest(truth), digest(own))
    assert read_error(mount.job_file(claimer)) == errno.EIO  # every later read too
    assert vault.job_bytes(claimer) == 0  # refused on its record alone: nothing fetched
    states = status(mount)
    assert states[claimer]["verified"] == "mismatch"
    assert "SHA256TreeHash" in states[claimer]["problem"]
    assert states[genuine]["verified"] == "tree-hash" and states[genuine]["problem"] is None
    assert f"problem: {claimer}: SHA256TreeHash" in text_status(mount)
    assert f"job {claimer}: SHA256TreeHash" in mount.log()


def test_a_consistent_claimer_read_first_fails_and_never_reaches_the_genuine_file(
    vault: Emulator, liar: Liar, mount_factory: Any
) -> None:
    """The claimer's record names the other archive everywhere: its bytes betray it."""
    genuine, _, truth = archive_job(vault, 3)
    claimer, _, own = archive_job(vault, 4)
    claim(liar, vault, claimer, genuine, hashes=True)
    mount: Mount = mount_factory(liar.url, VAULT, FAST)
    with mount.job_file(claimer).open("rb") as stream:  # half, then the rest
        try:
            assert stream.read(3 * MIB) == own[: 3 * MIB]  # its own bytes, checked as it went
        except OSError as error:  # or read-ahead already completed, and so condemned, it
            assert error.errno == errno.EIO
        with pytest.raises(OSError) as raised:
            stream.read()
    assert raised.value.errno == errno.EIO  # the read that completes it
    assert sha256sum(mount.job_file(claimer))[0] != 0
    assert sha256sum(mount.job_file(genuine)) == (0, digest(truth))
    # None of the claimer's leaves was taken: the genuine job fetched its whole output. Its
    # first leaf, fetched at mount for its name, may be fetched twice: the disk cache
    # keeps one leaf per index, and the claimer's put of its own first leaf replaced it.
    assert SIZE <= vault.job_bytes(genuine) <= SIZE + MIB
    states = status(mount)
    assert states[claimer]["verified"] == "mismatch"
    assert "SHA256TreeHash" in states[claimer]["problem"]
    assert states[genuine]["verified"] == "tree-hash"
    mount.stop()
    again: Mount = mount_factory(liar.url, VAULT, FAST, cache_dir=mount.cache_dir)
    assert sha256sum(again.job_file(genuine)) == (0, digest(truth))
    assert read_error(again.job_file(claimer)) == errno.EIO  # the verdict is kept


def test_a_consistent_claimer_of_another_size_is_refused_at_its_first_response(
    vault: Emulator, liar: Liar, mount_factory: Any
) -> None:
    genuine, _, truth = archive_job(vault, 14)
    claimer, _, _ = archive_job(vault, 15, 3 * MIB + 5)
    claim(liar, vault, claimer, genuine, hashes=True)
    mount: Mount = mount_factory(liar.url, VAULT, FAST)
    assert read_error(mount.job_file(claimer)) == errno.EIO
    assert sha256sum(mount.job_file(genuine)) == (0, digest(truth))
    problem = status(mount)[claimer]["problem"]
    assert f"ArchiveSizeInBytes says {SIZE} bytes, the service sends {3 * MIB + 5}" in problem
    asked = vault.job_requests(claimer)
    assert read_error(mount.job_file(claimer)) == errno.EIO
    assert vault.job_requests(claimer) == asked


def test_the_genuine_job_read_between_a_claimers_reads_stays_right(
    vault: Emulator, liar: Liar, mount_factory: Any
) -> None:
    genuine, _, truth = archive_job(vault, 5)
    claimer, _, own = archive_job(vault, 6)
    claim(liar, vault, claimer, genuine, hashes=True)
    mount: Mount = mount_factory(liar.url, VAULT, FAST)
    with mount.job_file(claimer).open("rb") as stream:
        try:
            assert stream.read(2 * MIB) == own[: 2 * MIB]  # its own bytes, checked as they came
        except OSError as error:  # or read-ahead already completed, and so condemned, it
            assert error.errno == errno.EIO
        cmp_ok = mount.job_file(genuine).read_bytes() == truth  # shares the archive
        assert cmp_ok
        rest = b""
        try:
            rest = stream.read()
        except OSError as error:
            assert error.errno == errno.EIO
        else:  # never a file made of the claimer's bytes and the archive's
            pytest.fail(f"the claimer's file read whole: {len(rest)} more bytes")
    assert mount.job_file(genuine).read_bytes() == truth
    assert status(mount)[claimer]["verified"] == "mismatch"


def test_a_genuine_job_shares_its_archive_with_a_later_job_of_it(
    vault: Emulator, liar: Liar, mount_factory: Any, tmp_path: Path
) -> None:
    """Once its tree hash proves the archive whole, another job of it fetches nothing."""
    first, archive, truth = archive_job(vault, 7)
    second = retrieve(vault.client(), VAULT, archive, f"{2 * MIB}-{4 * MIB - 1}")
    inventory(vault.client(), VAULT)  # names from it: no job's first leaf is read for one
    mount: Mount = mount_factory(liar.url, VAULT, FAST)
    assert mount.job_file(first).read_bytes() == truth
    assert mount.job_file(second).read_bytes() == truth[2 * MIB : 4 * MIB]
    assert vault.job_bytes(second) == 0
    assert xattr(mount.job_file(second), "user.glacierfs.verified") == "tree-hash"


# --- what the service says twice --------------------------------------------------


def test_an_archive_size_of_zero_against_the_inventory_is_reported_not_verified(
    vault: Emulator, liar: Liar, mount_factory: Any
) -> None:
    """As a third-party mock answered: ArchiveSizeInBytes 0 for a 3 MB archive."""
    job, _, _ = archive_job(vault, 8, 3 * MIB)
    listing = inventory(vault.client(), VAULT)
    liar.lie(job, ArchiveSizeInBytes=0, RetrievalByteRange=None)
    mount: Mount = mount_factory(liar.url, VAULT, FAST)
    assert mount.job_file(job).stat().st_size == 0
    wait_for(lambda: status(mount)[job]["problem"] is not None, "the disagreement")
    states = status(mount)
    assert states[job]["verified"] == "mismatch"
    assert "ArchiveSizeInBytes is 0, the inventory says 3145728" in states[job]["problem"]
    assert states[listing]["problem"] is None
    assert f"job {job}: ArchiveSizeInBytes is 0" in mount.log()
    mount.stop()
    again: Mount = mount_factory(liar.url, VAULT, FAST, cache_dir=mount.cache_dir)
    assert status(again)[job]["verified"] == "mismatch"  # known without reading again


def test_an_archive_tree_hash_against_the_inventory_is_reported(
    vault: Emulator, liar: Liar, mount_factory: Any
) -> None:
    genuine, _, _ = archive_job(vault, 9)
    claimer, _, _ = archive_job(vault, 10)
    inventory(vault.client(), VAULT)
    claim(liar, vault, claimer, genuine, hashes=True)
    mount: Mount = mount_factory(liar.url, VAULT, FAST)
    wait_for(lambda: status(mount)[claimer]["problem"] is not None, "the disagreement")
    problem = status(mount)[claimer]["problem"]
    assert "ArchiveSHA256TreeHash is" in problem and "the inventory says" in problem
    assert status(mount)[genuine]["problem"] is None


def test_an_inventory_body_shorter_than_its_record_is_an_error_not_verified(
    vault: Emulator, liar: Liar, mount_factory: Any
) -> None:
    archive_job(vault, 11, MIB)
    listing = inventory(vault.client(), VAULT)
    real = record(vault, listing)["InventorySizeInBytes"]
    liar.lie(listing, InventorySizeInBytes=real + 10000)
    mount: Mount = mount_factory(liar.url, VAULT, FAST)
    assert read_error(mount.job_file(listing)) == errno.EIO
    states = status(mount)
    asked = vault.job_requests(listing)
    assert read_error(mount.job_file(listing)) == errno.EIO  # at once, asking nothing
    assert vault.job_requests(listing) == asked
    assert states[listing]["verified"] == "mismatch"
    expected = f"InventorySizeInBytes says {real + 10000} bytes, the service sends {real}"
    assert expected in states[listing]["problem"]
    assert f"job {listing}: {expected}" in mount.log()
    assert mount.alive()


# --- a checksum the spec says comes -----------------------------------------------


def test_a_missing_checksum_header_where_one_is_due_gives_eio_never_bytes(
    vault: Emulator, liar: Liar, mount_factory: Any, tmp_path: Path
) -> None:
    job, archive, _ = archive_job(vault, 12)
    liar.drop_header(job, "x-amz-sha256-tree-hash")
    mount: Mount = mount_factory(liar.url, VAULT, FAST)
    with mount.job_file(job).open("rb") as stream, pytest.raises(OSError) as raised:
        stream.read(MIB)
    assert raised.value.errno == errno.EIO
    assert xattr(mount.job_file(job), "user.glacierfs.cached") == "0"  # nothing kept
    assert "x-amz-sha256-tree-hash" in mount.log()
    liar.truth()
    cmp(mount.job_file(job), vault.save_content(VAULT, archive, tmp_path / "expected"))
    assert xattr(mount.job_file(job), "user.glacierfs.verified") == "tree-hash"


def test_an_unaligned_range_job_is_still_read_on_its_size(
    vault: Emulator, liar: Liar, mount_factory: Any
) -> None:
    """No checksum is due for it: size-only verification stays."""
    archive, _ = vault.seeded_archive(VAULT, 20 * MIB, 13, "")
    job = retrieve(vault.client(), VAULT, archive, f"{MIB}-{4 * MIB - 1}")
    mount: Mount = mount_factory(liar.url, VAULT, FAST)
    assert mount.job_file(job).read_bytes() == vault.content(VAULT, archive)[MIB : 4 * MIB]
    assert xattr(mount.job_file(job), "user.glacierfs.verified") == "size"
