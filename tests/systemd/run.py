"""`make systemd-test`: the fstab line and the units of contrib/ under a booted systemd.

Not part of `make test`: it needs root, `debootstrap` and `systemd-nspawn` (Debian's
packages; the Makefile installs them), builds a minimal Debian once (about 300 MB, a
few minutes; kept in `.systemd-test/` and reused), and boots it. What it does:

1. Installs glacierfs into the container from wheels built from this checkout, as a user
   would (`/opt/glacierfs/.venv`, linked into `/usr/local/bin`).
2. Starts the emulator on the host's loopback (the container shares the host's network)
   with a vault of two archives, their jobs and an inventory; Bulk jobs take 20 s.
3. Writes, into the container, the commented `x-systemd.automount` line of
   `contrib/fstab.example` and the two units of `contrib/systemd/`, as written but for
   `region=eu-west-1` (the emulator's `endpoint_url` instead), the fstab line's mount
   point (`/srv/glacier`, so that it does not sit over the service's `/mnt/glacier/%i`)
   and its cache, and `--poll 1 --heartbeat 2` added to the retrieve unit's command (so
   that its heartbeat is seen in seconds, not 15 minutes). Root's credentials file holds
   dummy keys.
4. Boots it: `systemd-nspawn -b --register=no --keep-unit --bind=/dev/fuse` (the host
   has no system bus), and runs commands inside with `nsenter`.
5. Checks: the boot reaches `running`; the fstab automount mounts on first access and
   serves a file whose SHA-256 is the archive's; `glacierfs@myvault` is active only once
   its view is final (Type=notify, READY=1: `archives/` already named when `systemctl
   start` returns), comes back after `kill -9` of its daemon, and stops cleanly;
   `glacierfs-retrieve@myvault` carries the vault out through that mount with heartbeat
   lines in the journal, and exits 0.
6. Powers the container off and stops the emulator. The journal lines are kept in
   `.systemd-test/journal.txt`.

Exit status 0 when every check passed; the last line is ``N passed, N failed``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests.support.emulator import Emulator
from tests.support.vault import inventory, retrieve, sample, upload

REPO = Path(__file__).resolve().parent.parent.parent
WORK = Path(os.environ.get("GLACIERFS_SYSTEMD_TEST_DIR", REPO / ".systemd-test"))
ROOTFS = WORK / "rootfs"
PACKAGES = "systemd,systemd-sysv,dbus,fuse3,libfuse3-3,python3,python3-venv,procps,attr"
VAULT = "myvault"
FSTAB_MOUNT = "/srv/glacier"


class Checks:
    def __init__(self) -> None:
        self.passed = self.failed = 0

    def check(self, ok: bool, what: str, detail: str = "") -> bool:
        print(
            f"{'PASS' if ok else 'FAIL'}: {what}" + (f"\n    {detail}" if detail and not ok else "")
        )
        if ok:
            self.passed += 1
        else:
            self.failed += 1
        return ok


def poll(condition: Callable[[], bool], deadline: float) -> bool:
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            return False
        time.sleep(0.5)  # polling a booted system's state
    return True


def build_rootfs() -> None:
    if (ROOTFS / "usr/lib/systemd/systemd").exists():
        return
    print(f"building a minimal Debian in {ROOTFS} (once; a few minutes)", flush=True)
    partial = WORK / "rootfs.partial"
    shutil.rmtree(partial, ignore_errors=True)
    subprocess.run(
        ["debootstrap", "--variant=minbase", f"--include={PACKAGES}", "bookworm", str(partial)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    partial.rename(ROOTFS)


def install_glacierfs() -> None:
    wheels = ROOTFS / "opt/wheels"
    shutil.rmtree(wheels, ignore_errors=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "-w", str(wheels), str(REPO)], check=True
    )
    shutil.rmtree(ROOTFS / "opt/glacierfs", ignore_errors=True)
    script = (
        "python3 -m venv /opt/glacierfs/.venv && "
        "/opt/glacierfs/.venv/bin/pip install -q --no-index --find-links /opt/wheels glacierfs && "
        "ln -sf /opt/glacierfs/.venv/bin/glacierfs /usr/local/bin/glacierfs"
    )
    subprocess.run(["chroot", str(ROOTFS), "/bin/sh", "-c", script], check=True)


def seed_vault(emulator: Emulator) -> dict[str, str]:
    """Two archives with completed jobs, a third with none (for retrieve@ to request), and
    an inventory; name -> SHA-256 of its bytes."""
    client = emulator.client()
    client.create_vault(vaultName=VAULT)
    digests = {}
    for n, name in enumerate(("notes.txt", "photo.jpg", "later.bin")):
        data = sample(300_000 + n * 1_500_000, n)
        archive = upload(client, VAULT, data, name)
        if name != "later.bin":
            retrieve(client, VAULT, archive)
        digests[name] = hashlib.sha256(data).hexdigest()
    inventory(client, VAULT)
    return digests


def autofs_missing() -> str:
    """Why ``x-systemd.automount`` cannot work on this host, or "" when it can: systemd
    needs the kernel's autofs (``/dev/autofs``), which some kernels are built without."""
    with tempfile.TemporaryDirectory() as scratch:
        node = Path(scratch) / "autofs"
        os.mknod(node, 0o600 | stat.S_IFCHR, os.makedev(10, 235))
        try:
            os.close(os.open(node, os.O_RDONLY))
        except OSError as error:
            return f"this kernel has no autofs (opening /dev/autofs: {error.strerror})"
    return ""


