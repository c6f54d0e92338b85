"""The filesystems glacierfs is measured beside: the pyfuse3 ceiling and rclone's VFS cache.

Each is a process the bench starts, mounts through the kernel as glacierfs is mounted,
times with the same reader, and stops by its PID after unmounting it (lazily if it
must). The ceiling (tests/bench/ceiling.py) is the most this FUSE stack gives on this
machine; ``rclone mount --vfs-cache-mode full`` of the same bytes in a local directory
is what a user would otherwise mount, with its own cache directory.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.mount import stop_process, unmount, wait_for


def rclone_available() -> bool:
    return shutil.which("rclone") is not None


def bdi_read_ahead(mountpoint: Path) -> Path:
    device = os.stat(mountpoint).st_dev
    return Path(f"/sys/class/bdi/{os.major(device)}:{os.minor(device)}/read_ahead_kb")


def set_read_ahead(mountpoint: Path, kb: int) -> bool:
    """What glacierfs does for itself (as root): READs of up to ``kb`` KiB on this mount."""
    try:
        bdi_read_ahead(mountpoint).write_text(str(kb))
        return True
    except OSError:
        return False


def read_ahead(mountpoint: Path) -> int | None:
    try:
        return int(bdi_read_ahead(mountpoint).read_text())
    except (OSError, ValueError):
        return None


class Served:
    """A FUSE process started with ``argv`` that mounts on ``mountpoint``, serving ``name``."""

    def __init__(self, argv: list[str], root: Path, name: str) -> None:
        self.root = root
        self.mountpoint = root / "mnt"
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        self.argv = [arg.replace("{mnt}", str(self.mountpoint)) for arg in argv]
        self.file = self.mountpoint / name
        self.out = root / "stdout"
        self.log = root / "log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, read_ahead_kb: int | None = None) -> Served:
        """Mount; with ``read_ahead_kb``, set the mount's bdi read-ahead as glacierfs does."""
        with self.out.open("wb") as out, self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv, stdout=out, stderr=log, start_new_session=True
            )
        process = self.process
        try:
            wait_for(
                lambda: os.path.ismount(self.mountpoint),
                "the mount",
                deadline=120,
                alive=lambda: process.poll() is None,
            )
        except AssertionError as error:
            self.stop()
            raise AssertionError(f"{self.argv[:3]}: {error}\n{self.log.read_text()}") from None
        if read_ahead_kb is not None:
            set_read_ahead(self.mountpoint, read_ahead_kb)
        return self

    def stop(self) -> None:
        unmount(self.mountpoint)
        if self.process is None:
            return
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            stop_process(self.process)
        self.process = None

    def __enter__(self) -> Served:
        """``with served.start():`` stops it at the end of the block."""
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def ceiling(source: Path, root: Path) -> Served:
    """The pyfuse3-from-memory filesystem serving the bytes of ``source``."""
    argv = [sys.executable, "-m", "tests.bench.ceiling", str(source), "{mnt}"]
    return Served(argv, root, "data")


def ceiling_read_sizes(served: Served) -> dict[int, int]:
    """Reads of each size the kernel sent the (stopped) ceiling."""
    text = served.out.read_text().strip()
    if not text:
        return {}
    sizes: dict[str, Any] = json.loads(text.splitlines()[-1])["read_sizes"]
    return {int(size): int(count) for size, count in sizes.items()}


def rclone(source: Path, root: Path, cache: Path, *extra: str) -> Served:
    """``rclone mount --vfs-cache-mode full`` of the directory holding ``source``."""
    root.mkdir(parents=True, exist_ok=True)
    config = root / "rclone.conf"
    config.touch()
    argv = ["rclone", "mount", f":local:{source.parent}", "{mnt}", "--read-only"]
    argv += ["--vfs-cache-mode", "full", "--cache-dir", str(cache), "--config", str(config)]
    return Served([*argv, *extra], root, source.name)


READ_LINE = re.compile(r"\bRead \[[^]]*\] 0x[0-9a-f]+ (\d+) @0x")
"""A READ in rclone's ``--debug-fuse`` log: ``Read [ID=.. Node=..] 0xHANDLE SIZE @0xOFFSET``."""


def rclone_read_sizes(served: Served) -> dict[int, int]:
    """Reads of each size the kernel sent the (stopped) rclone run with ``--debug-fuse``."""
    sizes: dict[int, int] = {}
    for match in READ_LINE.finditer(served.log.read_text(errors="replace")):
        sizes[int(match.group(1))] = sizes.get(int(match.group(1)), 0) + 1
    return sizes


def read_sizes_label(sizes: dict[int, int]) -> str:
    """``READs counted: 128 KiB x 8192``; or that they could not be counted."""
    if not sizes:
        return "READ sizes not counted"
    shown = ", ".join(f"{size // 1024} KiB x {count}" for size, count in sorted(sizes.items()))
    return f"READs counted: {shown}"
