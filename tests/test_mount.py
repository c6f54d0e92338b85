"""The mount through the kernel: what it shows, how it refuses writes, how it starts and stops."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mount import Mount, isolated_env, needs_fuse, unmount, wait_for
from tests.support.vault import inventory, job_output, retrieve, sample, upload

pytestmark = needs_fuse

MIB = 1 << 20
VAULT = "photos"


@pytest.fixture
def vault(emulator):  # type: ignore[no-untyped-def]
    """A vault with an archive, a full job, a range job, and two inventories."""
    client = emulator.client()
    client.create_vault(vaultName=VAULT)
    data = sample(3 * MIB + 12345, 1)
    archive = upload(client, VAULT, data, "holiday/beach.jpg")
    jobs = {
        "full": retrieve(client, VAULT, archive),
        "range": retrieve(client, VAULT, archive, f"{MIB}-{2 * MIB - 1}"),
        "json": inventory(client, VAULT, "JSON"),
        "csv": inventory(client, VAULT, "CSV"),
    }
    return client, data, archive, jobs


def test_jobs_view_lists_every_completed_job_by_id(emulator, vault, mount_factory) -> None:  # type: ignore[no-untyped-def]
    _client, _, _, jobs = vault
    mount = mount_factory(emulator.url, VAULT)
    assert sorted(os.listdir(mount.path / "jobs")) == sorted(jobs.values())
    assert sorted(os.listdir(mount.path)) == ["archives", "inventories", "jobs"]


def test_files_read_back_exactly_and_have_exact_sizes(emulator, vault, mount_factory) -> None:  # type: ignore[no-untyped-def]
    client, data, _, jobs = vault
    mount = mount_factory(emulator.url, VAULT)
    full = mount.job_file(jobs["full"])
    assert full.stat().st_size == len(data)
    assert full.read_bytes() == data
    part = mount.job_file(jobs["range"])
    assert part.stat().st_size == MIB
    assert part.read_bytes() == data[MIB : 2 * MIB]
    for kind in ("json", "csv"):
        path = mount.job_file(jobs[kind])
        expected = job_output(client, VAULT, jobs[kind])
        assert path.stat().st_size == len(expected)
        assert path.read_bytes() == expected
    assert json.loads(mount.job_file(jobs["json"]).read_bytes())["ArchiveList"]


def test_stat_shows_read_only_files_owned_by_the_mounting_user(
    emulator, vault, mount_factory
) -> None:  # type: ignore[no-untyped-def]
    _, _, _, jobs = vault
    mount = mount_factory(emulator.url, VAULT, {"umask": "027"})
    info = mount.job_file(jobs["full"]).stat()
    assert oct(info.st_mode & 0o777) == oct(0o440)
    assert (info.st_uid, info.st_gid) == (os.getuid(), os.getgid())
    described = emulator.client().describe_job(vaultName=VAULT, jobId=jobs["full"])
    from datetime import datetime

    completed = datetime.fromisoformat(described["CompletionDate"].replace("Z", "+00:00"))
    assert abs(info.st_mtime - completed.timestamp()) < 1


def test_find_and_friendly_views(emulator, vault, mount_factory) -> None:  # type: ignore[no-untyped-def]
    _, data, _archive, jobs = vault
    mount = mount_factory(emulator.url, VAULT)
    found = subprocess.run(
        ["find", str(mount.path), "-type", "f"], capture_output=True, text=True, check=True
    ).stdout.split()
    # each job in jobs/, each inventory in its view, the archive once (the range is in it)
    assert len(found) == len(jobs) + 3
    inventories = sorted(os.listdir(mount.path / "inventories"))
    assert [name.rsplit(".", 1)[1] for name in inventories] == ["csv", "json"]
    assert os.listdir(mount.path / "archives") == ["holiday"]  # named by the description
    assert os.listdir(mount.path / "archives" / "holiday") == ["beach.jpg"]
    assert (mount.path / "archives" / "holiday" / "beach.jpg").read_bytes() == data
    assert mount.job_file(jobs["range"]).read_bytes() == data[MIB : 2 * MIB]


def test_xattrs_describe_the_job(emulator, vault, mount_factory) -> None:  # type: ignore[no-untyped-def]
    client, _data, archive, jobs = vault
    mount = mount_factory(emulator.url, VAULT)
    path = mount.job_file(jobs["full"])
    names = os.listxattr(path)
    assert {
        "user.glacier.job_id",
        "user.glacier.archive_id",
        "user.glacier.tree_hash",
        "user.glacier.expires",
        "user.glacierfs.verified",
    } <= set(names)
    assert os.getxattr(path, "user.glacier.job_id").decode() == jobs["full"]
    assert os.getxattr(path, "user.glacier.archive_id").decode() == archive
    described = client.describe_job(vaultName=VAULT, jobId=jobs["full"])
    assert os.getxattr(path, "user.glacier.tree_hash").decode() == described["SHA256TreeHash"]
    assert os.getxattr(path, "user.glacier.expires").decode().endswith("Z")
    getfattr = subprocess.run(["getfattr", "-d", str(path)], capture_output=True, text=True)
    assert jobs["full"] in getfattr.stdout
    with pytest.raises(OSError) as missing:
        os.getxattr(path, "user.nothing")
    assert missing.value.errno == errno.ENODATA


@pytest.mark.parametrize(
    "operation",
    [
        lambda p: open(p, "wb"),  # noqa: SIM115
        lambda p: open(p, "ab"),  # noqa: SIM115
        lambda p: os.truncate(p, 0),
        lambda p: os.unlink(p),
        lambda p: os.rename(p, p.with_name("x")),
        lambda p: os.mkdir(p.parent / "newdir"),
        lambda p: open(p.parent / "new", "wb"),  # noqa: SIM115
        lambda p: os.chmod(p, 0o777),
        lambda p: os.setxattr(p, "user.x", b"1"),
        lambda p: os.utime(p, (0, 0)),
        lambda p: os.symlink("x", p.parent / "link"),
        lambda p: os.link(p, p.parent / "hardlink"),
        lambda p: os.removexattr(p, "user.glacier.job_id"),
        lambda p: os.rmdir(p.parent),
        lambda p: os.mknod(p.parent / "fifo"),
    ],
)
def test_every_write_like_operation_fails_read_only(
    emulator, vault, mount_factory, operation
) -> None:  # type: ignore[no-untyped-def]
    _, _, _, jobs = vault
    mount = mount_factory(emulator.url, VAULT)
    with pytest.raises(OSError) as raised:
        operation(mount.job_file(jobs["full"]))
    assert raised.value.errno in (errno.EROFS, errno.EACCES, errno.EPERM)


def test_jobs_in_progress_or_failed_are_not_shown_and_appear_on_refresh(
    emulator_factory, mount_factory
) -> None:  # type: ignore[no-untyped-def]
    emulator = emulator_factory("--job-delay", "100000")
    client = emulator.client()
    client.create_vault(vaultName=VAULT)
    archive = upload(client, VAULT, sample(1000, 2))
    waiting, failing = retrieve(client, VAULT, archive), retrieve(client, VAULT, archive)
    emulator.fail(failing)
    mount = mount_factory(emulator.url, VAULT)
    assert os.listdir(mount.path / "jobs") == []
    emulator.complete(waiting)
    os.kill(mount.pid, signal.SIGHUP)
    wait_for(lambda: os.listdir(mount.path / "jobs") == [waiting], "the job to appear")
    assert mount.job_file(waiting).read_bytes() == sample(1000, 2)


def test_sigterm_unmounts_and_exits_zero(emulator, vault, mount_factory) -> None:  # type: ignore[no-untyped-def]
    mount = mount_factory(emulator.url, VAULT)
    os.kill(mount.pid, signal.SIGTERM)
    assert mount.process is not None
    assert mount.process.wait(timeout=30) == 0
    assert not os.path.ismount(mount.path)


def test_fusermount_unmount_ends_the_daemon_cleanly(emulator, vault, mount_factory) -> None:  # type: ignore[no-untyped-def]
    mount = mount_factory(emulator.url, VAULT)
    assert mount.stop() == 0


def run_glacierfs(
    *argv: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "glacierfs", *argv],
        capture_output=True,
        text=True,
        env=env or isolated_env(),
        timeout=60,
    )


@pytest.mark.parametrize("logging", ["log=FILE", "syslog or nowhere"])
def test_background_mode_returns_once_mounted_and_prints_nothing(
    emulator, vault, tmp_path: Path, logging: str
) -> None:  # type: ignore[no-untyped-def]
    _, data, _, jobs = vault
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    opts = f"endpoint_url={emulator.url},cache_dir={tmp_path / 'cache'},debug"
    if logging == "log=FILE":
        opts += f",log={tmp_path / 'log'}"
    result = run_glacierfs(VAULT, str(mnt), "-o", opts)
    try:
        assert result.returncode == 0, result.stderr
        assert result.stdout == result.stderr == ""
        assert os.path.ismount(mnt)
        stats = json.loads(os.getxattr(mnt, "user.glacierfs.stats"))
        assert (mnt / "jobs" / jobs["full"]).read_bytes() == data
    finally:
        unmount(mnt)
    wait_for(lambda: not _alive(stats["pid"]), "the daemon to exit")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_help_and_version_answer(flag: str) -> None:
    result = run_glacierfs(flag)
    assert result.returncode == 0 and "glacierfs" in result.stdout


def test_startup_failures_are_one_line_and_leave_no_mount(emulator, vault, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    afile = tmp_path / "file"
    afile.write_text("x")
    ok = f"endpoint_url={emulator.url},cache_dir={tmp_path / 'cache'}"
    cases = {
        "missing mountpoint": ([VAULT, str(tmp_path / "nope"), "-o", ok], None, "mountpoint"),
        "mountpoint is a file": ([VAULT, str(afile), "-o", ok], None, "not a directory"),
        "no such vault": (["novault", str(mnt), "-o", ok], None, "novault"),
        "endpoint down": (
            [
                VAULT,
                str(mnt),
                "-o",
                f"endpoint_url=http://127.0.0.1:9,cache_dir={tmp_path / 'c'},timeout=2",
            ],
            None,
            "unreachable",
        ),
        "no such vault, debug": (["novault", str(mnt), "-o", f"{ok},debug"], None, "novault"),
        "bad option": ([VAULT, str(mnt), "-o", "bogus=1"], None, "unknown mount option"),
        "rw": ([VAULT, str(mnt), "-o", f"rw,{ok}"], None, "read-only"),
        "no credentials": (
            [VAULT, str(mnt), "-o", ok],
            {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""},
            "credentials",
        ),
    }
    for name, (argv, env, expected) in cases.items():
        environment = isolated_env()
        if env is not None:
            for key in env:
                environment.pop(key, None)
        result = run_glacierfs(*argv, env=environment)
        assert result.returncode != 0, name
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], (name, result.stderr)
        assert "Traceback" not in result.stderr
        assert not os.path.ismount(mnt), name


def test_rejected_credentials_are_one_line(emulator_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    emulator = emulator_factory("--access-key", "AKIDSOMEONEELSE")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    result = run_glacierfs(
        VAULT, str(mnt), "-o", f"endpoint_url={emulator.url},cache_dir={tmp_path / 'cache'}"
    )
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1 and "credentials" in result.stderr
    assert not os.path.ismount(mnt)


HELPER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
"""Where mount(8) and mount.fuse3 look for `glacierfs`, whatever the caller's PATH."""


