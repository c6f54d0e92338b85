"""Files written under the user's ``--deliver-to DIR``: atomically, never over another.

Each archive goes to ``DIR/<its path under archives/>``: the same safe names as the mount
shows. The directory is the user's, not the cache's, so it is walked by descriptors
from ``DIR`` down, each component opened with ``O_NOFOLLOW`` (a symlink planted in the
tree makes that archive fail, in one line, rather than write elsewhere), and every file
is created with ``O_EXCL``.

A whole archive is written into a temporary file beside its final name
(``.glacierfs-<id>.tmp``), fsynced, given its mtime, then linked to its name (``link``
fails rather than replace a file that appeared meanwhile) and the temporary name
removed; then the directory is fsynced. An archive larger than the cache is written
piece by piece into ``.glacierfs-<id>.part`` (kept across runs, so that a killed
delivery resumes), and placed the same way once whole.

An existing file at the name with the archive's size and tree hash *is* the delivery:
nothing is written. Any other file there is never overwritten: the archive takes the
name with the suffix the mount gives a contested name (``photo~3f2a9c1b.jpg``).
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import os
import stat
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from glacierfs.errors import GlacierfsError
from glacierfs.names.safe import suffixed_names
from glacierfs.retrieve.selection import Archive
from glacierfs.treehash import MIB, combine

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class DeliveryFailed(GlacierfsError):
    """One archive could not be delivered now (the message says why, in one line)."""


@dataclass(frozen=True)
class Placed:
    path: str  # relative to the destination
    written: bool  # False: an identical file was already there
    renamed: bool  # True: another file held the archive's name


def scratch(archive: Archive, kind: str) -> str:
    """The temporary name of an archive's file being written (``tmp`` or ``part``)."""
    tag = hashlib.sha256(archive.archive_id.encode()).hexdigest()[:20]
    return f".glacierfs-{tag}.{kind}"


def _tree_hash_of(fd: int) -> str:
    digests, offset = [], 0
    while data := os.pread(fd, MIB, offset):
        digests.append(hashlib.sha256(data).digest())
        offset += len(data)
    return combine(digests).hex()


class Destination:
    """A directory to deliver into, held open for the run."""

    def __init__(self, root: Path) -> None:
        self.root = root
        try:
            os.makedirs(root, mode=0o755, exist_ok=True)
            self._fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as error:
            raise DeliveryFailed(f"--deliver-to {root}: {error.strerror}") from None

    def close(self) -> None:
        os.close(self._fd)

    def directory(self, archive: Archive) -> int:
        """The archive's parent directory, made if need be; a descriptor to close."""
        fd = os.dup(self._fd)
        try:
            for part in archive.path.split("/")[:-1]:
                with suppress(FileExistsError):
                    os.mkdir(part, 0o755, dir_fd=fd)
                child = os.open(part, DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = child
        except OSError as error:
            os.close(fd)
            where = self.root / archive.path
            raise DeliveryFailed(f"{where}: a directory on the way: {error.strerror}") from None
        return fd

    def _same(self, dir_fd: int, name: str, archive: Archive) -> bool | None:
        """Whether the file at ``name`` is the archive (None: no file there)."""
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        except FileNotFoundError:
            return None
        except OSError as error:
            if error.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
                return False  # a symlink, a directory, a socket: not the archive
            raise
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_size != archive.size:
                return False
            return _tree_hash_of(fd) == archive.tree_hash
        finally:
            os.close(fd)

    def slot(self, dir_fd: int, archive: Archive) -> tuple[str, bool]:
        """(name, already there): the archive's own name, or the first free suffixed one
        (or one that already holds the archive)."""
        name = _base(archive)
        names = itertools.chain(
            [name], suffixed_names(name, archive.archive_id, archive.archive_id)
        )
        for candidate in names:
            same = self._same(dir_fd, candidate, archive)
            if same is None or same:
                return candidate, bool(same)
        raise AssertionError("suffixed names are endless")  # pragma: no cover

    def whole(self, archive: Archive, leaves: Iterable[bytes], mtime: float) -> Placed:
        """Write the archive from its leaves (the caller checks them as they come: an
        exception from ``leaves`` leaves nothing behind) unless it is there already."""
        dir_fd = self.directory(archive)
        try:
            name, there = self.slot(dir_fd, archive)
            if there:
                return Placed(self._relative(archive, name), False, name != _base(archive))
            temporary = scratch(archive, "tmp")
            with suppress(FileNotFoundError):
                os.unlink(temporary, dir_fd=dir_fd)  # ours, left by a run that was killed
            fd = os.open(temporary, NEW_FILE, 0o644, dir_fd=dir_fd)
            try:
                for leaf in leaves:
                    _write_all(fd, leaf)
                self._seal(fd, mtime)
            except BaseException:
                os.close(fd)
                os.unlink(temporary, dir_fd=dir_fd)
                raise
            os.close(fd)
            return self._place(dir_fd, temporary, archive)
        finally:
            os.close(dir_fd)

    def open_part(self, archive: Archive, resume: bool) -> int:
        """The archive's part file, for pieces at their offsets: made anew (``resume``
        False: any left by a run that recorded no piece is ours to remove), or reopened."""
        dir_fd = self.directory(archive)
        name = scratch(archive, "part")
        try:
            if resume:
                fd = os.open(name, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    os.close(fd)
                    raise DeliveryFailed(f"{self.root / archive.path}: {name} is not a file")
                return fd
            with suppress(FileNotFoundError):
                os.unlink(name, dir_fd=dir_fd)
            flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            return os.open(name, flags, 0o644, dir_fd=dir_fd)
        except FileNotFoundError:
            raise DeliveryFailed(
                f"{self.root / archive.path}: its partly written {name} is gone"
            ) from None
        finally:
            os.close(dir_fd)

    def finish_part(self, archive: Archive, fd: int, mtime: float) -> Placed:
        """The part file is whole and checked: give it its mtime and its name."""
        dir_fd = self.directory(archive)
        try:
            os.ftruncate(fd, archive.size)
            self._seal(fd, mtime)
            name, there = self.slot(dir_fd, archive)
            if there:
                os.unlink(scratch(archive, "part"), dir_fd=dir_fd)
                os.fsync(dir_fd)
                return Placed(self._relative(archive, name), False, name != _base(archive))
            return self._place(dir_fd, scratch(archive, "part"), archive)
        finally:
            os.close(dir_fd)

    def drop_part(self, archive: Archive) -> None:
        dir_fd = self.directory(archive)
        try:
            with suppress(FileNotFoundError):
                os.unlink(scratch(archive, "part"), dir_fd=dir_fd)
        finally:
            os.close(dir_fd)

    @staticmethod
    def _seal(fd: int, mtime: float) -> None:
        os.utime(fd, (mtime, mtime))
        os.fsync(fd)

    def _place(self, dir_fd: int, temporary: str, archive: Archive) -> Placed:
        """Link the written file to the archive's name (or a suffixed one, should a file
        have taken it meanwhile: ``link`` never replaces), then drop the temporary name."""
        for _ in range(8):
            name, there = self.slot(dir_fd, archive)
            try:
                if not there:
                    os.link(temporary, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            except FileExistsError:
                continue
            os.unlink(temporary, dir_fd=dir_fd)
            os.fsync(dir_fd)
            return Placed(self._relative(archive, name), not there, name != _base(archive))
        raise DeliveryFailed(f"{self.root / archive.path}: its name keeps being taken")

    def _relative(self, archive: Archive, name: str) -> str:
        return "/".join([*archive.path.split("/")[:-1], name])


def _base(archive: Archive) -> str:
    return archive.path.split("/")[-1]


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
