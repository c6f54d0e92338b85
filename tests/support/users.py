"""Another local user in tests: acting as ``nobody`` through setpriv, and the files of
root's that an attack aims at (a victim, snapshotted to show it unchanged)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.mount import isolated_env

SECRET = b"root's secret, 0600\n"

needs_root_and_setpriv = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root, and setpriv to act as another user",
)


def nobody() -> int:
    return pwd.getpwnam("nobody").pw_uid


def as_nobody_argv(*argv: str) -> list[str]:
    """``argv`` run as the user nobody, who owns nothing of ours."""
    uid = nobody()
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *argv]


def as_nobody(*argv: str) -> None:
    """Run ``argv`` as the user nobody, who owns nothing of ours."""
    subprocess.run(as_nobody_argv(*argv), check=True, capture_output=True)


def run_glacierfs(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "glacierfs", *argv],
        capture_output=True,
        text=True,
        env=isolated_env(),
        timeout=120,
    )


def snapshot(directory: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every entry under ``directory`` and itself: mode, mtime, bytes (or link target)."""
    found = {}
    for path in [directory, *directory.rglob("*")]:
        info = path.lstat()
        if path.is_symlink():
            body = os.readlink(path).encode()
        elif path.is_file():
            body = path.read_bytes()
        else:
            body = b""
        found[str(path.relative_to(directory))] = (info.st_mode, info.st_mtime_ns, body)
    return found


def make_victim(directory: Path) -> Path:
    """A root-only directory holding the files a cache would write: lock, v1/..."""
    directory.mkdir(mode=0o700)
    for name in ("lock", "passwords"):
        path = directory / name
        path.write_bytes(SECRET)
        path.chmod(0o600)
    return directory


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one line of error of a command that failed without a traceback."""
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]
