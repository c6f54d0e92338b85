"""A clean exit, every time: after an unmount, SIGTERM or SIGINT the daemon is gone.

Each case mounts through the kernel against the emulator, sets work in flight that
would not end by itself for minutes (retries in backoff with long retries configured,
a body that stalls, background name learning from an inventory whose body is always
cut short, a hydration at a crawl, a reader blocked in ``read()``), ends the mount, and
polls the daemon's process: it must be gone within :data:`EXIT_BOUND` seconds, with
exit code 0. The bound is a correctness bound, not a benchmark: the bug it guards
against (issue 16) kept the daemon spinning at 100% CPU for minutes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from glacierfs.control import mount_stats
from glacierfs.mounttable import MOUNTINFO, fuse_mounts
from tests.support.emulator import Emulator
from tests.support.mount import Mount, needs_fuse, wait_for
from tests.support.vault import inventory, retrieve

pytestmark = needs_fuse

MIB = 1 << 20
EXIT_BOUND = 5.0
LONG_RETRIES = {"retries": "100", "timeout": "600", "names_wait": "1"}
"""Retries that would go on for ten minutes: the exit must not wait for them. The mount
is announced after a second of learning names, the header probes going on behind it."""

REPEATS = 20


def hits(emulator: Emulator, fault: int) -> int:
    """How many requests a fault has struck (counted when it strikes, not at the end)."""
    return next(f["hits"] for f in emulator.admin("GET", "faults") if f["id"] == fault)


def assert_exits(mount: Mount, after: str) -> None:
    """The daemon ends by itself within EXIT_BOUND seconds, exit code 0, no mount left."""
    process = mount.process
    assert process is not None
    try:
        wait_for(lambda: process.poll() is not None, "the daemon to exit", deadline=EXIT_BOUND)
    except AssertionError:
        process.kill()  # ours; or the teardown would hang on its mount
        process.wait()
        raise AssertionError(
            f"the daemon still ran {EXIT_BOUND:.0f} s after {after}\n--- log ---\n{mount.log()}"
        ) from None
    assert process.returncode == 0, mount.log()
    with open(MOUNTINFO) as table:
        assert fuse_mounts(table.read(), os.path.realpath(mount.path)) == []


def unmount(mount: Mount, lazy: bool = False) -> None:
    argv = ["fusermount3", "-u", *(["-z"] if lazy else []), str(mount.path)]
    subprocess.run(argv, check=True, capture_output=True)


@pytest.fixture
def vault(emulator: Emulator) -> Callable[[str], str]:
    """A new vault with one seeded 2 MiB archive: returns its ArchiveId."""
    client = emulator.client()

    def make(name: str) -> str:
        client.create_vault(vaultName=name)
        archive, _ = emulator.seeded_archive(name, 2 * MIB, 1, "photos/beach.jpg")
        return archive

    return make


def learning_from_a_short_inventory(
    emulator: Emulator, vault: Callable[[str], str], mount_factory: Any, name: str
) -> Mount:
    """The reported case: background name learning retries an inventory whose body is
    cut short every time. The jobs appear after the mount (a refresh finds them), so
    that it is the background learning, reading from a worker thread, that retries."""
    archive = vault(name)
    mount: Mount = mount_factory(emulator.url, name, {**LONG_RETRIES, "refresh": "0.2"}, name=name)
    client = emulator.client()
    listing = inventory(client, name, "JSON")
    short = emulator.fault("short", job=listing)
    retrieve(client, name, archive)
    wait_for(lambda: hits(emulator, short) >= 2, "the inventory read to be retrying")
    return mount


def test_unmount_while_names_are_learnt_from_an_always_short_inventory_twenty_times(
    emulator: Emulator, vault: Callable[[str], str], mount_factory: Any
) -> None:
    for attempt in range(REPEATS):
        mount = learning_from_a_short_inventory(emulator, vault, mount_factory, f"short{attempt}")
        unmount(mount)
        assert_exits(mount, f"fusermount3 -u (attempt {attempt + 1})")


@pytest.mark.parametrize("kind", ["throttle", "error500", "short"])
def test_unmount_while_a_header_probe_retries(
    emulator: Emulator, vault: Callable[[str], str], mount_factory: Any, kind: str
) -> None:
    archive = vault("probe")
    job = retrieve(emulator.client(), "probe", archive)
    fault = emulator.fault(kind, job=job)
    mount: Mount = mount_factory(emulator.url, "probe", LONG_RETRIES)
    wait_for(lambda: hits(emulator, fault) >= 2, "the header probe to be retrying")
    unmount(mount)
    assert_exits(mount, f"fusermount3 -u during {kind} retries")


def test_unmount_while_a_body_stalls(
    emulator: Emulator, vault: Callable[[str], str], mount_factory: Any
) -> None:
    archive = vault("stall")
    job = retrieve(emulator.client(), "stall", archive)
    stall = emulator.fault("stall", job=job, ms=600_000)
    mount: Mount = mount_factory(emulator.url, "stall", LONG_RETRIES)
    wait_for(lambda: hits(emulator, stall) >= 1, "a body to stall")
    unmount(mount)
    assert_exits(mount, "fusermount3 -u during a stalled body")


def test_unmount_during_a_hydration(emulator: Emulator, mount_factory: Any) -> None:
    client = emulator.client()
    client.create_vault(vaultName="hydrate")
    for seed in (1, 2):
        archive, _ = emulator.seeded_archive("hydrate", 8 * MIB, seed, "")
        retrieve(client, "hydrate", archive)
    crawl = emulator.fault("bandwidth", bps=MIB // 4)
    mount: Mount = mount_factory(emulator.url, "hydrate", {"hydrate": ""})
    wait_for(lambda: hits(emulator, crawl) >= 1, "the hydration to be under way")
    wait_for(lambda: mount_stats(mount.path)["in_flight"] != {}, "a hydration fetch in flight")
    unmount(mount)
    assert_exits(mount, "fusermount3 -u during a hydration")


READER = """
import sys
try:
    with open(sys.argv[1], "rb", buffering=0) as stream:
        data = stream.read(4096)
