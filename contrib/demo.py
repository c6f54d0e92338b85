"""`make demo`: carry a sample vault out, as the README's walkthrough does.

The Glacier emulator runs on loopback with the real tier times and a clock two hours
ahead every second, so Bulk's 5-12 hours pass in seconds. The story: an inventory,
the mount, the plan and its cost (nothing spent), `retrieve --follow` requesting and
saving every archive through the mount, an rsync of archives/, and `status` showing
every archive verified against its tree hash.

Everything runs in a temporary directory. At the end the mount is unmounted and the
emulator stopped, unless DEMO_KEEP=1 is set, in which case both stay up and the
commands to stop them are printed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from glacierfs.emulator.demo import VAULT, seed

ENV = {
    **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
    "AWS_ACCESS_KEY_ID": "AKIDDEMO",
    "AWS_SECRET_ACCESS_KEY": "demo-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


def step(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def show(*argv: str) -> None:
    print("$ " + " ".join(argv), flush=True)
    subprocess.run(argv, env=ENV, check=False)


CLOCK_SPEED = "7200"
"""Emulated seconds per second: Bulk's 5-12 hours take 2.5-6 s, a 24-hour expiry 12 s."""


def wait_for_inventory(url: str, job: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{url}/_emulator/jobs") as response:
            jobs = {j["JobId"]: j for j in json.load(response)}
        if jobs.get(job, {}).get("StatusCode") == "Succeeded":
            return
        time.sleep(0.1)
    sys.exit("demo: the inventory job did not complete")


def wait_for_file(path: Path, process: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + 30
    while not (path.exists() and path.read_text().strip()):
        if process.poll() is not None or time.monotonic() > deadline:
            sys.exit("demo: the emulator did not start")
        time.sleep(0.05)
    return path.read_text().strip()


def main() -> int:
    keep = os.environ.get("DEMO_KEEP") == "1"
    work = Path(tempfile.mkdtemp(prefix="glacierfs-demo-"))
    mnt, copy = work / "mnt", work / "copy"
    mnt.mkdir()
    step(f"Starting the Glacier emulator on loopback (real tier times, clock x{CLOCK_SPEED})")
    emulator = subprocess.Popen(
        [sys.executable, "-m", "glacierfs.emulator", "--port", "0", "--state-dir",
         str(work / "state"), "--ready-file", str(work / "port"), "--real-tier-times",
         "--clock-speed", CLOCK_SPEED], env=ENV)
    mounted = False
    try:
        url = f"http://127.0.0.1:{wait_for_file(work / 'port', emulator)}"
        step(f"Vault {VAULT!r}: four archives from two upload tools, and an inventory job")
        os.environ.update(ENV)
        wait_for_inventory(url, seed(url))
        opts = f"endpoint_url={url},cache_dir={work / 'cache'}"
        step("Mounting it: files appear under archives/ as their outputs are saved")
        show(sys.executable, "-m", "glacierfs", VAULT, str(mnt), "-o",
             f"{opts},log={work / 'glacierfs.log'}")
        mounted = os.path.ismount(mnt)
        if not mounted:
            print((work / "glacierfs.log").read_text(errors="replace"))
            return 1
        show("find", str(mnt))
        retrieve = [sys.executable, "-m", "glacierfs", "retrieve", "-o", opts, VAULT, "--all"]
        step("The plan and what it costs: nothing is spent")
        show(*retrieve, "--dry-run")
        step("retrieve --follow: request (two jobs at a time), wait, save, until all are in")
        show(*retrieve, "--yes", "--follow", "--max-jobs", "2", "--poll", "0.25")
        step("The mount, and an rsync of archives/ (nothing is fetched again)")
        show("find", str(mnt / "archives"), "-type", "f")
        show("rsync", "-a", "--stats", f"{mnt / 'archives'}/", f"{copy}/")
        step("Status: every archive cached and verified against its tree hash")
        show(sys.executable, "-m", "glacierfs", "status", str(mnt))
        print(
            f"(The emulator's clock runs {CLOCK_SPEED} times as fast as this host's and is "
            "hours ahead of it by now,\n so EXPIRES IN reads long here: against the real "
            "service a job's output lasts 24 hours.)"
        )
        if keep:
            print(f"\nLeft running. Stop with:\n  fusermount3 -u {mnt}\n  kill {emulator.pid}")
            return 0
    finally:
        if not keep:
            if mounted or os.path.ismount(mnt):
                subprocess.run(["fusermount3", "-u", str(mnt)], check=False)
            emulator.terminate()
            emulator.wait(timeout=30)
            shutil.rmtree(work, ignore_errors=True)
    step("Unmounted, emulator stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
