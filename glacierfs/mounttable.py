"""Whether this process's mount is still in the mount table.

The kernel tells a FUSE daemon of an unmount only when the filesystem is released for
good. A lazy unmount (``umount -l``, ``fusermount3 -u -z``) takes the mount out of the
tree at once, but while a file stays open there (a reader blocked in ``read()`` on a
fetch that keeps retrying) the daemon hears nothing, and would serve that one reader
for as long as its retries last. The mount table does tell: ``/proc/self/mountinfo``
reports every change to poll(2) as POLLPRI, so a thread sleeps until the table
changes, then looks. No timer, no cost while nothing is mounted or unmounted.
"""

from __future__ import annotations

import os
import re
import select
from pathlib import Path

MOUNTINFO = "/proc/self/mountinfo"

_OCTAL = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash in paths as octal escapes."""
    return _OCTAL.sub(lambda match: chr(int(match.group(1), 8)), field)


MountKey = tuple[str, str]
"""A mount's id and its device (``major:minor``). Ids are reused as soon as they are
free; the device of a FUSE connection is not, while the connection lives."""


def fuse_mounts(text: str, mountpoint: str) -> list[MountKey]:
    """The FUSE mounts on ``mountpoint`` in a mountinfo text, lowest first."""
    found = []
    for line in text.splitlines():
        mine, _, theirs = line.partition(" - ")
        fields = mine.split(" ")
        if len(fields) >= 5 and theirs.startswith("fuse") and _unescape(fields[4]) == mountpoint:
            found.append((fields[0], fields[2]))
    return found


class MountWatch:
    """Finds this mount's id once it is mounted, and waits until it is gone."""

    def __init__(self, mountpoint: Path) -> None:
        # Resolved now, before the mount: later, looking up the mountpoint's own path
        # would send a request to this very process.
        self._path = os.path.realpath(mountpoint)

    def _table(self) -> str:
        with open(MOUNTINFO, encoding="utf-8", errors="surrogateescape") as table:
            return table.read()

    def find(self) -> MountKey | None:
        """The topmost FUSE mount on the mountpoint (ours, just after mounting)."""
        mounts = fuse_mounts(self._table(), self._path)
        return mounts[-1] if mounts else None

    def wait_until_gone(self, mount: MountKey) -> None:
        """Block until ``mount`` leaves the mount table (in a worker thread)."""
        with open(MOUNTINFO, "rb") as table:
            poller = select.poll()
            poller.register(table.fileno(), select.POLLPRI | select.POLLERR)
            while True:
                table.seek(0)
                text = table.read().decode("utf-8", "surrogateescape")
                if mount not in fuse_mounts(text, self._path):
                    return
                poller.poll()  # until the table changes, however long that is
