"""Trusted paths, on real files: the walk from / down, and what the disk cache opens.

The attacks through real mounts, with another user, are in test_security.py; these are
the rules one by one, run as whatever user runs the suite (a few need root to give a
file away).
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from glacierfs import trusted
from glacierfs.cache.disk import DiskCache
from glacierfs.errors import ConfigError

MIB = 1 << 20
OTHER = 65534  # nobody
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a file away")


def put_leaf(cache: DiskCache, key: str, data: bytes = b"leaf") -> bool:
    return cache.put(key, 0, data, [hashlib.sha256(data).digest()], "block", owner="test")


def data_file(root: Path, key: str) -> Path:
    return root / "v1" / "data" / hashlib.sha256(key.encode()).hexdigest()


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    path = tmp_path / "victim"
    path.write_bytes(b"precious\n")
    path.chmod(0o600)
    return path


def unchanged(path: Path, before: os.stat_result) -> bool:
    after = path.lstat()
    return path.read_bytes() == b"precious\n" and after.st_mtime_ns == before.st_mtime_ns


# --- the walk --------------------------------------------------------------------------


def test_a_symlink_in_a_trusted_directory_is_followed_to_a_trusted_one(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir(mode=0o700)
    (tmp_path / "link").symlink_to("real")
    with DiskCache(tmp_path / "link", MIB) as cache:
        assert put_leaf(cache, "a")
    assert data_file(tmp_path / "real", "a").exists()


def test_dot_dot_climbs_the_directories_walked_as_the_kernel_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "x" / "y").mkdir(parents=True)
    (tmp_path / "l").symlink_to(tmp_path / "x" / "y")
    monkeypatch.chdir(tmp_path)
    with DiskCache(Path("l/../c"), MIB) as cache:  # relative, and .. after a link
        assert put_leaf(cache, "a")
    assert data_file(tmp_path / "x" / "c", "a").exists()
    assert not (tmp_path / "c").exists()


def test_a_symlink_loop_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    with pytest.raises(ConfigError, match="Too many levels of symbolic links"):
        DiskCache(tmp_path / "a" / "cache", MIB)


def test_a_directory_on_the_way_that_others_can_write_is_refused_by_name(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o757)
    with pytest.raises(
        ConfigError, match=rf"{shared} is writable by group or others \(mode 0757\)"
    ):
        DiskCache(shared / "cache", MIB)
    assert list(shared.iterdir()) == []


def test_missing_directory_without_create_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=rf"{tmp_path / 'none'}: No such file"):
        trusted.open_directory(tmp_path / "none" / "x", "test")


def test_a_file_on_the_way_is_not_a_directory(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(ConfigError, match=rf"{tmp_path / 'file'} is not a directory"):
        DiskCache(tmp_path / "file" / "cache", MIB)


@needs_root
def test_a_root_owned_sticky_directory_is_fine_on_the_way_not_as_the_cache(
    tmp_path: Path,
) -> None:
    sticky = tmp_path / "tmp"
    sticky.mkdir()
    sticky.chmod(0o1777)
    DiskCache(sticky / "cache", MIB).close()
    with pytest.raises(ConfigError, match=r"writable by group or others \(mode 1777\)"):
        DiskCache(sticky, MIB)


@needs_root
def test_a_symlink_of_another_user_is_not_followed(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir(mode=0o700)
    (tmp_path / "link").symlink_to("real")
    os.lchown(tmp_path / "link", OTHER, OTHER)
    with pytest.raises(ConfigError, match=rf"symlink {tmp_path / 'link'} belongs to uid {OTHER}"):
        DiskCache(tmp_path / "link", MIB)
    assert list((tmp_path / "real").iterdir()) == []


@needs_root
def test_a_directory_of_another_user_on_the_way_is_refused(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o755)
    os.chown(theirs, OTHER, OTHER)
    with pytest.raises(ConfigError, match=rf"{theirs} belongs to uid {OTHER}, not to root"):
        DiskCache(theirs / "cache", MIB)


# --- what the disk cache opens under its root -------------------------------------------


@pytest.mark.expected_logs(r"cannot be written")
def test_a_data_file_that_is_a_symlink_is_never_written_through(
    tmp_path: Path, victim: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root, before = tmp_path / "cache", victim.lstat()
    caplog.set_level(logging.WARNING, logger="glacierfs.cache.disk")
    with DiskCache(root, 8 * MIB) as cache:
        data_file(root, "a").symlink_to(victim)
        assert not put_leaf(cache, "a", b"x" * 1000)
        assert cache.get("a", 0) is None
        assert put_leaf(cache, "b")  # the rest of the cache works on
        assert cache.get("b", 0) == b"leaf"
    assert unchanged(victim, before)
    assert [r.getMessage() for r in caplog.records if "not a regular file" in r.getMessage()]


@pytest.mark.expected_logs(r"cannot be written")
def test_a_data_file_that_is_a_fifo_is_unusable_and_never_blocks(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    with DiskCache(root, 8 * MIB) as cache:
        os.mkfifo(data_file(root, "a"))
        assert not put_leaf(cache, "a")
        assert cache.get("a", 0) is None


@pytest.mark.expected_logs(r"unreadable .*: dropped")
def test_a_data_file_replaced_by_a_symlink_loses_its_leaves_and_the_link(
    tmp_path: Path, victim: Path
) -> None:
    root, before = tmp_path / "cache", victim.lstat()
    with DiskCache(root, 8 * MIB) as cache:
        assert put_leaf(cache, "a")
    data_file(root, "a").unlink()
    data_file(root, "a").symlink_to(victim)
    with DiskCache(root, 8 * MIB) as cache:
        assert cache.get("a", 0) is None
        assert cache.leaves("a") == {}
        assert not data_file(root, "a").is_symlink()  # the link was removed, not followed
        assert put_leaf(cache, "a")
        assert cache.get("a", 0) == b"leaf"
    assert unchanged(victim, before)


def test_after_a_crash_recovery_removes_a_planted_symlink_not_its_target(
    tmp_path: Path, victim: Path
) -> None:
    root, before = tmp_path / "cache", victim.lstat()
    holder = (
        "import hashlib, sys\n"
        "from pathlib import Path\n"
        "from glacierfs.cache.disk import DiskCache\n"
        "cache = DiskCache(Path(sys.argv[1]), 1 << 23)\n"
        "cache.put('a', 0, b'leaf', [hashlib.sha256(b'leaf').digest()], 'block', owner='t')\n"
        "print('ready', flush=True)\n"
        "sys.stdin.read()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", holder, str(root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        (root / "v1" / "data" / "stray").symlink_to(victim)
    finally:
        child.kill()  # a crash: the next open recovers
        child.communicate()
    with DiskCache(root, 8 * MIB) as reopened:
        assert reopened.get("a", 0) == b"leaf"
    assert not (root / "v1" / "data" / "stray").is_symlink()
    assert unchanged(victim, before)


@pytest.mark.parametrize("link", ["symlink", "hard link"])
def test_a_lock_file_that_is_a_link_is_refused_and_not_truncated(
    tmp_path: Path, victim: Path, link: str
) -> None:
    root, before = tmp_path / "cache", victim.lstat()
    root.mkdir(mode=0o700)
    if link == "symlink":
        (root / "lock").symlink_to(victim)
    else:
        os.link(victim, root / "lock")
    with pytest.raises(ConfigError, match=r"cannot open .*lock: lock is not a regular file"):
        DiskCache(root, MIB)
    assert victim.read_bytes() == b"precious\n" and victim.stat().st_size == before.st_size
    assert not (root / "v1").exists()


@pytest.mark.parametrize("name", ["index.sqlite3", "index.sqlite3-wal", "index.sqlite3-shm"])
def test_an_index_file_that_is_a_symlink_is_refused(
    tmp_path: Path, victim: Path, name: str
) -> None:
    root, before = tmp_path / "cache", victim.lstat()
    DiskCache(root, MIB).close()
    for old in (root / "v1").glob("index.sqlite3*"):
        old.unlink()
    (root / "v1" / name).symlink_to(victim)
    with pytest.raises(ConfigError, match=f"{name} is not a regular file"):
        DiskCache(root, MIB)
    assert unchanged(victim, before)


@pytest.mark.parametrize("name", ["v1", "data"])
def test_a_layout_directory_that_is_a_symlink_is_refused(tmp_path: Path, name: str) -> None:
    root = tmp_path / "cache"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    DiskCache(root, MIB).close()
    where = root / "v1" if name == "v1" else root / "v1" / "data"
    where.rename(tmp_path / "moved")
    where.symlink_to(elsewhere)
    with pytest.raises(ConfigError, match=f"{name} is a symlink, not followed"):
        DiskCache(root, MIB)
    assert list(elsewhere.iterdir()) == []


# --- files opened by name in a held directory -----------------------------------------


def test_open_file_refuses_what_is_not_a_regular_file_of_ours(tmp_path: Path) -> None:
    directory = os.open(tmp_path, trusted.DIRECTORY)
    try:
        (tmp_path / "dir").mkdir()
        (tmp_path / "link").symlink_to("file")
        (tmp_path / "file").write_bytes(b"")
        os.link(tmp_path / "file", tmp_path / "twice")
        for name in ("dir", "link", "twice"):
            with pytest.raises(OSError) as refused:
                trusted.open_file(name, os.O_RDONLY, directory)
            assert refused.value.errno == errno.EPERM, name
        (tmp_path / "twice").unlink()
        os.close(trusted.open_file("file", os.O_RDWR, directory))
    finally:
        os.close(directory)


def test_a_log_file_is_created_0600_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        os.close(trusted.open_log(tmp_path / "glacierfs.log"))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "glacierfs.log").stat().st_mode) == 0o600


def test_a_log_file_that_is_a_symlink_is_refused(tmp_path: Path, victim: Path) -> None:
    before = victim.lstat()
    (tmp_path / "glacierfs.log").symlink_to(victim)
    with pytest.raises(ConfigError, match=r"log file .*: glacierfs.log is not a regular file"):
        trusted.open_log(tmp_path / "glacierfs.log")
    assert unchanged(victim, before)


# --- as a user other than root ---------------------------------------------------------


def as_user(uid: int, work: Callable[[], str]) -> str:
    """What ``work`` returns, or the message it raises, run in a child as ``uid``."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            try:
                answer = work()
            except ConfigError as error:
                answer = f"refused: {error}"
            os.write(write_end, answer.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        answer = pipe.read().decode()
    os.waitpid(pid, 0)
    return answer


@needs_root
def test_for_another_user_root_and_they_are_trusted_no_one_else() -> None:
    """The daemon run by nobody: root's directories on the way are fine, a third user's
    are not, and the cache itself must be nobody's."""
    base = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        base.chmod(0o755)
        (base / "mine").mkdir()
        os.chown(base / "mine", OTHER, OTHER)
        (base / "third").mkdir(mode=0o755)
        os.chown(base / "third", 12345, 12345)
        (base / "roots").mkdir()
        (base / "roots").chmod(0o755)

        def open_cache(path: Path) -> Callable[[], str]:
            def work() -> str:
                DiskCache(path, MIB).close()
                return "opened"

            return work

        assert as_user(OTHER, open_cache(base / "mine" / "cache")) == "opened"
        third = as_user(OTHER, open_cache(base / "third" / "cache"))
        assert f"{base / 'third'} belongs to uid 12345, not to root or uid {OTHER}" in third
        roots = as_user(OTHER, open_cache(base / "roots"))
        assert f"{base / 'roots'} belongs to uid 0, not to uid {OTHER}" in roots
    finally:
        shutil.rmtree(base)
