"""Paths that only the daemon's user and root can change, checked as ssh and sudo do.

A cache directory or a log file's directory is trusted only if no other user can change
what its path names. So every directory from ``/`` down must belong to the daemon's
user or to root, and no one else may write to it. The one exception is a root-owned
sticky directory such as /tmp: there others can add names but cannot replace ours.

The walk opens each component relative to the directory before it, with
``O_NOFOLLOW``, and only after that directory has passed the check. What is checked
is what is opened, so no name can be swapped between the check and the use. A symlink
on the way is followed only if it belongs to the user or to root. A trusted directory's
entries are made by trusted users, but a sticky directory also holds other users'
links. The link's target is walked in the same way. ``..`` goes up the directories as
walked, as the kernel does.

Files under a directory held this way are opened with :func:`open_file`. It never
follows a symlink and only opens a regular file of ours with one link. So no one can
point a write of ours at a file of theirs or of root's, by a symlink or a hard link.
"""

from __future__ import annotations

import errno
import os
import stat
from contextlib import suppress
from pathlib import Path

from glacierfs.errors import ConfigError

MAX_SYMLINKS = 40
"""Links followed in one walk before giving up, as the kernel does (ELOOP)."""

DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
"""Flags of a directory opened to be listed or written under, never through a link."""

_PATH = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # NONBLOCK: a FIFO never blocks
_NOT_A_FILE = frozenset({errno.ELOOP, errno.EISDIR, errno.ENXIO})


def open_directory(path: Path, what: str, *, create: bool = False) -> int:
    """An ``O_PATH`` descriptor of the directory ``path``, checked all the way down.

    ``what`` starts every error message (e.g. ``cache directory /x``). With ``create``,
    missing directories are made 0700. The caller checks the last directory for what
    it needs beyond trust (the cache root must be ours alone).
    """
    walk = _Walk(what, create)
    try:
        walk.resolve(os.fspath(path.absolute()))
    except BaseException:
        walk.close(keep=None)
        raise
    return walk.close(keep=-1)


def open_subdirectory(parent: int, name: str, what: str) -> int:
    """A directory of ours under a held one, created 0700 if missing (``DIRECTORY``)."""
    try:
        with suppress(FileExistsError):
            os.mkdir(name, 0o700, dir_fd=parent)
        fd = os.open(name, DIRECTORY, dir_fd=parent)
    except OSError as error:
        if error.errno == errno.ENOTDIR and _is_symlink(name, parent):
            raise ConfigError(f"{what}: {name} is a symlink, not followed") from None
        raise ConfigError(f"{what}: {name}: {_reason(error)}") from None
    info = os.fstat(fd)
    if info.st_uid != os.geteuid() or info.st_mode & 0o022:
        os.close(fd)
        raise ConfigError(f"{what}: {name} is not a private directory of uid {os.geteuid()}")
    return fd


def open_file(name: str, flags: int, parent: int, mode: int = 0o600) -> int:
    """Open ``name`` in the directory ``parent`` if it is a regular file of ours with
    one link. It is created with ``mode`` if ``flags`` say so. Anything else (a symlink,
    which is never followed, a directory, a FIFO, a file of another user, a hard link)
    fails with EPERM: a file we may not use, like one we have no permission for.
    """
    try:
        fd = os.open(name, flags | _FILE, mode, dir_fd=parent)
    except OSError as error:
        if error.errno in _NOT_A_FILE:
            raise _not_a_file(name) from error
        raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() or info.st_nlink != 1:
        os.close(fd)
        raise _not_a_file(name)
    return fd


def open_log(path: Path) -> int:
    """The log file ``path`` for appending, created 0600, in a checked directory; an
    existing one is made 0600 too (with ``debug`` it holds every path read)."""
    what = f"log file {path}"
    parent = open_directory(path.parent, what)
    try:
        fd = open_file(path.name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, parent)
    except OSError as error:
        raise ConfigError(f"{what}: {_reason(error)}") from None
    finally:
        os.close(parent)
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) != 0o600:
            os.fchmod(fd, 0o600)
    except OSError as error:
        os.close(fd)
        raise ConfigError(f"{what}: cannot make it 0600: {_reason(error)}") from None
    return fd


