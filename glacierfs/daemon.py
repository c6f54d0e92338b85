"""Startup and lifetime of a mount: checks, background mode, the trio main loop.

Everything that can be checked is checked before anything is mounted: options,
mountpoint, endpoint, credentials, vault, cache directory. In background mode the
process forks before trio and pyfuse3 start, and the parent waits on a pipe for
"mounted" or one line of error, so that the exit code of ``glacierfs`` (and of
``mount -a``, and systemd's) tells the truth. SIGTERM, SIGINT and ``fusermount3 -u``
(lazy or not) end the mount cleanly; SIGHUP refreshes the job list.

What runs while mounted, and the order it ends in, is :mod:`glacierfs.mounted`.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import logging
import logging.handlers
import os
import signal
import socket
import sys
from pathlib import Path

import trio

from glacierfs import logs, trusted
from glacierfs.cache.disk import DiskCache
from glacierfs.client import ClientSettings, GlacierClient
from glacierfs.config import Options, default_cache_dir
from glacierfs.custody import Custody
from glacierfs.errors import ConfigError, GlacierfsError, disk_error
from glacierfs.mounted import Ready, run

log = logging.getLogger("glacierfs")


def check_mountpoint(path: Path, nonempty: bool = False) -> None:
    """A directory, not mounted on already, and empty unless ``nonempty`` says otherwise:
    files under a mount are hidden while it is up, and a user who mounts over them by
    mistake sees them vanish with no word (libfuse 3 dropped its own check)."""
    try:
        if not path.is_dir():
            raise ConfigError(f"mountpoint {path} does not exist or is not a directory")
    except OSError as error:
        if error.errno == errno.ENOTCONN:
            raise ConfigError(
                f"mountpoint {path}: a glacierfs that died is still mounted there "
                f"(Transport endpoint is not connected); run: fusermount3 -u {path}"
            ) from None
        raise ConfigError(f"mountpoint {path}: {error.strerror}") from None
    if os.path.ismount(path):
        raise ConfigError(f"mountpoint {path} is already a mount point")
    if not nonempty and _has_entries(path):
        raise ConfigError(
            f"mountpoint {path} is not empty: its files would be hidden while mounted; "
            "mount on an empty directory, or add -o nonempty"
        )


def _has_entries(path: Path) -> bool:
    try:
        with os.scandir(path) as entries:
            return any(True for _ in entries)
    except OSError as error:
        raise ConfigError(f"mountpoint {path}: {error.strerror}") from None


def client_settings(options: Options) -> ClientSettings:
    return ClientSettings(
        vault=options.vault,
        account_id=options.account_id,
        region=options.region,
        profile=options.profile,
        endpoint_url=options.endpoint_url,
        connections=options.connections,
        read_timeout=min(30.0, options.timeout),
        connect_timeout=min(10.0, options.timeout),
    )


def check_service(options: Options) -> None:
    """The endpoint answers, the credentials work, the vault exists."""
    client = GlacierClient(client_settings(options))
    try:
        client.describe_vault()
    finally:
        client.close()


def setup_logging(options: Options) -> None:
    """Send the log to ``log=FILE``, or to stderr in the foreground, or to syslog
    (journald) in the background when its socket is there, and nowhere when it is not.

    The log file is created 0600, as the cache is private too: with ``debug`` it holds
    every FUSE call and path. It is never opened through a symlink, and its directory
    passes the cache directory's checks (:func:`glacierfs.trusted.open_log`). A
    background mount never logs to the terminal it was started from, even before it is
    up: its parent prints nothing on success and one line on failure.
    """
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if options.debug else logging.INFO)
    for old in list(root.handlers):
        root.removeHandler(old)
    handler: logging.Handler
    form = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    if options.log_file is not None:
        log_fd = trusted.open_log(options.log_file)
        stream = os.fdopen(log_fd, "a", encoding="utf-8", errors="backslashreplace")
        handler = logging.StreamHandler(stream)
    elif options.foreground:
        handler = logging.StreamHandler(sys.stderr)
        if os.environ.get("JOURNAL_STREAM"):  # systemd's journal stamps each line itself
            form = "%(levelname)s %(name)s: %(message)s"
    elif os.path.exists("/dev/log"):
        handler = logging.handlers.SysLogHandler("/dev/log")
        form = "glacierfs[%(process)d]: %(levelname)s %(message)s"
    else:  # no syslog socket (a container): nowhere to log in the background
        handler = logging.NullHandler()
    if not options.foreground:
        # A record that cannot be written (syslog gone, disk full) is dropped quietly,
        # not printed with a traceback to a stderr no one reads.
        logging.raiseExceptions = False
    handler.setFormatter(logging.Formatter(form))
    root.addHandler(handler)
    for noisy in ("botocore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logs.install(root)


def mount(options: Options) -> int:
    """Mount, in the background unless ``-f``; the exit code says whether it worked.

    Logging is set up first, in both modes, so that a bad ``log=`` is the first thing
    refused and nothing before the fork falls back to printing on stderr.
    """
    setup_logging(options)
    check_mountpoint(options.mountpoint, options.nonempty)
    check_service(options)
    if options.foreground:
        return serve(options, _notify_systemd)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid > 0:
        os.close(write_end)
        return _wait_for_child(read_end, pid)
    os.close(read_end)
    os.setsid()
    return _background_child(options, write_end)


def _wait_for_child(read_end: int, pid: int) -> int:
    """The parent of a background mount: silent on "OK", else one line on stderr."""
    with os.fdopen(read_end, "r") as pipe:
        message = pipe.readline().strip()
    if message == "OK":
        return 0
    if not message:  # it died without a word: say how
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status):
            name = signal.Signals(os.WTERMSIG(status)).name
            message = f"the daemon was killed by {name} during startup"
        else:
            message = "the daemon exited during startup (see its log)"
    print(f"glacierfs: {logs.escape(message)}", file=sys.stderr)
    return 1


def _background_child(options: Options, write_end: int) -> int:
    """The daemon of a background mount: it says "OK" or one line of error up the pipe,
    and writes nothing else to the caller's terminal. Until the mount is up its stdout
    and stderr go to an anonymous file, where libfuse and fusermount3 explain their
    failures, and the last line there completes an unexpected error's message. After
    that they go to /dev/null."""
    pipe = os.fdopen(write_end, "w")
    captured = _capture_stdio()

    def ready(error: str | None, explain: bool = False) -> None:
        if pipe.closed:
            return
        if error is not None and explain and (said := _last_line(captured)):
            error = f"{error} ({said})"
        pipe.write("OK\n" if error is None else " ".join(error.splitlines()) + "\n")
        pipe.close()
        _detach_stdio()
        os.close(captured)

    try:
        code = serve(options, ready)
    except GlacierfsError as error:
        ready(str(error))
        code = error.exit_code
    except BaseException as error:
        said = disk_error(error) if isinstance(error, OSError) else None
        if said is not None:  # a disk that refused a write: one line, as an expected error
            ready(str(said))
            log.error("%s", said)
        else:  # logged with its traceback; the caller gets a line
            ready(f"unexpected error: {error!r}", explain=True)
            log.critical("unexpected error: %r", error, exc_info=True)
        code = 1
    ready("the daemon stopped during startup")
    os._exit(code)


def _capture_stdio() -> int:
    """Point stdin at /dev/null, and stdout and stderr at an anonymous file (returned)."""
    captured = os.memfd_create("glacierfs-startup", os.MFD_CLOEXEC)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(captured, 1)
    os.dup2(captured, 2)
    return captured


def _last_line(captured: int) -> str:
    """The last line written to the captured stdout and stderr, if any."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    size = os.fstat(captured).st_size
    tail = os.pread(captured, 4096, max(0, size - 4096)).decode(errors="replace")
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _detach_stdio() -> None:
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)


