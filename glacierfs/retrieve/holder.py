"""Who holds the disk cache, proven: whether ``retrieve`` may save through a mount.

The lock file names the pid of its holder, but a name in a file is a claim: a process
of another user that got hold of the lock, or a pid that was reused, must not make
``retrieve`` read "outputs" from a filesystem that is not the cache's owner, and count
them saved. So a mount is trusted as the holder only when all of these hold:

1. the lock (a regular file of ours in the held root, :mod:`glacierfs.cacheroot`) is
   held, and names a pid;
2. that process runs as our user or root, and its command line is a glacierfs mount;
3. its mountpoint is in the mount table as a ``fuse.glacierfs`` mounted by our user or
   root, whose root's figures name that pid;
4. that mount's root answers a fresh random challenge with the cache's secret
   (:data:`glacierfs.cacheroot.IDENTITY_XATTR`, :func:`glacierfs.cacheroot.answer`): only
   the process that opened this very cache knows it.
"""

from __future__ import annotations

import fcntl
import hmac
import json
import os
import re
import secrets
from pathlib import Path

from glacierfs.cacheroot import IDENTITY, IDENTITY_XATTR, Held, answer
from glacierfs.errors import ConfigError, GlacierfsError
from glacierfs.options import parse_mount_args
from glacierfs.trusted import owners


def cache_holder(root: Held) -> int | None:
    """The pid the disk cache's lock names while it is held (-1: none readable), or None
    when it is free."""
    try:
        fd = root.open("lock", os.O_RDONLY)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise ConfigError(f"cache directory {root.path}: lock: {error.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        return int(text) if text.isdigit() else -1
    finally:
        os.close(fd)  # also releases a shared lock taken
    return None


def proven_mount(root: Held, pid: int) -> Path:
    """The mountpoint of the glacierfs mount ``pid`` that holds this cache, proven as the
    module says; ConfigError (one line, saying what failed) otherwise."""
    refused = f"the cache {root.path} is in use by pid {pid}, which"
    if not runs_as_us(pid):
        raise ConfigError(f"{refused} is not a process of {owners()}")
    mountpoint = find_mount(pid)
    if mountpoint is None:
        raise ConfigError(
            f"{refused} is not a glacierfs mount on this host; try again when it is done"
        )
    if not proves_identity(root, mountpoint):
        raise ConfigError(f"{refused} mounts {mountpoint}, which does not prove it holds it")
    return mountpoint


def runs_as_us(pid: int) -> bool:
    """Whether process ``pid`` exists and all its user ids are ours or root's."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    for line in status.splitlines():
        if line.startswith("Uid:"):
            return all(int(uid) in (0, os.geteuid()) for uid in line.split()[1:])
    return False


def proves_identity(root: Held, mountpoint: Path) -> bool:
    """Whether the mount's root answers a fresh challenge with this cache's secret."""
    try:
        secret = root.read(IDENTITY)
    except OSError:
        return False
    if not secret:
        return False
    challenge = secrets.token_hex(16)
    try:
        said = os.getxattr(mountpoint, IDENTITY_XATTR + challenge)
    except OSError:
        return False
    return hmac.compare_digest(said, answer(secret, challenge))


def _unescape(text: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def _claimed_mountpoint(pid: int) -> Path | None:
    """The mountpoint on the command line of process ``pid``, if it is a glacierfs mount.

    Read from /proc, not by asking mounts: other mounts on the host may be slow or hung,
    and only the one holding our cache is our business.
    """
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return None
    starts = [n for n, arg in enumerate(argv) if Path(arg).name in ("glacierfs", "mount.glacierfs")]
    if not starts:
        return None
    try:
        command = parse_mount_args([a for a in argv[starts[0] + 1 :] if a])
    except GlacierfsError:
        return None
    if command.name != "mount" or command.options is None:
        return None
    return cwd / command.options.mountpoint


def _mounted_by_us(super_options: str) -> bool:
    """Whether a FUSE mount's super options say our user or root mounted it."""
    for option in super_options.split(","):
        name, _, value = option.partition("=")
        if name == "user_id":
            return value.isdigit() and int(value) in (0, os.geteuid())
    return False


def find_mount(pid: int) -> Path | None:
    """The glacierfs mount whose daemon is ``pid``, checked against the mount table."""
    claimed = _claimed_mountpoint(pid)
    if claimed is None:
        return None
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields, _, tail = line.partition(" - ")
        parts, rest = fields.split(" "), tail.split(" ")
        if len(parts) < 5 or len(rest) < 3 or rest[0] != "fuse.glacierfs":
            continue
        mountpoint = Path(_unescape(parts[4]))
        if os.path.normpath(mountpoint) != os.path.normpath(claimed):
            continue
        if not _mounted_by_us(rest[2]):
            continue
        try:
            stats = json.loads(os.getxattr(mountpoint, "user.glacierfs.stats"))
        except (OSError, ValueError):
            continue
        if isinstance(stats, dict) and stats.get("pid") == pid:
            return mountpoint
    return None