def owners() -> str:
    """Who may own what we trust, for messages."""
    euid = os.geteuid()
    return "root" if euid == 0 else f"root or uid {euid}"


def _not_a_file(name: str) -> OSError:
    return OSError(errno.EPERM, f"{name} is not a regular file of uid {os.geteuid()} (one link)")


def _is_symlink(name: str, parent: int) -> bool:
    with suppress(OSError):
        return stat.S_ISLNK(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode)
    return False


def _reason(error: OSError) -> str:
    return error.strerror or str(error)


def _untrusted(info: os.stat_result) -> str | None:
    """Why a directory or symlink with this status could be changed by another user."""
    if info.st_uid not in (0, os.geteuid()):
        return f"belongs to uid {info.st_uid}, not to {owners()}"
    if stat.S_ISLNK(info.st_mode):
        return None  # a link's mode means nothing; only its owner may change it
    sticky_root = info.st_uid == 0 and info.st_mode & stat.S_ISVTX
    if info.st_mode & 0o022 and not sticky_root:
        return f"is writable by group or others (mode {stat.S_IMODE(info.st_mode):04o})"
    return None


class _Walk:
    """The directories walked so far, each held open: ``[(path, O_PATH descriptor)]``."""

    def __init__(self, what: str, create: bool) -> None:
        self.what, self.create = what, create
        self.links = 0
        self.stack: list[tuple[str, int]] = []
        self._enter("/", os.open("/", _PATH | os.O_DIRECTORY))

    def resolve(self, text: str) -> None:
        pending = list(reversed(text.split("/")))
        while pending:
            name = pending.pop()
            if name in ("", "."):
                continue
            if name == "..":
                if len(self.stack) > 1:
                    os.close(self.stack.pop()[1])
                continue
            target = self._step(name)
            if target is not None:
                if target.startswith("/"):
                    self._back_to_root()
                pending.extend(reversed(target.split("/")))

    def close(self, keep: int | None) -> int:
        """Close every descriptor but the one at ``keep``; return that one (or -1)."""
        kept = self.stack.pop(keep)[1] if keep is not None else -1
        for _, fd in self.stack:
            os.close(fd)
        self.stack.clear()
        return kept

    def _step(self, name: str) -> str | None:
        """Go into the directory ``name``, or return the target of the symlink it is."""
        parent_path, parent = self.stack[-1]
        path = os.path.join(parent_path, name)
        try:
            fd = self._open(parent, name, path)
        except OSError as error:
            raise self._error(f"{path}:", _reason(error)) from None
        info = os.fstat(fd)
        if not stat.S_ISLNK(info.st_mode):
            self._enter(path, fd)
            return None
        try:
            problem = _untrusted(info)
            if problem is not None:
                raise self._error(f"symlink {path}", problem)
            self.links += 1
            if self.links > MAX_SYMLINKS:
                raise self._error(f"{path}:", os.strerror(errno.ELOOP))
            return os.readlink("", dir_fd=fd)  # the very link checked
        finally:
            os.close(fd)

    def _open(self, parent: int, name: str, path: str) -> int:
        try:
            return os.open(name, _PATH, dir_fd=parent)
        except FileNotFoundError:
            if not self.create:
                raise
        try:
            os.mkdir(name, 0o700, dir_fd=parent)
        except FileExistsError:
            pass  # made meanwhile by a trusted user (the parent is trusted): check it
        except OSError as error:
            raise ConfigError(f"{self.what}: cannot create {path}: {_reason(error)}") from None
        else:
            made = os.open(name, DIRECTORY, dir_fd=parent)
            try:
                os.fchmod(made, 0o700)  # whatever the umask
            finally:
                os.close(made)
        return os.open(name, _PATH, dir_fd=parent)

    def _enter(self, path: str, fd: int) -> None:
        info = os.fstat(fd)
        problem = "is not a directory" if not stat.S_ISDIR(info.st_mode) else _untrusted(info)
        if problem is not None:
            os.close(fd)
            raise self._error(path, problem)
        self.stack.append((path, fd))

    def _back_to_root(self) -> None:
        while len(self.stack) > 1:
            os.close(self.stack.pop()[1])

    def _error(self, path: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.what}: {path} {problem}")
