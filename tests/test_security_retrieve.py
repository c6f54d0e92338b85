"""Another local user against root's `glacierfs retrieve`: its files under the cache root.

The attacks of issue 20 (1a, 1b), played as root with the user ``nobody`` (setpriv)
doing what another user can, through real `retrieve` runs against the emulator and a
real mount: the run is refused with one line before it creates anything, or the attack
lands nowhere; the root-owned files aimed at keep their bytes and mtimes, and nothing
appears outside the cache root.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from glacierfs.cacheroot import open_root
from glacierfs.retrieve.holder import cache_holder
from glacierfs.retrieve.source import kept_name
from tests.support.emulator import Emulator
from tests.support.mount import Mount, needs_fuse, stop_process
from tests.support.retrieve import FLAGS, history, seed, take_inventory
from tests.support.users import (
    SECRET,
    as_nobody,
    as_nobody_argv,
    make_victim,
    needs_root_and_setpriv,
    nobody,
    one_line,
    run_glacierfs,
    snapshot,
)

pytestmark = [needs_root_and_setpriv]

VAULT = "secrets"
FILES = {"a/one.dat": 300_000, "a/two.dat": 200_000}


@pytest.fixture
def open_root_dir() -> Iterator[Path]:
    """A root-owned 0755 directory nobody can traverse (pytest's own are 0700)."""
    root = Path(tempfile.mkdtemp(prefix="glacierfs-security-", dir="/tmp"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def vault(emulator_factory: Callable[..., Emulator], tmp_path: Path) -> tuple[Emulator, Path, str]:
    """A vault of two archives with a completed inventory job; that inventory as a file,
    for ``-o inventory=FILE``; and the job."""
    emulator = emulator_factory(*FLAGS)
    seed(emulator, VAULT, FILES)
    job = take_inventory(emulator, VAULT)
    output = emulator.client().get_job_output(vaultName=VAULT, jobId=job)["body"].read()
    inventory = tmp_path / "inventory.json"
    inventory.write_bytes(output)
    return emulator, inventory, job


def retrieve(emulator: Emulator, cache: Path, *args: str, options: str = "") -> Any:
    opts = f"endpoint_url={emulator.url},cache_dir={cache}{options}"
    return run_glacierfs("retrieve", "-o", opts, VAULT, "--all", "--yes", *args)


@pytest.mark.parametrize("theirs", ["their cache directory", "their directory above it"])
def test_retrieve_refuses_a_cache_dir_another_user_controls_and_creates_nothing(
    vault: tuple[Emulator, Path, str], open_root_dir: Path, theirs: str
) -> None:
    """Issue 20, 1a: nobody's cache_dir whose `retrieve` entry is a symlink to a root-only
    directory. Refused in one line before anything is written; no job started."""
    emulator, inventory, _ = vault
    victim = make_victim(open_root_dir / "root-only")
    owned = open_root_dir / "theirs"
    owned.mkdir()
    os.chown(owned, nobody(), nobody())
    cache = owned / "cache"
    if theirs == "their cache directory":
        as_nobody("mkdir", "-m", "0700", str(cache))
        as_nobody("ln", "-s", str(victim), str(cache / "retrieve"))
    before, theirs_before = snapshot(victim), snapshot(owned)
    result = retrieve(emulator, cache, options=f",inventory={inventory}")
    line = one_line(result)
    assert "belongs to uid" in line and str(nobody()) in line
    assert snapshot(victim) == before
    assert snapshot(owned) == theirs_before  # no state dir, no database, no lock
    assert history(emulator) == []


@pytest.mark.parametrize("entry", ["retrieve", "retrieve/lock", "retrieve/state.sqlite3"])
def test_a_symlink_in_the_cache_is_refused_not_followed(
    vault: tuple[Emulator, Path, str], open_root_dir: Path, tmp_path: Path, entry: str
) -> None:
    """A symlink where retrieve keeps its state (planted by root: no one else can write
    in a 0700 cache) is refused, never followed to the file it names."""
    emulator, inventory, _ = vault
    victim = make_victim(open_root_dir / "root-only")
    cache = tmp_path / "cache"
    (cache / "retrieve").mkdir(parents=True, mode=0o700)
    cache.chmod(0o700)
    planted = cache / entry
    if entry == "retrieve":
        planted.rmdir()
        planted.symlink_to(victim)
    else:
        planted.symlink_to(victim / "lock")
    before = snapshot(victim)
    line = one_line(retrieve(emulator, cache, options=f",inventory={inventory}"))
    assert entry.split("/")[-1] in line
    assert "symlink" in line or "not a regular file" in line
    assert snapshot(victim) == before
    assert history(emulator) == []


def test_the_kept_inventory_copy_replaces_a_symlink_instead_of_writing_through_it(
    vault: tuple[Emulator, Path, str], open_root_dir: Path, tmp_path: Path
) -> None:
    """Issue 20, 1b's last step: the copy of the inventory is written beside the state
    through the held directory, atomically: a link there is replaced, the file it names
    is untouched."""
    emulator, _, _ = vault
    victim = make_victim(open_root_dir / "root-only")
    cache = tmp_path / "cache"
    (cache / "retrieve").mkdir(parents=True, mode=0o700)
    cache.chmod(0o700)
    arn = emulator.client().describe_vault(vaultName=VAULT)["VaultARN"]
    copy = cache / "retrieve" / kept_name(arn)
    copy.symlink_to(victim / "passwords")
    before = snapshot(victim)
    result = retrieve(emulator, cache, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert snapshot(victim) == before and (victim / "passwords").read_bytes() == SECRET
    assert copy.is_file() and not copy.is_symlink() and b"ArchiveList" in copy.read_bytes()
    assert oct(copy.stat().st_mode & 0o777) == oct(0o600)


@pytest.fixture
def lock_held_by_nobody() -> Iterator[Callable[[Path, int], subprocess.Popen[bytes]]]:
    """Make nobody hold the flock of a cache's lock file, which names ``pid``: root opens
    the file (nobody cannot), writes the pid, and hands the descriptor to a process of
    nobody's that locks it and keeps it."""
    holders: list[subprocess.Popen[bytes]] = []

    def hold(cache: Path, pid: int) -> subprocess.Popen[bytes]:
        fd = os.open(cache / "lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            os.pwrite(fd, f"{pid}\n".encode(), 0)
            script = f"flock -x {fd} && echo locked && exec sleep 600"
            process = subprocess.Popen(
                as_nobody_argv("sh", "-c", script), pass_fds=(fd,), stdout=subprocess.PIPE
            )
        finally:
            os.close(fd)
        holders.append(process)
        assert process.stdout is not None and process.stdout.readline() == b"locked\n"
        return process

    yield hold
    for process in holders:
        stop_process(process)


@needs_fuse
def test_a_lock_naming_a_real_mount_of_another_cache_is_not_proof(
    vault: tuple[Emulator, Path, str],
    tmp_path: Path,
    mount_factory: Any,
    lock_held_by_nobody: Callable[[Path, int], subprocess.Popen[bytes]],
) -> None:
    """Issue 20, 1b (can fail): nobody holds our cache's lock, naming the pid of a real
    glacierfs mount (root's, of another cache). That mount cannot answer our cache's
    challenge, so retrieve refuses in one line and reads nothing through it."""
    emulator, _, job = vault
    other: Mount = mount_factory(emulator.url, VAULT, name="other")
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    lock_held_by_nobody(cache, other.pid)
    with open_root(cache) as root:
        assert cache_holder(root) == other.pid  # the claim is made
    fetched = emulator.job_bytes(job)
    line = one_line(retrieve(emulator, cache, "--dry-run"))
    assert f"in use by pid {other.pid}" in line and "does not prove it holds it" in line
    assert emulator.job_bytes(job) == fetched  # no inventory read through that mount
    assert history(emulator) == []
    assert sorted(os.listdir(cache)) == ["lock"]  # refused before the state was made


def test_a_lock_naming_a_process_of_another_user_is_not_proof(
    vault: tuple[Emulator, Path, str],
    tmp_path: Path,
    lock_held_by_nobody: Callable[[Path, int], subprocess.Popen[bytes]],
) -> None:
    emulator, _, _ = vault
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    holder = lock_held_by_nobody(cache, 0)
    (cache / "lock").write_text(f"{holder.pid}\n")  # names itself: a process of nobody's
    line = one_line(retrieve(emulator, cache, "--dry-run"))
    assert f"in use by pid {holder.pid}, which is not a process of root" in line