@pytest.mark.parametrize("form", ["fuse.glacierfs", "fuse prog#vault"])
def test_mount_through_mount_fuse3_as_from_fstab(
    emulator, vault, tmp_path: Path, form: str
) -> None:  # type: ignore[no-untyped-def]
    """mount(8) -> mount.fuse3 -> glacierfs, in both fstab shapes."""
    if os.geteuid() != 0 or not Path("/sbin/mount.fuse3").exists():
        pytest.skip("needs root and mount.fuse3")
    program = str(Path(sys.executable).parent / "glacierfs")
    if form == "fuse.glacierfs":
        if shutil.which("glacierfs", path=HELPER_PATH) is None:
            pytest.skip("glacierfs is not installed where mount.fuse3 looks")
        kind, source = "fuse.glacierfs", VAULT
    else:
        kind, source = "fuse", f"{program}#{VAULT}"
    _, data, _, jobs = vault
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    env = isolated_env()
    opts = (
        f"ro,_netdev,endpoint_url={emulator.url},cache_dir={tmp_path / 'cache'},"
        f"log={tmp_path / 'log'}"
    )
    result = subprocess.run(
        ["mount", "-t", kind, source, str(mnt), "-o", opts],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    try:
        assert result.returncode == 0, result.stderr
        assert (mnt / "jobs" / jobs["full"]).read_bytes() == data
        stats = json.loads(os.getxattr(mnt, "user.glacierfs.stats"))
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)
        unmount(mnt)
    assert not os.path.ismount(mnt)
    wait_for(lambda: not _alive(stats["pid"]), "the daemon to exit")