def configure(url: str, automount: bool) -> None:
    """The fstab line and the units, as contrib/ has them but for the stand-ins: the
    ``x-systemd.automount`` line where the kernel has autofs, else the first line (mounted
    at boot, through remote-fs.target)."""
    example = (REPO / "contrib/fstab.example").read_text()
    line = next(
        text.lstrip("# ")
        for text in example.splitlines()
        if "fuse.glacierfs" in text and ("x-systemd.automount" in text) == automount
    )
    line = line.replace("/mnt/glacier", FSTAB_MOUNT).replace(
        "region=eu-west-1", f"endpoint_url={url}"
    )
    cache = "cache_dir=/var/cache/glacierfs-fstab"
    line = (
        line.replace("cache_dir=/var/cache/glacierfs", cache)
        if "cache_dir=" in line
        else f"{line.rsplit(' ', 2)[0]},{cache}  0 0"
    )
    (ROOTFS / "etc/fstab").write_text(line + "\n")
    for leftover in ("var/cache", "var/log/journal", "root/.cache"):  # a clean start each run
        shutil.rmtree(ROOTFS / leftover, ignore_errors=True)
        (ROOTFS / leftover).mkdir(parents=True)
    (ROOTFS / FSTAB_MOUNT.lstrip("/")).mkdir(parents=True, exist_ok=True)
    units = ROOTFS / "etc/systemd/system"
    for name in ("glacierfs@.service", "glacierfs-retrieve@.service"):
        text = (REPO / "contrib/systemd" / name).read_text()
        text = text.replace("region=eu-west-1", f"endpoint_url={url}")
        text = text.replace("retrieve --follow", "retrieve --follow --poll 1 --heartbeat 2")
        (units / name).write_text(text)
    aws = ROOTFS / "root/.aws"
    aws.mkdir(parents=True, exist_ok=True)
    (aws / "credentials").write_text(
        "[default]\naws_access_key_id = AKIDSYSTEMDTEST\naws_secret_access_key = test\n"
    )
    (aws / "config").write_text("[default]\nregion = us-east-1\n")


