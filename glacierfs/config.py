"""Command line and mount options, and every default glacierfs has, in one place.

The command line has the shape ``mount.fuse3`` uses, so that the same program runs
by hand, from ``/etc/fstab`` (``fuse.glacierfs`` or ``glacierfs#VAULT`` with type
``fuse``) and under systemd::

    glacierfs [-f] [-d] [-o OPT[,OPT...]] VAULT MOUNTPOINT

Parsing is pure: it reads no environment but what is passed in, touches no file,
and raises :class:`UsageError` with a one-line message for anything it refuses.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from glacierfs import __version__
from glacierfs.errors import UsageError
from glacierfs.treehash import MIB

# --- Defaults, each with why it has its value -------------------------------------------

DEFAULT_CACHE_SIZE = 100 << 30
"""100 GiB: big enough for whole archives of the size people retrieve, small enough for a
laptop disk; users moving a vault set it to what they have."""

DEFAULT_MEMORY_CACHE = 96 * MIB
"""Recently used leaves kept in memory; the page cache (keep_cache) serves re-reads, so
this only needs to hold what is fetched ahead of readers (``read_ahead``) and not yet
read: leaves pushed out before they are read cost a disk read and a hash."""

DEFAULT_BLOCK_SIZE = 1 * MIB
"""The smallest request, and what a random read fetches: one tree-hash leaf, the least a
checksum can cover. Sequential reads grow their requests up to ``max_request``."""

DEFAULT_MAX_REQUEST = 4 * MIB
"""The largest single GET of a sequential reader: 4 MiB at 25 MB/s takes 170 ms, so
40 ms of latency costs a fifth; smaller requests make more of them in flight within
the same window, which the benchmark shows matters more on a slow-per-connection link
(16 x 4 MiB: 221 MB/s; 8 x 8 MiB: 150 MB/s, on the WAN shape), and a failed request
costs little to redo."""

DEFAULT_READ_AHEAD = 64 * MIB
"""How far ahead of a sequential reader data is fetched: 16 connections x 4 MiB in
flight keep a 25 MB/s-per-connection link busy across 40 ms of latency. Kept under
``memory_cache`` so that what is fetched ahead is still in memory when read."""

DEFAULT_CONNECTIONS = 16
"""GETs in flight at once for the whole mount: each connection to a distant region is
slow on its own (25 MB/s in the benchmark's WAN shape), so the link fills only with
many; 16 measured 9x the AWS CLI's single stream there, at 208 MiB peak RSS."""

DEFAULT_MEMORY_BUDGET = 64 * MIB
"""Bytes in flight (requested, not yet stored) for the whole mount, whatever the number of
files and readers."""

DEFAULT_DISK_THREADS = 4
"""Disk cache calls from the trio loop at once (:mod:`glacierfs.cache.aio`): enough to
load a sequential reader's next leaves in parallel, few enough that a slow disk queues
its callers instead of taking the worker threads the network and hashing need."""

DEFAULT_REFRESH = 300.0
"""Seconds between job-list refreshes: jobs take hours to complete, so five minutes is
prompt enough and costs one ListJobs call."""

DEFAULT_TIMEOUT = 120.0
"""Seconds a read keeps retrying an unreachable or failing endpoint before EIO."""

DEFAULT_RETRIES = 8
"""Attempts per request for transient errors and checksum mismatches."""

DEFAULT_NAMES_WAIT = 60.0
"""Seconds a mount may wait, before it is announced, to learn the archives' names (saved
descriptions, inventories, the header of each archive's first block, fetched in parallel):
a name that appears after the announcement would change what `mount && rsync` copies, so
waiting is worth a minute; a vault so large or a link so slow that it takes longer shows
the archives still unnamed only under jobs/ until their names are known."""

# --- Bounds: values past these are mistakes, refused with one line ------------------

MAX_ID = 2**32 - 2
"""The largest uid or gid: ids are 32 bits, and 2^32-1 is the kernel's "no id" (-1)."""

MAX_SIZE = 2**63 - 1
"""The largest size of anything: the largest file offset, and SQLite's largest integer."""

MIN_SIZE = MIB
"""The smallest disk cache, memory cache or memory budget: one leaf; less holds nothing."""

MAX_REQUEST_SIZE = 1 << 30
"""The largest ``block_size`` and ``max_request``: a request is held in memory whole until
it is checked and stored, so a larger one is a mistake, not a tuning."""

MAX_CONNECTIONS = 256
"""Each connection is a socket, and sockets share the usual limit of 1024 descriptors
with the 256 data files the disk cache keeps open; 16 already fill a WAN link."""

MAX_RETRIES = 100
"""Backoff doubles per attempt up to 10 s, so a hundred attempts outlast any sensible
``timeout``; far more would overflow the doubling."""

MAX_SECONDS = 365 * 86400.0
"""The longest ``refresh`` or ``timeout``: a year is as good as never, and stays far from
what clocks and sleeps can hold (inf, nan and 1e400 are refused)."""

DEFAULT_TIER = "Bulk"
"""``retrieve``'s tier: the cheapest (a quarter of Standard per GB), and moving a vault
out is rarely urgent; outputs are ready 5-12 hours after the request."""

DEFAULT_DOWNLOAD_RATE = 10 * MIB
"""Bytes/s ``retrieve`` assumes this host saves outputs at before it has measured it (it
then uses what it measured): a modest home or office link, so that the first day's
cap errs on the side of outputs saved before they expire."""

DAILY_SHARE = 0.5
"""The default daily cap is this share of what the download rate saves in 24 hours:
outputs of one day's requests complete over several hours and must each be saved
within 24 hours of completing, on a link that also carries other traffic and retries."""

FOLLOW_POLL = 300.0
"""Seconds between two looks at the jobs in ``retrieve --follow``: jobs take hours, and
each look costs one ListJobs call (a few with thousands of jobs)."""

SERVICE_ONLY_OPTIONS = frozenset(
    {
        "ro",
        "defaults",
        "_netdev",
        "noauto",
        "auto",
        "nofail",
        "user",
        "users",
        "nouser",
        "nosuid",
        "suid",
        "nodev",
        "dev",
        "noexec",
        "exec",
        "atime",
        "noatime",
        "relatime",
        "async",
        "sync",
    }
)
"""Options only mount(8) and systemd care about: accepted and ignored."""

ALWAYS_ON_OPTIONS = frozenset({"default_permissions"})
"""FUSE options glacierfs always applies: accepted, so that fstab lines written for other
FUSE filesystems work."""

VERIFY_MODES = ("default", "strict")


@dataclass(frozen=True)
class Options:
    """Everything that shapes one mount."""

    vault: str
    mountpoint: Path
    account_id: str = "-"
    region: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None
    cache_dir: Path | None = None
    cache_size: int = DEFAULT_CACHE_SIZE
    memory_cache: int = DEFAULT_MEMORY_CACHE
    block_size: int = DEFAULT_BLOCK_SIZE
    max_request: int = DEFAULT_MAX_REQUEST
    read_ahead: int = DEFAULT_READ_AHEAD
    connections: int = DEFAULT_CONNECTIONS
    memory_budget: int = DEFAULT_MEMORY_BUDGET
    refresh: float = DEFAULT_REFRESH
    timeout: float = DEFAULT_TIMEOUT
    retries: int = DEFAULT_RETRIES
    names_wait: float = DEFAULT_NAMES_WAIT
    verify: str = "default"
    allow_other: bool = False
    uid: int = field(default_factory=os.getuid)
    gid: int = field(default_factory=os.getgid)
    umask: int = 0o022
    debug: bool = False
    foreground: bool = False
    log_file: Path | None = None
    inventory: Path | None = None
    hydrate: bool = False


HELP = f"""\
usage: glacierfs [-f] [-d] [-o OPT[,OPT...]] VAULT MOUNTPOINT
       glacierfs hydrate MOUNTPOINT [PATH...]
       glacierfs status [--watch] MOUNTPOINT
       glacierfs retrieve [-o OPT[,OPT...]] VAULT [PATTERN...] [--all] [--follow] ...

Mount the completed retrieval jobs of an Amazon S3 Glacier vault as read-only files.
VAULT is a vault name or ACCOUNTID:VAULT.

  -f                 stay in the foreground (systemd, debugging)
  -d                 debug: log every FUSE call (implies -f)
  -h, --help         show this help
  -V, --version      show the version ({__version__})

Service:   region=R  profile=P  endpoint_url=URL  account_id=ID
Cache:     cache_dir=DIR (default $XDG_CACHE_HOME/glacierfs, /var/cache/glacierfs for root)
           cache_size=SIZE (100G)  memory_cache=SIZE (96M)
Reading:   verify=default|strict  block_size=SIZE (1M)  max_request=SIZE (4M)
           read_ahead=SIZE (64M)  connections=N (16)  memory_budget=SIZE (64M)
           timeout=SECONDS (120)  retries=N (8)
Listing:   refresh=SECONDS (300)  inventory=PATH  hydrate
           names_wait=SECONDS (60): how long a mount waits to learn names
Access:    allow_other  uid=N  gid=N  umask=OCTAL  default_permissions (always on)
Logging:   debug  foreground  log=FILE (default: stderr with -f, syslog otherwise)
Ignored:   {" ".join(sorted(SERVICE_ONLY_OPTIONS))} x-systemd.* comment=*
"""

_SIZE = re.compile(r"^(\d+)([kmgt]i?b?|b)?$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    """``512M``, ``100G``, ``1GiB``, ``4096``: binary units."""
    match = _SIZE.match(text.strip())
    if not match:
        raise ValueError(f"not a size: {text!r}")
    unit = (match.group(2) or "")[:1].lower()
    return int(match.group(1)) * _UNITS[unit]


def _power_of_two_mib(name: str, value: int) -> int:
    if value < MIB or value % MIB or (value // MIB) & (value // MIB - 1):
        raise UsageError(f"{name} must be 1 MiB times a power of two (1M, 2M, 4M, ...)")
    if value > MAX_REQUEST_SIZE:
        raise UsageError(f"option {name}: at most {MAX_REQUEST_SIZE >> 20}M")
    return value


def _as_int(name: str, text: str, base: int = 10, minimum: int = 0, maximum: int = MAX_SIZE) -> int:
    try:
        value = int(text, base)
    except ValueError:
        raise UsageError(f"option {name}: not a number: {text!r}") from None
    if not minimum <= value <= maximum:
        raise UsageError(f"option {name}: must be from {minimum} to {maximum}, not {text}")
    return value


def _as_seconds(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"option {name}: not a number of seconds: {text!r}") from None
    if not 0 < value <= MAX_SECONDS:  # also false for nan; inf and 1e400 are past the max
        raise UsageError(
            f"option {name}: must be a positive number of seconds, at most {MAX_SECONDS:.0f}"
        )
    return value


def _as_size(name: str, text: str, minimum: int = MIN_SIZE) -> int:
    try:
        value = parse_size(text)
    except ValueError:
        raise UsageError(f"option {name}: not a size (e.g. 512M, 100G): {text!r}") from None
    if not minimum <= value <= MAX_SIZE:
        raise UsageError(f"option {name}: must be from {minimum} to {MAX_SIZE} bytes, not {text}")
    return value


_FLAGS = {
    "allow_other": "allow_other",
    "debug": "debug",
    "foreground": "foreground",
    "hydrate": "hydrate",
}
_SIZES = ("cache_size", "memory_cache", "read_ahead", "memory_budget")
_STRINGS = ("region", "profile", "endpoint_url")
_VALUED = frozenset(
    {
        *_SIZES,
        *_STRINGS,
        "account_id",
        "cache_dir",
        "inventory",
        "log",
        "block_size",
        "max_request",
        "connections",
        "retries",
        "uid",
        "gid",
        "umask",
        "refresh",
        "timeout",
        "verify",
        "names_wait",
    }
)


def _apply(values: dict[str, object], name: str, value: str | None) -> None:
    """Turn one ``-o`` option into a field of :class:`Options`."""
    if name in SERVICE_ONLY_OPTIONS or name.startswith(("x-systemd.", "comment=")):
        return
    if name in ALWAYS_ON_OPTIONS:
        if value is not None:
            raise UsageError(f"option {name} takes no value")
        return
    if name == "rw":
        raise UsageError("glacierfs is read-only: remove 'rw' from the mount options")
    if name in _FLAGS:
        if value is not None:
            raise UsageError(f"option {name} takes no value")
        values[_FLAGS[name]] = True
        return
    if name not in _VALUED:
        raise UsageError(f"unknown mount option: {name} (see glacierfs --help)")
    if value is None or value == "":
        raise UsageError(f"option {name} needs a value ({name}=...)")
    if name in _STRINGS:
        values[name] = value
    elif name == "account_id":
        values[name] = _account_id(value)
    elif name in ("cache_dir", "inventory"):
        values[name] = Path(value)
    elif name == "log":
        values["log_file"] = Path(value)
    elif name in _SIZES:
        values[name] = _as_size(name, value, minimum=0 if name == "read_ahead" else MIN_SIZE)
    elif name in ("block_size", "max_request"):
        values[name] = _power_of_two_mib(name, _as_size(name, value))
    elif name == "connections":
        values[name] = _as_int(name, value, minimum=1, maximum=MAX_CONNECTIONS)
    elif name == "retries":
        values[name] = _as_int(name, value, minimum=1, maximum=MAX_RETRIES)
    elif name in ("uid", "gid"):
        values[name] = _as_int(name, value, maximum=MAX_ID)
    elif name == "umask":
        values[name] = _as_int(name, value, base=8) & 0o777
    elif name in ("refresh", "timeout", "names_wait"):
        values[name] = _as_seconds(name, value)
    else:  # verify
        if value not in VERIFY_MODES:
            raise UsageError(f"option verify: one of {', '.join(VERIFY_MODES)}, not {value!r}")
        values[name] = value


def _account_id(text: str) -> str:
    if text != "-" and not re.fullmatch(r"\d{12}", text):
        raise UsageError(f"account id must be 12 digits or '-', not {text!r}")
    return text


def split_options(text: str) -> list[tuple[str, str | None]]:
    """``a,b=c`` -> ``[("a", None), ("b", "c")]``; empty items are skipped."""
    pairs: list[tuple[str, str | None]] = []
    for item in text.split(","):
        if not item:
            continue
        name, sep, value = item.partition("=")
        if name == "comment":
            continue
        pairs.append((name, value if sep else None))
    return pairs


def _vault(source: str) -> tuple[str, str | None]:
    """``VAULT``, ``ACCOUNT:VAULT`` or fstab's ``glacierfs#VAULT``."""
    if "#" in source:
        source = source.split("#", 1)[1]
    account, sep, vault = source.rpartition(":")
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,255}", vault):
        raise UsageError(f"not a vault name: {vault!r} (letters, digits, '_', '-', '.')")
    return vault, (_account_id(account) if sep else None)


@dataclass(frozen=True)
class Command:
    """What the command line asks for: a mount, or a subcommand on a mount."""

    name: str  # "mount", "help", "version", "hydrate", "status"
    options: Options | None = None
    args: tuple[str, ...] = ()


def parse_mount_args(argv: Sequence[str]) -> Command:
    """Parse ``[-f] [-d] [-o OPTS]... VAULT MOUNTPOINT`` in any order, as mount.fuse3 passes."""
    positional: list[str] = []
    raw: list[tuple[str, str | None]] = []
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg in ("-h", "--help"):
            return Command("help")
        if arg in ("-V", "--version"):
            return Command("version")
        if arg == "-f":
            raw.append(("foreground", None))
        elif arg == "-d":
            raw += [("debug", None), ("foreground", None)]
        elif arg == "-o" or (arg.startswith("-o") and len(arg) > 2):
            text = arg[2:] if len(arg) > 2 else (args.pop(0) if args else "")
            if not text:
                raise UsageError("-o needs a list of options")
            raw += split_options(text)
        elif arg.startswith("-") and arg != "-":
            raise UsageError(f"unknown flag: {arg} (see glacierfs --help)")
        else:
            positional.append(arg)
    if len(positional) != 2:
        raise UsageError("usage: glacierfs [-f] [-d] [-o OPT[,OPT...]] VAULT MOUNTPOINT")
    vault, account = _vault(positional[0])
    values: dict[str, object] = {}
    for name, value in raw:
        _apply(values, name, value)
    options = Options(vault=vault, mountpoint=Path(positional[1]), **values)  # type: ignore[arg-type]
    if account is not None:
        options = replace(options, account_id=account)
    return Command("mount", options)


def default_cache_dir(env: Mapping[str, str], uid: int) -> Path:
    """``$XDG_CACHE_HOME/glacierfs``, ``~/.cache/glacierfs``, or /var/cache for root."""
    if uid == 0:
        return Path("/var/cache/glacierfs")
    base = env.get("XDG_CACHE_HOME") or os.path.join(env.get("HOME", "/"), ".cache")
    return Path(base) / "glacierfs"


def parse_retrieve_options(vault_arg: str, texts: Sequence[str]) -> Options:
    """The ``-o`` options of ``glacierfs retrieve`` as :class:`Options`.

    They are the mount's options, parsed by the same code, so that one ``-o`` list
    serves both: service (region, profile, endpoint_url, account_id), cache
    (cache_dir, cache_size), reading (connections, timeout, retries...) and
    ``inventory=FILE``. Options only a mount uses are accepted and have no effect;
    ``mountpoint`` is unused (retrieve mounts nothing).
    """
    vault, account = _vault(vault_arg)
    values: dict[str, object] = {}
    for text in texts:
        if not text:
            raise UsageError("-o needs a list of options")
        for name, value in split_options(text):
            _apply(values, name, value)
    options = Options(vault=vault, mountpoint=Path("."), **values)  # type: ignore[arg-type]
    return replace(options, account_id=account) if account is not None else options