def _notify_systemd(error: str | None) -> None:
    address = os.environ.get("NOTIFY_SOCKET")
    if error is not None:
        raise ConfigError(error)
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"READY=1", address)


M_MMAP_THRESHOLD = -3  # mallopt parameters, from glibc's malloc.h
M_ARENA_MAX = -8


def _return_freed_buffers() -> None:
    """Make glibc give freed response buffers back to the kernel at once.

    Bodies of up to ``max_request`` bytes are allocated and freed in worker threads
    all the time. By default glibc raises its mmap threshold after such a free and
    keeps the memory in per-thread arenas, so the daemon's resident set grows far
    past what it holds (350 MiB for four readers, measured). Allocations of 1 MiB
    and more mmapped, and two arenas, keep the resident set near what is in use.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, 1 << 20)
        libc.mallopt(M_ARENA_MAX, 2)
    except (OSError, AttributeError):  # not glibc: nothing to tune
        pass


def serve(options: Options, ready: Ready) -> int:
    """Run the mount until it is unmounted or signalled; return the exit code."""
    _return_freed_buffers()
    cache_dir = options.cache_dir or default_cache_dir(os.environ, os.getuid())
    # the cache never evicts what the user paid for and no live job can send again
    custody = Custody(cache_dir, service_time=lambda: client.service_time)
    disk = DiskCache(cache_dir, options.cache_size, classes=custody.classes)
    client = GlacierClient(client_settings(options))
    try:
        vault = client.describe_vault()
        vault_arn = str(vault.get("VaultARN") or f"{options.account_id}:{options.vault}")
        trio.run(run, options, disk, client, vault_arn, ready, custody)
    finally:
        disk.close()
        client.close()
    return 0
