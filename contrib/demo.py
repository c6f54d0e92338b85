"""`make demo`: start the Glacier emulator with a sample vault, mount it, show it.

Everything runs on loopback in a temporary directory. At the end the mount is
unmounted and the emulator stopped, unless DEMO_KEEP=1 is set, in which case both
stay up and the commands to stop them are printed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
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
    mnt = work / "mnt"
    mnt.mkdir()
    step("Starting the Glacier emulator on loopback")
    emulator = subprocess.Popen(
        [sys.executable, "-m", "glacierfs.emulator", "--port", "0", "--state-dir",
         str(work / "state"), "--ready-file", str(work / "port")], env=ENV)
    mounted = False
    try:
        url = f"http://127.0.0.1:{wait_for_file(work / 'port', emulator)}"
        step(f"Seeding vault {VAULT!r}: archives, a full and a range retrieval, two inventories")
        os.environ.update(ENV)
        seed(url)
        step("Mounting it (returns once the mount is up)")
        opts = f"endpoint_url={url},cache_dir={work / 'cache'},log={work / 'glacierfs.log'}"
        show(sys.executable, "-m", "glacierfs", VAULT, str(mnt), "-o", opts)
        mounted = os.path.ismount(mnt)
        if not mounted:
            print((work / "glacierfs.log").read_text(errors="replace"))
            return 1
        step("What the mount shows")
        show("find", str(mnt))
        show("ls", "-l", str(mnt / "archives"))
        first = sorted((mnt / "jobs").iterdir())[0]
        step("Reading a file, and what glacierfs says of it")
        started = time.monotonic()
        digest = hashlib.sha256(first.read_bytes()).hexdigest()
        print(f"sha256 {digest}  ({first.stat().st_size} bytes in "
              f"{time.monotonic() - started:.2f} s)")
        show("getfattr", "-d", str(first))
        step("Status")
        show(sys.executable, "-m", "glacierfs", "status", str(mnt))
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
