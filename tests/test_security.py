"""Another local user against a root mount: the cache directory and the log file.

Each test plays an attack of issue 16 as root, with the user ``nobody`` (through
setpriv) doing what another user can, through real mounts: the mount is refused with
one line naming the component, or the attack lands nowhere; in every case the root-owned
files it aimed at keep their bytes and mtimes, and nothing appears beside them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.emulator import Emulator
from tests.support.mount import Mount, cmp, needs_fuse, unmount
from tests.support.users import (
    SECRET,
    as_nobody,
    make_victim,
    needs_root_and_setpriv,
    nobody,
    run_glacierfs,
    snapshot,
)
from tests.support.vault import retrieve, sample, upload

pytestmark = [needs_fuse, needs_root_and_setpriv]

MIB = 1 << 20
VAULT = "secrets"


@pytest.fixture
def open_root() -> Iterator[Path]:
    """A root-owned 0755 directory nobody can traverse (pytest's own are 0700)."""
    root = Path(tempfile.mkdtemp(prefix="glacierfs-security-", dir="/tmp"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def job(emulator: Emulator) -> tuple[str, bytes]:
    """A completed job of a 2.5 MiB archive: (job id, its bytes)."""
    client = emulator.client()
    client.create_vault(vaultName=VAULT)
    data = sample(2 * MIB + MIB // 2, 16)
    return retrieve(client, VAULT, upload(client, VAULT, data)), data


def refused(emulator: Emulator, root: Path, options: str) -> str:
    """Mount in the background with ``options``; assert it fails in one line; the line."""
    mnt = root / "mnt"
    mnt.mkdir(exist_ok=True)
    result = run_glacierfs(VAULT, str(mnt), "-o", f"endpoint_url={emulator.url},{options}")
    mounted = os.path.ismount(mnt)
    unmount(mnt)
    assert result.returncode != 0 and not mounted, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


# --- the cache directory's path -------------------------------------------------------


@pytest.mark.parametrize("cache", ["symlink", "directory"])
def test_a_cache_dir_in_another_users_directory_is_refused_and_the_victim_untouched(
    emulator: Emulator, job: Any, open_root: Path, cache: str
) -> None:
    """The attack of issue 16: nobody's directory, where `cache` is a symlink to a
    root-only directory (or a root-owned directory nobody could later swap for one)."""
    victim = make_victim(open_root / "root-only")
    theirs = open_root / "theirs"
    theirs.mkdir()
    os.chown(theirs, nobody(), nobody())
    if cache == "symlink":
        as_nobody("ln", "-s", str(victim), str(theirs / "cache"))
    else:
        (theirs / "cache").mkdir(mode=0o700)
    before, theirs_before = snapshot(victim), snapshot(theirs)
    line = refused(emulator, open_root, f"cache_dir={theirs / 'cache'}")
    assert f"{theirs} belongs to uid {nobody()}" in line
    assert snapshot(victim) == before
    assert snapshot(theirs) == theirs_before


@pytest.mark.parametrize(
    ("mode", "owner", "problem"),
    [
        (0o777, "root", "is writable by group or others (mode 0777)"),
        (0o775, "root", "is writable by group or others (mode 0775)"),
        (0o1777, "nobody", "belongs to uid"),
    ],
)
def test_a_cache_dir_through_a_directory_others_can_write_is_refused(
    emulator: Emulator, job: Any, open_root: Path, mode: int, owner: str, problem: str
) -> None:
    shared = open_root / "shared"
    shared.mkdir()
    shared.chmod(mode)
    if owner == "nobody":
        os.chown(shared, nobody(), nobody())
    line = refused(emulator, open_root, f"cache_dir={shared / 'deep' / 'cache'}")
    assert f"{shared} {problem}" in line
    assert list(shared.iterdir()) == []  # nothing created on the way


def test_a_cache_dir_in_a_root_owned_sticky_directory_such_as_tmp_is_fine(
    emulator: Emulator, job: Any, open_root: Path, mount_factory: Any, tmp_path: Path
) -> None:
    job_id, data = job
    sticky = open_root / "tmp"
    sticky.mkdir()
    sticky.chmod(0o1777)
    mount: Mount = mount_factory(emulator.url, VAULT, cache_dir=sticky / "cache")
    (tmp_path / "expected").write_bytes(data)
    cmp(mount.job_file(job_id), tmp_path / "expected")
    assert mount.stop() == 0
    assert (sticky / "cache").stat().st_uid == 0
    assert len(list((sticky / "cache" / "v1" / "data").iterdir())) == 1


def test_another_users_symlink_in_a_sticky_directory_is_not_followed(
    emulator: Emulator, job: Any, open_root: Path
) -> None:
    """In /tmp anyone may make a name: a link nobody made there is not ours to follow."""
    victim = make_victim(open_root / "root-only")
    sticky = open_root / "tmp"
    sticky.mkdir()
    sticky.chmod(0o1777)
    as_nobody("ln", "-s", str(victim), str(sticky / "cache"))
    before = snapshot(victim)
    line = refused(emulator, open_root, f"cache_dir={sticky / 'cache'}")
    assert f"symlink {sticky / 'cache'} belongs to uid {nobody()}" in line
    assert snapshot(victim) == before


# --- the cache directory held by descriptor ---------------------------------------------


def test_the_cache_directory_is_held_not_found_again_by_path(
    emulator: Emulator, open_root: Path, mount_factory: Any, tmp_path: Path
) -> None:
    """Once mounted, the cache is the directory opened at start: its path swapped for a
    symlink to a root-only directory, new reads are cached where they always were."""
    client = emulator.client()
    client.create_vault(vaultName=VAULT)
    first, second = sample(MIB + 5, 1), sample(2 * MIB + 7, 2)
    jobs = [retrieve(client, VAULT, upload(client, VAULT, data)) for data in (first, second)]
    victim = make_victim(open_root / "root-only")
    before = snapshot(victim)
    cache = tmp_path / "cache"
    mount: Mount = mount_factory(emulator.url, VAULT, cache_dir=cache)
    (tmp_path / "first").write_bytes(first)
    cmp(mount.job_file(jobs[0]), tmp_path / "first")
    cache.rename(tmp_path / "moved")
    cache.symlink_to(victim)
    (tmp_path / "second").write_bytes(second)
    cmp(mount.job_file(jobs[1]), tmp_path / "second")
    assert mount.stop() == 0
    assert snapshot(victim) == before
    assert len(list((tmp_path / "moved" / "v1" / "data").iterdir())) == 2


@pytest.mark.parametrize("plant", ["symlink", "hard link"])
def test_a_lock_file_that_is_a_link_to_a_root_file_is_refused_not_truncated(
    emulator: Emulator, job: Any, open_root: Path, tmp_path: Path, plant: str
) -> None:
    victim = make_victim(open_root / "root-only")
    before = snapshot(victim)
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    if plant == "symlink":
        (cache / "lock").symlink_to(victim / "lock")
    else:
        os.link(victim / "lock", cache / "lock")
    line = refused(emulator, tmp_path, f"cache_dir={cache}")
    assert f"cannot open {cache / 'lock'}" in line and "not a regular file" in line
    if plant == "hard link":  # the link itself counts as a change of the victim's inode
        (cache / "lock").unlink()
        before = {k: v for k, v in before.items() if k != "lock"}
        after = {k: v for k, v in snapshot(victim).items() if k != "lock"}
        assert after == before and (victim / "lock").read_bytes() == SECRET
    else:
        assert snapshot(victim) == before


def test_a_data_file_that_is_a_symlink_is_not_written_through(
    emulator: Emulator, job: Any, open_root: Path, mount_factory: Any, tmp_path: Path
) -> None:
    """A data file name that is a symlink (planted by root: no one else can write in the
    0700 cache) is an unusable file: its leaves are dropped and the link itself removed,
    reads come from the network, and nothing is written through it."""
    job_id, data = job
    (tmp_path / "expected").write_bytes(data)
    victim = make_victim(open_root / "root-only")
    first: Mount = mount_factory(emulator.url, VAULT)
    cmp(first.job_file(job_id), tmp_path / "expected")
    assert first.stop() == 0
    [data_file] = (first.cache_dir / "v1" / "data").iterdir()
    data_file.unlink()
    data_file.symlink_to(victim / "passwords")
    before = snapshot(victim)
    fetched = emulator.job_bytes(job_id)
    second: Mount = mount_factory(emulator.url, VAULT, cache_dir=first.cache_dir)
    cmp(second.job_file(job_id), tmp_path / "expected")
    assert second.stop() == 0
    assert emulator.job_bytes(job_id) - fetched == len(data)  # from the network
    assert not data_file.is_symlink() and data_file.stat().st_size == len(data)
    assert snapshot(victim) == before


# --- the log file ----------------------------------------------------------------------


def test_the_log_file_is_created_0600(
    emulator: Emulator, job: Any, open_root: Path, mount_factory: Any
) -> None:
    logs = open_root / "logs"
    logs.mkdir()
    log = logs / "glacierfs.log"
    old = os.umask(0o022)
    try:
        mount: Mount = mount_factory(emulator.url, VAULT, {"log": str(log), "debug": ""})
    finally:
        os.umask(old)
    os.listdir(mount.path / "jobs")
    assert mount.stop() == 0
    assert oct(log.stat().st_mode & 0o7777) == oct(0o600)
    assert "mounted vault" in log.read_text()


def test_an_existing_log_file_is_made_0600(
    emulator: Emulator, job: Any, open_root: Path, mount_factory: Any
) -> None:
    """Issue 20, item 10: a log file made earlier (by hand, by logrotate) 0644 would show
    every path read to every user."""
    logs = open_root / "logs"
    logs.mkdir()
    log = logs / "glacierfs.log"
    log.write_text("an earlier line\n")
    log.chmod(0o644)
    mount: Mount = mount_factory(emulator.url, VAULT, {"log": str(log)})
    assert mount.stop() == 0
    assert oct(log.stat().st_mode & 0o7777) == oct(0o600)
    assert log.read_text().startswith("an earlier line\n")


@pytest.mark.parametrize("plant", ["root's symlink", "nobody's symlink in /tmp"])
def test_a_log_file_that_is_a_symlink_is_refused_and_not_followed(
    emulator: Emulator, job: Any, open_root: Path, plant: str
) -> None:
    victim = make_victim(open_root / "root-only")
    logs = open_root / "logs"
    logs.mkdir()
    if plant == "root's symlink":
        (logs / "glacierfs.log").symlink_to(victim / "passwords")
    else:
        logs.chmod(0o1777)
        as_nobody("ln", "-s", str(victim / "passwords"), str(logs / "glacierfs.log"))
    before = snapshot(victim)
    line = refused(emulator, open_root, f"cache_dir={open_root / 'c'},log={logs}/glacierfs.log")
    assert f"log file {logs / 'glacierfs.log'}" in line
    # The kernel refuses O_CREAT on another user's entry in a sticky directory itself.
    assert "not a regular file" in line or "Permission denied" in line
    assert snapshot(victim) == before


def test_a_log_file_in_a_directory_others_can_write_is_refused(
    emulator: Emulator, job: Any, open_root: Path
) -> None:
    logs = open_root / "logs"
    logs.mkdir()
    logs.chmod(0o777)
    line = refused(emulator, open_root, f"cache_dir={open_root / 'c'},log={logs}/glacierfs.log")
    assert f"{logs} is writable by group or others" in line
    assert list(logs.iterdir()) == []
