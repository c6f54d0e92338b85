"""Mounting glacierfs through the kernel in tests, and always cleaning up.

A :class:`Mount` runs ``glacierfs -f`` as a child process (so the test knows its PID),
waits for the mount by polling with a deadline, fails fast with the daemon's log if
it died, and at teardown unmounts (lazily if it must) and then stops the process it
started: terminate, then kill.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

DEADLINE = 30.0


REQUIRE_FUSE = "GLACIERFS_REQUIRE_FUSE"
"""Set to 1 (``.ci/run`` does), a machine without FUSE fails the run instead of skipping
every real-mount test: a CI run that skipped them all would be green and prove nothing."""


def fuse_available() -> bool:
    return os.path.exists("/dev/fuse") and shutil.which("fusermount3") is not None


def fuse_required() -> bool:
    return os.environ.get(REQUIRE_FUSE) == "1"


needs_fuse = pytest.mark.skipif(
    not fuse_available() and not fuse_required(), reason="needs /dev/fuse and fusermount3"
)


def pytest_sessionstart(session: pytest.Session) -> None:
    if fuse_required() and not fuse_available():
        pytest.exit(f"{REQUIRE_FUSE}=1 but /dev/fuse or fusermount3 is missing", returncode=1)


def isolated_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Credentials for the emulator, and nothing from this machine's AWS setup."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID="AKIDGLACIERFSTEST",
        AWS_SECRET_ACCESS_KEY="glacierfs-test-secret-key-do-not-log",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
    )
    env.update(extra or {})
    return env


def wait_for(
    condition: Callable[[], bool],
    what: str,
    deadline: float = DEADLINE,
    alive: Callable[[], bool] | None = None,
) -> None:
    """Poll ``condition`` until it holds; fail after ``deadline`` s or once ``alive`` fails."""
    end = time.monotonic() + deadline
    delay = 0.005
    while not condition():
        if alive is not None and not alive():
            raise AssertionError(f"gave up waiting for {what}: the process died")
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(delay)  # polling interval, not synchronisation
        delay = min(delay * 2, 0.1)


def unmount(path: Path) -> None:
    """Unmount if mounted; lazily if the plain way fails (busy or dead daemon)."""
    if not os.path.ismount(path):
        return
    result = subprocess.run(["fusermount3", "-u", str(path)], capture_output=True)
    if result.returncode != 0 and os.path.ismount(path):
        subprocess.run(["fusermount3", "-u", "-z", str(path)], capture_output=True)


def cmp(left: Path, right: Path) -> None:
    """Assert, as cmp(1) checks, that two files hold the same bytes."""
    result = subprocess.run(["cmp", str(left), str(right)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


class Mount:
    def __init__(
        self,
        endpoint: str,
        vault: str,
        root: Path,
        options: dict[str, str] | None,
        cache_dir: Path | None = None,
    ) -> None:
        self.path = root / "mnt"
        self.path.mkdir(parents=True, exist_ok=True)
        self.cache_dir = cache_dir or root / "cache"
        self.log_path = root / "glacierfs.log"
        self.vault = vault
        opts = {"endpoint_url": endpoint, "cache_dir": str(self.cache_dir), "refresh": "3600"}
        opts.update(options or {})
        self.options = opts
        self.process: subprocess.Popen[bytes] | None = None

    def argv(self) -> list[str]:
        text = ",".join(k if v == "" else f"{k}={v}" for k, v in self.options.items())
        return [sys.executable, "-m", "glacierfs", "-f", self.vault, str(self.path), "-o", text]

    def start(self) -> Mount:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.argv(),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=isolated_env(),
            start_new_session=True,
        )
        log.close()
        try:
            wait_for(lambda: os.path.ismount(self.path), "the mount", alive=self.alive)
        except AssertionError as error:
            self.stop()
            raise AssertionError(f"{error}\n--- log ---\n{self.log()}") from None
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> int | None:
        """Unmount and wait for the daemon; its exit code."""
        unmount(self.path)
        if self.process is None:
            return None
        if self.process.poll() is None:
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                stop_process(self.process)
        code = self.process.returncode
        self.process = None
        return code

    def job_file(self, job_id: str) -> Path:
        return self.path / "jobs" / job_id


@pytest.fixture
def mount_factory(tmp_path: Path) -> Iterator[Callable[..., Mount]]:
    mounts: list[Mount] = []

    def start(
        endpoint: str,
        vault: str,
        options: dict[str, str] | None = None,
        cache_dir: Path | None = None,
        name: str | None = None,
    ) -> Mount:
        root = tmp_path / (name or f"mount{len(mounts)}")
        mount = Mount(endpoint, vault, root, options, cache_dir=cache_dir)
        mounts.append(mount)
        return mount.start()

    yield start
    for mount in reversed(mounts):
        unmount(mount.path)
        if mount.process is not None:
            stop_process(mount.process)
