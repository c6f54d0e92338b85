"""Every default glacierfs has, and every bound on an option, in one place, each with why
it has its value; the :class:`Options` of a mount and the ``--help`` text.

Parsing the command line into :class:`Options` is :mod:`glacierfs.options`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from glacierfs import __version__
from glacierfs.treehash import MIB

# --- Defaults, each with why it has its value -------------------------------------------

DEFAULT_CACHE_SIZE = 100 << 30
"""100 GiB: big enough for whole archives of the size people retrieve, small enough for a
laptop disk; users moving a vault set it to what they have."""

DEFAULT_MEMORY_CACHE = 64 * MIB
"""Fetched leaves the disk cache could not take (a full or failing disk, or a cache too
small to stream into), kept for the readers that follow their fetch, so that each leaf
is not fetched again per kernel read (the window then stays within two thirds of it).
Nothing else goes here: warm reads come from the disk cache's files through the page
cache (:mod:`glacierfs.cache.local`), so with a working disk it holds nothing."""

DEFAULT_BLOCK_SIZE = 1 * MIB
"""The smallest request, and what a random read fetches: one tree-hash leaf, the least a
checksum can cover. Sequential reads grow their requests up to ``max_request``."""

DEFAULT_MAX_REQUEST = 32 * MIB
"""The largest single GET. The reader sizes its requests from the link it measures
(:mod:`glacierfs.read.link`): the smallest for which the first-byte latency is at most a
tenth of the request's time, 16 MiB on the benchmark's WAN shape (40 ms, 25 MB/s per
connection) and 32 MiB on loopback (2 ms, 1 GB/s); this lets the fastest link measured
have its size. Larger would only make a failed request dearer to redo. While responses
are held in memory until stored, a connection's share of ``memory_budget`` bounds it too
(:meth:`glacierfs.read.settings.ReaderSettings.largest_request`)."""

DEFAULT_READ_AHEAD = 1 << 30
"""The hard ceiling on how far ahead of a sequential reader data is requested. The window
itself is sized from the link and the reader's rate (:mod:`glacierfs.read.prefetch`): one
reader filling 16 connections at 25 MB/s with 16 MiB requests needs about 450 MB ahead,
and it is also capped at 10 s of the reader's rate and an eighth of the disk cache. Fetched
bytes go to the disk cache, so memory does not bound it; 1 GiB leaves room for a link
twice that fast, and bounds what a reader that stops has had fetched (cached, but billed).
While fetched leaves are still handed over through the memory cache, two thirds of
``memory_cache`` bound it too (:mod:`glacierfs.read.settings`)."""

DISK_READ_AHEAD = 32 * MIB
"""How far ahead of a sequential reader the leaves already in the disk cache are hinted
to the page cache (``POSIX_FADV_WILLNEED``, :mod:`glacierfs.cache.local`), so that its
reads find them there and are served inline: 32 reads of 1 MiB ahead, little enough
that hinted pages are not pushed out again before they are read."""

DEFAULT_CONNECTIONS = 16
"""GETs in flight at once for the whole mount: each connection to a distant region is
slow on its own (25 MB/s in the benchmark's WAN shape), so the link fills only with
many; 16 measured 9x the AWS CLI's single stream there, at 208 MiB peak RSS."""

DEFAULT_MEMORY_BUDGET = 64 * MIB
"""Bytes of responses held in memory (requested, not yet stored) for the whole mount,
whatever the number of files and readers. It bounds memory, not read-ahead: the window
is bounded by the disk cache and by time, and while responses are held whole, requests are
sized so that every connection's fits (16 x 4 MiB)."""

DEFAULT_DISK_THREADS = 4
"""Disk cache calls from the trio loop at once (:mod:`glacierfs.cache.aio`): enough to
load a sequential reader's next leaves in parallel, few enough that a slow disk queues
its callers instead of taking the worker threads the network and hashing need."""

DEFAULT_REFRESH = 300.0
"""Seconds between job-list refreshes: jobs take hours to complete, so five minutes is
prompt enough and costs one ListJobs call."""

CUSTODY_MARGIN = 3600.0
"""Seconds before its job expires from which a cached leaf counts as in custody, no longer
replaceable: evicted later, it could not surely be fetched again before the job ends (and
the service's clock is known only from its answers)."""

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

MIN_TIMEOUT = 1.0
"""The shortest ``timeout``: it also bounds each connection and read (see
``client_settings``), and a request over a WAN with TLS can take a second to answer; with
less, every request fails and the mount shows nothing (``timeout=1e-9``)."""

MIN_SECONDS = 0.1
"""The shortest ``refresh`` or ``names_wait``: a job-list call ten times a second is
already more than any use needs; less is a typo (``1e-9``), not a setting."""

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

HEARTBEAT = 900.0
"""Seconds between ``retrieve --follow``'s status lines when not on a terminal: a
journal shows the run alive at least every 15 minutes through a Bulk job's 5 to 12
hours, and a day of waiting is under a hundred lines."""

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
    nonempty: bool = False
    uid: int = field(default_factory=os.getuid)
    gid: int = field(default_factory=os.getgid)
    umask: int = 0o022
    debug: bool = False
    foreground: bool = False
    log_file: Path | None = None
    inventory: Path | None = None
    hydrate: bool = False
    # Off: a mount whose first job listing fails (after `retries` within `timeout`) ends
    # with one line and a non-zero exit, as an empty tree would look like a vault with no
    # jobs to `mount && rsync`. On: it mounts empty and lists at the next refresh (a boot
    # that must not wait for the network).
    empty_start: bool = False


HELP = f"""\
usage: glacierfs [-f] [-d] [-o OPT[,OPT...]] VAULT MOUNTPOINT
       glacierfs hydrate MOUNTPOINT [PATH...]
       glacierfs status [--watch [SECONDS]] [--json] MOUNTPOINT
       glacierfs retrieve [-o OPT[,OPT...]] VAULT [PATTERN...] [--all] [--follow] ...
       glacierfs deliver [-o OPT[,OPT...]] VAULT DIR|--exec CMD [ARG...]   (what the cache holds)
       glacierfs release PATH|GLOB...   (archives copied out by hand: may leave the cache)

Mount the completed retrieval jobs of an Amazon S3 Glacier vault as read-only files.
VAULT is a vault name or ACCOUNTID:VAULT.

  -f                 stay in the foreground (systemd, debugging)
  -d                 debug: log every FUSE call (implies -f)
  -h, --help         show this help
  -V, --version      show the version ({__version__})

Service:   region=R  profile=P  endpoint_url=URL  account_id=ID
Cache:     cache_dir=DIR (default $XDG_CACHE_HOME/glacierfs, /var/cache/glacierfs for root)
           cache_size=SIZE (100G)  memory_cache=SIZE (64M)
Reading:   verify=default|strict  block_size=SIZE (1M)  max_request=SIZE (32M)
           read_ahead=SIZE (1G)  connections=N (16)  memory_budget=SIZE (64M)
           timeout=SECONDS (120)  retries=N (8)
Listing:   refresh=SECONDS (300)  inventory=PATH  hydrate
           empty_start: mount even when the jobs cannot be listed at start-up
           names_wait=SECONDS (60): how long a mount waits to learn names
Access:    allow_other  uid=N  gid=N  umask=OCTAL  default_permissions (always on)
           nonempty: mount over a directory that has files (they are hidden meanwhile)
Logging:   debug  foreground  log=FILE (default: stderr with -f, syslog otherwise)
Ignored:   {" ".join(sorted(SERVICE_ONLY_OPTIONS))} x-systemd.* comment=*
"""


def default_cache_dir(env: Mapping[str, str], uid: int) -> Path:
    """``$XDG_CACHE_HOME/glacierfs``, ``~/.cache/glacierfs``, or /var/cache for root."""
    if uid == 0:
        return Path("/var/cache/glacierfs")
    base = env.get("XDG_CACHE_HOME") or os.path.join(env.get("HOME", "/"), ".cache")
    return Path(base) / "glacierfs"
