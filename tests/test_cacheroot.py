"""The one door to the cache root's files (glacierfs/cacheroot.py), rule by rule, on real
files: what it opens, what it refuses, what it never creates."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from glacierfs import cacheroot
from glacierfs.cacheroot import IDENTITY, answer, existing_root, identity, open_root
from glacierfs.errors import ConfigError


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    path = tmp_path / "victim"
    path.write_bytes(b"precious\n")
    path.chmod(0o600)
    return path


def test_looking_creates_nothing(tmp_path: Path) -> None:
    assert existing_root(tmp_path / "none") is None
    assert not (tmp_path / "none").exists()
    with open_root(tmp_path / "made" / "cache") as root:
        assert root.existing_directory("retrieve") is None
        assert sorted(os.listdir(tmp_path / "made" / "cache")) == []
    assert oct((tmp_path / "made" / "cache").stat().st_mode & 0o777) == oct(0o700)


def test_a_root_others_can_write_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(ConfigError, match="writable by group or others"):
        existing_root(shared)
    with pytest.raises(ConfigError, match="writable by group or others"):
        open_root(shared / "cache")  # a directory on its path
    assert list(shared.iterdir()) == []


def test_files_and_directories_that_are_links_are_refused(tmp_path: Path, victim: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    (cache / "file").symlink_to(victim)
    (cache / "hard").hardlink_to(victim)
    (cache / "dir").symlink_to(tmp_path)
    with open_root(cache) as root:
        for name in ("file", "hard"):
            with pytest.raises(OSError, match="not a regular file"):
                root.open(name, os.O_RDWR)
        with pytest.raises(ConfigError, match="dir is a symlink, not followed"):
            root.directory("dir")
    assert victim.read_bytes() == b"precious\n"


def test_replace_swaps_a_link_for_a_file_of_ours_and_leaves_its_target(
    tmp_path: Path, victim: Path
) -> None:
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    (cache / "copy.json").symlink_to(victim)
    with open_root(cache) as root:
        root.replace("copy.json", b"{}")
        assert root.read("copy.json") == b"{}" and root.read("missing") is None
    assert victim.read_bytes() == b"precious\n"
    assert not (cache / "copy.json").is_symlink()
    assert sorted(os.listdir(cache)) == ["copy.json"]  # no temporary left


def test_sqlite_is_opened_on_the_very_file_and_never_through_a_companion_link(
    tmp_path: Path, victim: Path
) -> None:
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    with open_root(cache) as root:
        with pytest.raises(FileNotFoundError):
            root.connect("state.sqlite3", readonly=True)
        db = root.connect("state.sqlite3")
        db.execute("CREATE TABLE t (x)")
        db.close()
        reader = root.connect("state.sqlite3", readonly=True)
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reader.execute("INSERT INTO t VALUES (1)")
        reader.close()
        (cache / "state.sqlite3-wal").unlink(missing_ok=True)
        (cache / "state.sqlite3-wal").symlink_to(victim)
        with pytest.raises(ConfigError, match=r"state\.sqlite3-wal is not a regular file"):
            root.connect("state.sqlite3")
    assert victim.read_bytes() == b"precious\n"


def test_the_identity_is_made_once_private_and_answers_challenges(tmp_path: Path) -> None:
    with open_root(tmp_path / "cache") as root:
        secret = identity(root)
        assert identity(root) == secret and len(secret) == 64
    path = tmp_path / "cache" / IDENTITY
    assert oct(path.stat().st_mode & 0o777) == oct(0o600)
    assert answer(secret, "a") != answer(secret, "b") != answer(b"other", "b")
    assert cacheroot.IDENTITY_XATTR.startswith("user.glacierfs.")
