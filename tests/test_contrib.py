"""The examples in contrib/ work: both fstab lines through mount(8), the systemd service.

mount.fuse3 finds ``glacierfs`` on the standard PATH only, so the fstab test runs in
a private mount namespace (``unshare -m``) where a directory holding ``glacierfs`` is
bound over ``/usr/local/sbin``: nothing outside the test sees it, and the namespace,
with every mount in it, is gone when the test's process ends.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.emulator import Emulator
from tests.support.mount import isolated_env, needs_fuse, stop_process, unmount, wait_for
from tests.support.vault import retrieve, sample, upload

pytestmark = needs_fuse

CONTRIB = Path(__file__).resolve().parent.parent / "contrib"
VAULT = "myvault"

IN_NAMESPACE = r"""
import json, os, subprocess, sys
bindir, fstab, mnt, expected = sys.argv[1:5]
subprocess.run(["mount", "--bind", bindir, "/usr/local/sbin"], check=True)
result = subprocess.run(["mount", "-T", fstab, mnt], capture_output=True, text=True)
if result.returncode:
    sys.exit("mount failed: " + result.stderr.strip())
try:
    pid = json.loads(os.getxattr(mnt, "user.glacierfs.stats"))["pid"]
    same = open(os.path.join(mnt, "jobs", expected), "rb").read()
    sys.stdout.write(json.dumps({"pid": pid, "size": len(same)}))
finally:
    subprocess.run(["umount", mnt], check=True)
"""


def fstab_lines() -> list[str]:
    text = (CONTRIB / "fstab.example").read_text()
    return [line for line in text.splitlines() if line and not line.startswith("#")]


@pytest.mark.parametrize("line", fstab_lines(), ids=lambda line: line.split()[2])
def test_each_fstab_example_mounts_and_unmounts_through_mount_8(
    emulator: Emulator, tmp_path: Path, line: str
) -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) for a private mount namespace")
    client = emulator.client()
    client.create_vault(vaultName=VAULT)
    data = sample(3 << 20, 1)
    job = retrieve(client, VAULT, upload(client, VAULT, data))
    bindir = tmp_path / "bin"
    bindir.mkdir()
    program = bindir / "glacierfs"
    program.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m glacierfs "$@"\n')
    program.chmod(0o755)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    source, _, kind, options = line.split()[:4]
    options = re.sub(r"region=[^,]*", f"endpoint_url={emulator.url}", options)
    options = re.sub(r"cache_dir=[^,]*,?", "", options).rstrip(",")
    options += f",cache_dir={tmp_path / 'cache'},log={tmp_path / 'log'}"
    fstab = tmp_path / "fstab"
    fstab.write_text(f"{source} {mnt} {kind} {options} 0 0\n")
    result = subprocess.run(
        [
            *("unshare", "-m", "--propagation", "private", sys.executable, "-c", IN_NAMESPACE),
            *(str(bindir), str(fstab), str(mnt), job),
        ],
        capture_output=True,
        text=True,
        env=isolated_env(),
        timeout=120,
    )
    log = (tmp_path / "log").read_text() if (tmp_path / "log").exists() else ""
    assert result.returncode == 0, result.stderr + log
    answer = json.loads(result.stdout)
    assert answer["size"] == len(data)
    wait_for(lambda: not Path(f"/proc/{answer['pid']}").exists(), "the daemon to exit")
    assert "unmounted" in log


def unit_exec_start(name: str, instance: str) -> list[str]:
    text = (CONTRIB / "systemd" / name).read_text()
    line = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    return shlex.split(line.removeprefix("ExecStart=").replace("%i", instance))


def test_the_service_unit_command_reports_ready_to_systemd_once_mounted(
    emulator: Emulator, tmp_path: Path
) -> None:
    client = emulator.client()
    client.create_vault(vaultName=VAULT)
    job = retrieve(client, VAULT, upload(client, VAULT, b"hello"))
    argv = unit_exec_start("glacierfs@.service", VAULT)
    assert argv[0] == "/usr/local/bin/glacierfs" and "-f" in argv
    options = argv[argv.index("-o") + 1]
    options = re.sub(r"region=[^,]*", f"endpoint_url={emulator.url}", options)
    options = re.sub(r"cache_dir=[^,]*", f"cache_dir={tmp_path / 'cache'}", options)
    mnt = tmp_path / "mnt" / VAULT
    mnt.mkdir(parents=True)
    argv = [sys.executable, "-m", "glacierfs", *argv[1:]]
    argv[argv.index("-o") + 1] = options
    argv[-1] = str(mnt)
    notify = tmp_path / "notify"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(notify))
    listener.settimeout(60)
    daemon = subprocess.Popen(
        argv,
        env=isolated_env({"NOTIFY_SOCKET": str(notify)}),
        stderr=subprocess.DEVNULL,
    )
    try:
        message = listener.recv(4096).decode()
        assert "READY=1" in message
        assert os.path.ismount(mnt)  # READY only once the mount is up
        assert (mnt / "jobs" / job).read_bytes() == b"hello"
    finally:
        listener.close()
        unmount(mnt)
        try:
            daemon.wait(timeout=30)  # fusermount3 -u ends it, as ExecStop does
        finally:
            stop_process(daemon)
    assert daemon.returncode == 0
