"""Every file any command makes or opens under the cache root, through one door.

The mount, ``retrieve``, ``status``, ``hydrate`` and ``deliver`` reach the cache root's
files the same way. The root's path is checked from ``/`` down (:mod:`glacierfs.trusted`:
every directory ours or root's, writable by no one else), the root itself must be ours
alone, and it is then held open. Every directory and file under it is opened relative to
a held directory, never through a symlink, and used only if it is a directory or a
regular file of ours (a file with one link). Nothing is created before the root has
passed, so a refused run leaves no trace::

    root = open_root(path)                         # ConfigError: one line
    with root:
        state = root.directory("retrieve")          # a Held directory, made 0700
        fd = state.open("lock", os.O_RDWR | os.O_CREAT)
        state.replace("copy.json", data)            # atomically (or .replacing)
        db = state.connect("state.sqlite3")         # SQLite, on the very file

SQLite takes a name, not a descriptor, so a database is named through
``/proc/self/fd/<directory>``, which SQLite resolves to the held directory's current path:
the one checked, which no one but us and root can change. Afterwards a check confirms
that SQLite has the very file opened here by descriptor. SQLite opens its ``-wal`` and
``-shm`` by name, following links: any present must be regular files of ours.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import os
import secrets
import sqlite3
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO

from glacierfs import trusted
from glacierfs.errors import ConfigError

_COMPANIONS = ("-wal", "-shm", "-journal")

IDENTITY = "identity"
"""The cache's secret, in its root, 0600, made at its first open: the process holding the
cache proves it with the secret, not with a pid in a file (see :func:`answer`)."""

IDENTITY_XATTR = "user.glacierfs.identity."
"""A mount's root answers ``getxattr(IDENTITY_XATTR + challenge)`` with
:func:`answer`: the secret itself never leaves the cache root."""


class Held:
    """A directory under the cache root (or the root), held by descriptor; ``path``
    names it in messages only, and is never opened again."""

    def __init__(self, fd: int, path: Path) -> None:
        self.fd, self.path = fd, path

    def directory(self, name: str) -> Held:
        """The directory ``name`` in this one, a private directory of ours, made 0700
        when missing; ConfigError (one line) when it is anything else."""
        what = f"cache directory {self.path}"
        return Held(trusted.open_subdirectory(self.fd, name, what), self.path / name)

    def existing_directory(self, name: str) -> Held | None:
        """The directory ``name`` as :meth:`directory` has it, or None when there is none."""
        return self.directory(name) if _exists(name, self.fd) else None

    def open(self, name: str, flags: int, mode: int = 0o600) -> int:
        """A descriptor of the regular file ``name`` of ours (one link), created with
        ``mode`` if ``flags`` say so; OSError otherwise (EPERM: a link, a FIFO, another
        user's file)."""
        return trusted.open_file(name, flags, self.fd, mode)

    def read(self, name: str) -> bytes | None:
        """The whole file ``name``, or None when there is none."""
        try:
            fd = self.open(name, os.O_RDONLY)
        except FileNotFoundError:
            return None
        with os.fdopen(fd, "rb") as stream:
            return stream.read()

    def replace(self, name: str, data: bytes) -> None:
        """Make ``name`` hold ``data``, whole or not at all; OSError when the disk refuses."""
        with self.replacing(name) as out:
            out.write(data)

    @contextmanager
    def replacing(self, name: str) -> Iterator[BinaryIO]:
        """A file to write ``name``'s new content to: a temporary file of ours, synced and
        renamed over ``name`` when the block ends, removed if it raises."""
        temporary = f".{name}.{os.getpid()}.tmp"
        with suppress(FileNotFoundError):
            os.unlink(temporary, dir_fd=self.fd)  # left by a crash: the name itself goes
        fd = self.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        try:
            with os.fdopen(fd, "wb") as out:
                yield out
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        except BaseException:
            with suppress(OSError):
                os.unlink(temporary, dir_fd=self.fd)
            raise

    def connect(
        self, name: str, *, readonly: bool = False, timeout: float = 5.0
    ) -> sqlite3.Connection:
        """A SQLite connection to the file ``name`` (created 0600 unless ``readonly``;
        FileNotFoundError when missing and ``readonly``). ConfigError when it is not a
        file of ours or was replaced while opened; sqlite3.Error as SQLite raises it."""
        flags = os.O_RDONLY if readonly else os.O_RDWR | os.O_CREAT
        try:
            fd = self.open(name, flags)
        except FileNotFoundError:
            raise
        except OSError as error:
            raise ConfigError(f"{self.path / name}: {error.strerror}") from error
        try:
            self._check_companions(name)
            db = sqlite3.connect(
                self._sqlite_name(name, readonly),
                uri=True,
                timeout=timeout,
                check_same_thread=False,
                isolation_level=None,
            )
            try:
                db.execute("PRAGMA schema_version")  # SQLite opens the file on first use
                if not _holds(fd):
                    raise ConfigError(f"{self.path / name} was replaced while it was opened")
            except BaseException:
                db.close()
                raise
            return db
        finally:
            os.close(fd)

    def _sqlite_name(self, name: str, readonly: bool) -> str:
        proc = f"/proc/self/fd/{self.fd}"
        path = f"{proc}/{name}" if os.path.isdir(proc) else os.fspath(self.path / name)
        return f"{Path(path).absolute().as_uri()}{'?mode=ro' if readonly else ''}"

    def _check_companions(self, name: str) -> None:
        for suffix in _COMPANIONS:
            try:
                info = os.stat(name + suffix, dir_fd=self.fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() or info.st_nlink != 1:
                raise ConfigError(
                    f"{self.path / (name + suffix)} is not a regular file of uid {os.geteuid()}"
                    " (one link); delete it"
                )

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Held:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_root(path: Path) -> Held:
    """The cache root ``path``, checked from ``/`` down and held, made 0700 with any
    missing parents (each after its parent passed). It must be ours alone: writable by
    no one else. ConfigError (one line) when it cannot be trusted."""
    return _checked(path, trusted.open_directory(path, f"cache directory {path}", create=True))


def existing_root(path: Path) -> Held | None:
    """The cache root ``path`` checked and held as :func:`open_root` does, or None when
    it does not exist: for those who only read, and create nothing."""
    try:
        fd = trusted.open_directory(path, f"cache directory {path}")
    except ConfigError:
        if not os.path.lexists(path):
            return None
        raise
    return _checked(path, fd)


def _checked(path: Path, fd: int) -> Held:
    info = os.fstat(fd)
    problem = None
    if info.st_uid != os.geteuid():
        problem = f"belongs to uid {info.st_uid}, not to uid {os.geteuid()}"
    elif info.st_mode & 0o022:
        mode = stat.S_IMODE(info.st_mode)
        problem = f"is writable by group or others (mode {mode:04o}); make it 0700"
    if problem is not None:
        os.close(fd)
        raise ConfigError(f"cache directory {path} {problem}")
    return Held(fd, path)


def identity(root: Held) -> bytes:
    """The cache's secret, made if it has none yet; ConfigError when it cannot be."""
    try:
        found = root.read(IDENTITY)
        if not found:
            root.replace(IDENTITY, secrets.token_hex(32).encode())
            found = root.read(IDENTITY)
    except OSError as error:
        raise ConfigError(f"cache directory {root.path}: {IDENTITY}: {error.strerror}") from None
    return found or b""


def answer(secret: bytes, challenge: str) -> bytes:
    """What the holder of the cache with ``secret`` answers to ``challenge``."""
    return hmac.new(secret, challenge.encode(), hashlib.sha256).hexdigest().encode()


def _exists(name: str, parent: int) -> bool:
    try:
        os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return False
    except OSError as error:
        if error.errno == errno.ENOTDIR:
            return False
        raise
    return True


def _holds(fd: int) -> bool:
    """Whether another descriptor of this process is open on ``fd``'s file (True when
    /proc cannot tell)."""
    mine = os.fstat(fd)
    try:
        others = [int(name) for name in os.listdir("/proc/self/fd") if int(name) != fd]
    except OSError:
        return True
    for other in others:
        with suppress(OSError):
            info = os.stat(f"/proc/self/fd/{other}")
            if (info.st_dev, info.st_ino) == (mine.st_dev, mine.st_ino):
                return True
    return False
