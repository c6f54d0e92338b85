"""A newcomer's first day: the README's walkthrough run as written, mount first.

The commands are taken from the README's walkthrough block, with the emulator standing
in for AWS (``-o region=eu-west-1`` becomes its ``endpoint_url``), temporary
directories for ``/mnt/glacier``, ``/srv/...``, and its clock moved by the test. The
order is the one a user who mounts first takes: the mount is up before the inventory
completes, and ``retrieve --dry-run`` must still plan at once, never send the user to
buy a second inventory. Every command the output tells the user to run is run as
printed. One change to the commands as written: ``--follow`` is given ``--poll 0.05``
(the test moves the emulator's clock hours at a time and waits for each round).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.support.emulator import Emulator
from tests.support.mount import cmp, isolated_env, needs_fuse, unmount, wait_for
from tests.support.retrieve import FLAGS, HOUR, Retrieve, advance, drive, seed

README = Path(__file__).resolve().parent.parent / "README.md"
VAULT = "photos"


def walkthrough() -> dict[int, list[str]]:
    """Step number -> its command lines, from the README's walkthrough block."""
    text = README.read_text().split("## Moving a vault out: a walkthrough", 1)[1]
    block = text.split("What to retrieve:", 1)[0]
    steps: dict[int, list[str]] = {}
    number, pending = 0, ""
    for raw in block.splitlines():
        if not raw.startswith("    "):
            continue  # prose around the code block
        line = raw.strip()
        heading = re.match(r"# (\d)\. ", line)
        if heading:
            number = int(heading.group(1))
            continue
        if not line or line.startswith("#"):
            continue
        pending += line.rstrip("\\").strip() + " "
        if not line.endswith("\\"):
            steps.setdefault(number, []).append(pending.split(" #")[0].strip())
            pending = ""
    return steps


class Newcomer:
    """Runs the walkthrough's commands with this machine's stand-ins."""

    def __init__(self, emulator: Emulator, tmp_path: Path) -> None:
        self.emulator, self.tmp = emulator, tmp_path
        self.paths = {
            "/mnt/glacier": tmp_path / "mnt",
            "/srv/glacier-cache": tmp_path / "cache",
            "/srv/photos": tmp_path / "photos",
        }
        self.paths["/mnt/glacier"].mkdir()
        bin_dir = Path(sys.executable).parent
        self.env = isolated_env({"HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "xdg")})
        self.env["PATH"] = f"{bin_dir}{os.pathsep}{self.env['PATH']}"

    def words(self, command: str) -> list[str]:
        command = command.replace("region=eu-west-1", f"endpoint_url={self.emulator.url}")
        for written, here in self.paths.items():
            command = command.replace(written, str(here))
        return shlex.split(command)

    def run(self, command: str, *extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.words(command), *extra],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=300,
        )

    def start(self, command: str, *extra: str, log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            return subprocess.Popen(
                [*self.words(command), *extra], stdout=out, stderr=out, env=self.env
            )


def printed_commands(text: str) -> list[str]:
    """The commands an output tells its reader to run: what stands between backquotes."""
    return re.findall(r"`(glacierfs [^`]+)`", text)


@needs_fuse
def test_the_readme_walkthrough_mount_first_as_a_newcomer_runs_it(
    emulator_factory: Callable[..., Emulator], tmp_path: Path
) -> None:
    steps = walkthrough()
    assert sorted(steps) == [1, 2, 3, 4, 5, 6], steps
    emulator = emulator_factory(*FLAGS)
    made = seed(emulator, VAULT, {"2019/beach.jpg": 300_000, "docs/taxes.pdf": 2_500_000})
    user = Newcomer(emulator, tmp_path)
    mnt = user.paths["/mnt/glacier"]
    daemon_pid: int | None = None
    try:
        # 2. Mount first, to watch the files arrive.
        mounted = user.run(steps[2][0])
        assert mounted.returncode == 0 and mounted.stderr == "", mounted.stderr
        assert os.path.ismount(mnt)
        daemon_pid = int(json.loads(os.getxattr(mnt, "user.glacierfs.stats"))["pid"])

        # 1. The inventory; what it prints is run as printed once the job is done.
        started = user.run(steps[1][0])
        assert started.returncode == 0, started.stderr
        hints = printed_commands(started.stdout)
        assert hints and all("endpoint_url=" in hint for hint in hints), started.stdout
        advance(emulator, 5 * HOUR)  # the inventory completes; the mount has not looked

        for hint in hints:
            ran = user.run(hint)
            assert ran.returncode == 0, ran.stderr
            assert "2 archives selected" in ran.stdout and "--inventory" not in ran.stderr

        # 3. The plan, at once: no hint to start (and pay for) another inventory.
        plan = user.run(steps[3][0])
        assert plan.returncode == 0, plan.stderr
        assert "2 archives selected" in plan.stdout and "estimated retrieval cost" in plan.stdout
        assert "start one" not in plan.stdout + plan.stderr

        # 4. Carried out, unattended, the test's clock standing in for the hours.
        follower = Retrieve(emulator, VAULT, tmp_path / "cache", tmp_path / "follow.log")
        follower.process = user.start(steps[4][0], "--poll", "0.05", log=follower.log)
        try:
            drive(emulator, follower)
        finally:
            follower.stop()
        assert follower.process.returncode == 0, follower.output()
        assert "done: 2 archives" in follower.output()

        # 5. Copied out at disk speed; every archive verified.
        copied = user.run(steps[5][0])
        assert copied.returncode == 0, copied.stderr
        for path, (_, data) in made.items():
            expected = tmp_path / "expected"
            expected.write_bytes(data)
            cmp(user.paths["/srv/photos"] / path, expected)
        status = user.run(steps[5][1])
        assert status.returncode == 0 and status.stdout.count("tree-hash") >= 2, status.stdout

        # 6. Unmounted; the daemon ends by itself.
        unmounted = user.run(steps[6][0])
        assert unmounted.returncode == 0 and not os.path.ismount(mnt)
        wait_for(lambda: not _alive(daemon_pid), "the daemon to exit")
    finally:
        unmount(mnt)
        if daemon_pid is not None and _alive(daemon_pid):
            os.kill(daemon_pid, 15)


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
