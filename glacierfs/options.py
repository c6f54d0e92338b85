"""The command line and mount options, parsed into :class:`~glacierfs.config.Options`.

The command line has the shape ``mount.fuse3`` uses, so that the same program runs
by hand, from ``/etc/fstab`` (``fuse.glacierfs`` or ``glacierfs#VAULT`` with type
``fuse``) and under systemd::

    glacierfs [-f] [-d] [-o OPT[,OPT...]] VAULT MOUNTPOINT

Parsing is pure: it reads no environment but what is passed in, touches no file,
and raises :class:`UsageError` with a one-line message for anything it refuses. The
defaults and bounds it applies are in :mod:`glacierfs.config`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from glacierfs.config import (
    ALWAYS_ON_OPTIONS,
    MAX_CONNECTIONS,
    MAX_ID,
    MAX_REQUEST_SIZE,
    MAX_RETRIES,
    MAX_SECONDS,
    MAX_SIZE,
    MIN_SECONDS,
    MIN_SIZE,
    MIN_TIMEOUT,
    SERVICE_ONLY_OPTIONS,
    VERIFY_MODES,
    Options,
)
from glacierfs.errors import UsageError
from glacierfs.treehash import MIB

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


def _as_seconds(name: str, text: str, minimum: float = MIN_SECONDS) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"option {name}: not a number of seconds: {text!r}") from None
    if not minimum <= value <= MAX_SECONDS:  # false for nan; inf and 1e400 are past the max
        raise UsageError(
            f"option {name}: must be a number of seconds from {minimum:g} to"
            f" {MAX_SECONDS:.0f}, not {text}"
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
    "empty_start": "empty_start",
    "foreground": "foreground",
    "hydrate": "hydrate",
    "nonempty": "nonempty",
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
        values[name] = _as_seconds(name, value, MIN_TIMEOUT if name == "timeout" else MIN_SECONDS)
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
