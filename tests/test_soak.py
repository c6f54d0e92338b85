"""The soak driver itself (``make soak``), kept from rotting: its byte check, a short run
on a tiny vault with every fault (a flipped answer without its due checksum among them:
the run opens with that pair, so it goes through the real mount, and must be refused),
and its clean-up when interrupted the way Ctrl-C does.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from tests.soak.blame import explained
from tests.soak.readers import compare, judge
from tests.soak.vault import MIB, SoakJob
from tests.support.mount import needs_fuse, unmount, wait_for

WORKDIR = re.compile(r"work directory (\S+)")


def soak(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.soak", "--small", "--readers", "4", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def left_behind(workdir: Path) -> list[str]:
    """Mounts and processes of a soak run that are still there."""
    found = [str(workdir / "mount" / "mnt")] if os.path.ismount(workdir / "mount" / "mnt") else []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(workdir) in command:
            found.append(f"{pid}: {command}")
    return found


def test_compare_counts_every_byte_that_differs_or_lies_beyond_the_source() -> None:
    source = bytes(range(200))
    assert compare(source, source) == []
    assert compare(source, source[:50]) == []  # short: the reader reads on
    flipped = bytearray(source)
    flipped[7] ^= 1
    flipped[199] ^= 0xFF
    assert compare(source, bytes(flipped)) == [7, 199]
    assert compare(source[:10], source[:10] + b"xyz") == [10, 11, 12]


def test_an_answer_is_right_only_when_it_is_wholly_one_of_the_contents_it_may_give() -> None:
    own, claimed = bytes(range(100)), bytes(range(100, 200))
    assert judge([own[10:20], claimed[10:20]], own[10:20]) == (0, [])
    assert judge([own, claimed], claimed[:50]) == (1, [])
    mixed = own[:5] + claimed[5:10]  # half one archive, half another: wrong
    assert judge([own[:10], claimed[:10]], mixed) == (-1, [5, 6, 7, 8, 9])
    assert judge([own], claimed[:3]) == (-1, [0, 1, 2])


def test_blame_places_wrong_bytes_in_answers_with_a_flipped_byte_and_no_checksum() -> None:
    whole = SoakJob("A", "archive", 4 * MIB, Path("a"), "archive", 0)
    ranged = SoakJob("R", "range", MIB, Path("r"), "archive", 2 * MIB)
    answer = {"operation": "GetJobOutput", "status": 206, "range": f"0-{MIB - 1}"}
    log = [
        {**answer, "job": "R", "faults": ["flip", "drop-checksum"]},
        {**answer, "job": "A", "faults": ["flip"]},  # checked: the daemon refuses it
    ]
    wrong = [("A", 2 * MIB + 5), ("A", 5), ("R", 7)]  # R's 7 is the archive's 2 MiB + 7
    assert explained([whole, ranged], wrong, log) == 2


@needs_fuse
def test_a_short_soak_reads_under_faults_checks_every_byte_and_reports() -> None:
    process = soak("--duration", "15s", "--seed", "3")
    out, err = process.communicate(timeout=240)
    workdir = Path(WORKDIR.search(err).group(1))  # type: ignore[union-attr]
    assert process.returncode == 0, out + err
    figures = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    assert int(figures["reads"]) > 0
    assert figures["wrong bytes"].split()[0] == "0"
    assert int(figures["faults injected"].split()[0]) > 0
    assert int(figures["flipped, unchecked"].split()[0]) > 0  # the pair went through the mount
    assert int(figures["lies told"].split()[0]) > 0  # the first chaos step tells one
    assert re.match(r" +\d+\.\d\d s \(bound 5 s\), status 0", figures["exit after unmount"])
    for figure in ("EIO", "daemon RSS", "daemon open files", "bytes read"):
        assert figure in figures
    assert out.rstrip().endswith("result: PASS")
    assert not workdir.exists()
    assert left_behind(workdir) == []


@needs_fuse
def test_ctrl_c_stops_the_daemon_and_the_emulator_and_unmounts() -> None:
    process = soak("--duration", "10m", "--keep")
    assert process.stderr is not None
    workdir = Path(WORKDIR.search(process.stderr.readline()).group(1))  # type: ignore[union-attr]
    try:
        mountpoint = workdir / "mount" / "mnt"
        wait_for(lambda: os.path.ismount(mountpoint), "the soak's mount", deadline=120)
        os.killpg(process.pid, signal.SIGINT)  # what a terminal sends on Ctrl-C
        _, err = process.communicate(timeout=60)
        assert process.returncode == 130, err
        assert "cleaning up" in err
        assert left_behind(workdir) == []
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        unmount(workdir / "mount" / "mnt")
        for found in left_behind(workdir):  # only what this run started: its own directory
            if found[0].isdigit():
                os.kill(int(found.split(":")[0]), signal.SIGKILL)
        shutil.rmtree(workdir, ignore_errors=True)