def as_nobody(*argv: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *argv],
        capture_output=True,
    )


@pytest.fixture
def open_root() -> Iterator[Path]:
    """A directory other users can traverse (pytest's own are 0700)."""
    root = Path(tempfile.mkdtemp(prefix="glacierfs-access-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize(
    ("options", "readable"),
    [
        ({}, False),
        ({"allow_other": "", "umask": "022"}, True),
        ({"allow_other": "", "umask": "077"}, False),
    ],
    ids=["private", "allow_other", "allow_other+umask077"],
)
def test_other_users_read_only_with_allow_other_and_the_mode_allowing_it(
    emulator, vault, open_root: Path, options: dict[str, str], readable: bool
) -> None:  # type: ignore[no-untyped-def]
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to become another user")
    _, data, _, jobs = vault
    mount = Mount(emulator.url, VAULT, open_root / "m", options).start()
    try:
        os.chmod(mount.path.parent, 0o755)
        assert as_nobody("test", "-x", str(mount.path.parent)).returncode == 0
        result = as_nobody("cat", str(mount.job_file(jobs["full"])))
        if readable:
            assert result.returncode == 0 and result.stdout == data
        else:
            assert result.returncode != 0 and b"Permission denied" in result.stderr
    finally:
        mount.stop()


def test_a_mountpoint_with_files_is_refused_unless_nonempty(
    emulator, vault, tmp_path: Path, mount_factory
) -> None:  # type: ignore[no-untyped-def]
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    (mnt / "keep.txt").write_text("mine")
    ok = f"endpoint_url={emulator.url},cache_dir={tmp_path / 'cache'}"
    result = run_glacierfs(VAULT, str(mnt), "-o", ok, env=isolated_env())
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "not empty" in lines[0] and "nonempty" in lines[0], result.stderr
    assert not os.path.ismount(mnt)
    assert (mnt / "keep.txt").read_text() == "mine"

    mount = mount_factory(emulator.url, VAULT, {"nonempty": ""}, name="over")
    mount.stop()
    (mount.path / "keep.txt").write_text("mine")
    mount.start()
    assert os.path.ismount(mount.path)
    assert "jobs" in os.listdir(mount.path) and "keep.txt" not in os.listdir(mount.path)
    mount.stop()
    assert (mount.path / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("flag", ["--json", None])
def test_status_into_a_closed_pipe_ends_quietly(emulator, vault, mount_factory, flag) -> None:  # type: ignore[no-untyped-def]
    """`glacierfs status --json | head -1`: the reader went away; no traceback."""
    mount = mount_factory(emulator.url, VAULT)
    read_end, write_end = os.pipe()
    os.close(read_end)  # a reader that has had enough before the first byte: EPIPE at once
    argv = [sys.executable, "-m", "glacierfs", "status", *([flag] if flag else []), str(mount.path)]
    try:
        result = subprocess.run(
            argv,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            env=isolated_env(),
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert result.stderr == "" and result.returncode == 141


def test_status_says_what_was_fetched_and_served_without_a_request(
    emulator, vault, mount_factory
) -> None:  # type: ignore[no-untyped-def]
    _, data, _, jobs = vault
    mount = mount_factory(emulator.url, VAULT)
    assert mount.job_file(jobs["full"]).read_bytes() == data
    result = subprocess.run(
        [sys.executable, "-m", "glacierfs", "status", str(mount.path)],
        capture_output=True,
        text=True,
        env=isolated_env(),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stdout.splitlines() if x.startswith("fetched "))
    assert "without a request)" in line and "from cache" not in line