class Container:
    def __init__(self, log: Path) -> None:
        self.log = log.open("wb")
        self.process = subprocess.Popen(
            [
                "systemd-nspawn", "-b", "-D", str(ROOTFS), "--register=no", "--keep-unit",
                "--bind=/dev/fuse", "-M", "glacierfs-systemd-test",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.leader = 0

    def find_leader(self) -> bool:
        """PID 1 of the container: the nspawn process's child running systemd."""
        for child in Path(f"/proc/{self.process.pid}/task").glob("*/children"):
            for pid in child.read_text().split():
                if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                    self.leader = int(pid)
                    return True
        return False

    def run(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["nsenter", "-t", str(self.leader), "-a", *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def out(self, *argv: str) -> str:
        return self.run(*argv).stdout.strip()

    def stop(self) -> None:
        if self.process.poll() is None and self.leader:
            self.run("systemctl", "poweroff", "--no-block")
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=60)
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def check_fstab(box: Container, checks: Checks, digests: dict[str, str], automount: bool) -> None:
    unit = "srv-glacier"
    if automount:
        checks.check(
            box.out("systemctl", "is-active", f"{unit}.automount") == "active",
            "fstab: the generator made an automount unit from the x-systemd.automount line",
            box.out("systemctl", "status", f"{unit}.automount"),
        )
    else:
        checks.check(
            box.out("systemctl", "is-active", f"{unit}.mount") == "active",
            "fstab: the generator's mount unit mounted the vault at boot",
            box.out("systemctl", "status", f"{unit}.mount"),
        )
    listed = box.run("ls", f"{FSTAB_MOUNT}/archives")
    checks.check(
        listed.returncode == 0 and "notes.txt" in listed.stdout,
        "fstab: the vault is mounted through mount.fuse3 (archives/ named)",
        listed.stdout + listed.stderr + box.out("journalctl", "-u", f"{unit}.mount"),
    )
    digest = box.out("sha256sum", f"{FSTAB_MOUNT}/archives/photo.jpg").split(" ")[0]
    checks.check(digest == digests["photo.jpg"], "fstab: a file reads back with its SHA-256")
    wanted = box.run("ls", "/run/systemd/generator/remote-fs.target.wants").stdout.split()
    checks.check(
        f"{unit}.{'automount' if automount else 'mount'}" in wanted,
        "fstab: _netdev makes it a network mount (wanted by remote-fs.target, after the network)",
        " ".join(wanted),
    )
    box.run("umount", FSTAB_MOUNT)


def check_service(box: Container, checks: Checks) -> None:
    service = f"glacierfs@{VAULT}.service"
    started = box.run("systemctl", "start", service)
    listed = box.run("ls", f"/mnt/glacier/{VAULT}/archives")
    checks.check(
        started.returncode == 0 and "photo.jpg" in listed.stdout,
        "service: Type=notify start returns with the view final (archives/ named at once)",
        started.stderr + listed.stderr + box.out("journalctl", "-u", service),
    )
    first = box.out("systemctl", "show", "-p", "MainPID", "--value", service)
    box.run("kill", "-9", first)
    restarted = poll(
        lambda: (
            box.out("systemctl", "show", "-p", "MainPID", "--value", service) not in ("0", first)
            and box.out("systemctl", "is-active", service) == "active"
        ),
        deadline=90,
    )
    again = box.run("ls", f"/mnt/glacier/{VAULT}/archives")
    checks.check(
        restarted and "photo.jpg" in again.stdout,
        "service: after kill -9 of the daemon, systemd restarts it and the mount serves again",
        again.stderr + box.out("journalctl", "-u", service, "-n", "30"),
    )


def check_retrieve(box: Container, checks: Checks) -> None:
    unit = f"glacierfs-retrieve@{VAULT}.service"
    box.run("systemctl", "start", unit)
    ended = poll(lambda: box.out("systemctl", "is-active", unit) != "active", deadline=240)
    journal = box.out("journalctl", "-u", unit, "-o", "cat")
    result = box.out("systemctl", "show", "-p", "Result", "--value", unit)
    checks.check(
        ended and result == "success" and "done: 3 archives" in journal,
        "retrieve@: --follow carries the vault out through the mount and exits 0",
        journal[-2000:],
    )
    checks.check(
        journal.count("status: ") >= 2,
        "retrieve@: heartbeat lines in the journal while the jobs are pending",
        journal[-2000:],
    )


def main() -> int:
    if os.geteuid() != 0 or not shutil.which("systemd-nspawn") or not shutil.which("debootstrap"):
        print("systemd-test: needs root, systemd-nspawn and debootstrap (make systemd-test)")
        return 2
    WORK.mkdir(parents=True, exist_ok=True)
    build_rootfs()
    install_glacierfs()
    emulator = Emulator(
        Path(tempfile.mkdtemp(prefix="glacierfs-systemd-")), "--tier-delay", "Bulk=20"
    )
    checks = Checks()
    box: Container | None = None
    try:
        emulator.start()
        digests = seed_vault(emulator)
        missing = autofs_missing()
        if missing:
            print(f"SKIP: fstab x-systemd.automount: {missing}; the plain fstab line instead")
        configure(emulator.url, automount=not missing)
        box = Container(WORK / "boot.log")
        if not checks.check(poll(box.find_leader, 60), "the container boots"):
            return 1
        state = ""

        def settled() -> bool:
            nonlocal state
            state = box.out("systemctl", "is-system-running", "--wait")
            return state in ("running", "degraded")

        poll(settled, 120)
        checks.check(
            state == "running",
            f"systemd reaches running ({state})",
            box.out("systemctl", "--failed"),
        )
        check_fstab(box, checks, digests, automount=not missing)
        check_service(box, checks)
        check_retrieve(box, checks)
        stopped = box.run("systemctl", "stop", f"glacierfs@{VAULT}.service")
        checks.check(
            stopped.returncode == 0 and not box.out("findmnt", "-n", f"/mnt/glacier/{VAULT}"),
            "service: systemctl stop unmounts",
        )
        (WORK / "journal.txt").write_text(
            box.out("journalctl", "-b", "-o", "short-iso", "--no-pager")
        )
    finally:
        if box is not None:
            box.stop()
        emulator.stop()
    print(f"{checks.passed} passed, {checks.failed} failed")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