except OSError as error:
    print(error.errno)
    sys.exit(3)
print("read", len(data))
"""


def blocked_reader(emulator: Emulator, vault: Callable[[str], str], mount_factory: Any) -> Any:
    """A process blocked in read() of a file whose every request is throttled."""
    archive = vault("blocked")
    job = retrieve(emulator.client(), "blocked", archive)
    throttle = emulator.fault("throttle", job=job)
    mount: Mount = mount_factory(emulator.url, "blocked", LONG_RETRIES)
    path = mount.job_file(job)
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(path)], stdout=subprocess.PIPE, text=True
    )

    def reading() -> bool:
        for fd in Path(f"/proc/{reader.pid}/fd").iterdir():
            with contextlib.suppress(FileNotFoundError):  # closed since it was listed
                if os.readlink(fd) == str(path):
                    return True
        return False

    try:
        wait_for(reading, "the reader to open the file", alive=lambda: reader.poll() is None)
        struck = hits(emulator, throttle)
        wait_for(lambda: hits(emulator, throttle) >= struck + 2, "the read to be retrying")
        assert reader.poll() is None, "the read was not blocked"
    except BaseException:
        reader.kill()
        reader.wait()
        raise
    return mount, reader


def assert_reader_failed(reader: subprocess.Popen[str]) -> None:
    """The blocked read ends with an error (the mount is gone), never with bytes."""
    try:
        out, _ = reader.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        reader.kill()
        reader.wait()
        raise AssertionError("the reader is still blocked after the daemon exited") from None
    assert reader.returncode == 3, out
    assert int(out) in (errno.ECONNABORTED, errno.ENOTCONN)  # the mount ended; see ShuttingDown


def test_a_lazy_unmount_with_a_reader_blocked_in_read_ends_the_daemon(
    emulator: Emulator, vault: Callable[[str], str], mount_factory: Any
) -> None:
    """A plain unmount is refused while the file is open (EBUSY); a lazy one detaches
    the mount and the kernel tells the daemon nothing until the file is closed."""
    mount, reader = blocked_reader(emulator, vault, mount_factory)
    unmount(mount, lazy=True)
    assert_exits(mount, "fusermount3 -u -z with a reader blocked in read()")
    assert_reader_failed(reader)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_ends_the_daemon_while_names_are_learnt(
    emulator: Emulator, vault: Callable[[str], str], mount_factory: Any, signum: int
) -> None:
    mount = learning_from_a_short_inventory(emulator, vault, mount_factory, "signalled")
    os.kill(mount.pid, signum)
    assert_exits(mount, signal.Signals(signum).name)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_ends_the_daemon_while_a_reader_is_blocked_in_read(
    emulator: Emulator, vault: Callable[[str], str], mount_factory: Any, signum: int
) -> None:
    mount, reader = blocked_reader(emulator, vault, mount_factory)
    os.kill(mount.pid, signum)
    assert_exits(mount, signal.Signals(signum).name)
    assert_reader_failed(reader)
