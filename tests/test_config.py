"""Command-line and mount-option parsing, as mount.fuse3 and fstab pass them."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from glacierfs.config import default_cache_dir
from glacierfs.errors import UsageError
from glacierfs.options import parse_mount_args, parse_size

MIB = 1 << 20


def options_of(*argv: str):  # type: ignore[no-untyped-def]
    command = parse_mount_args(argv)
    assert command.name == "mount" and command.options is not None
    return command.options


def test_fuse_type_fstab_line() -> None:
    opts = options_of(
        "myvault",
        "/mnt/glacier",
        "-o",
        "ro,_netdev,region=eu-west-1,cache_dir=/var/cache/glacierfs",
    )
    assert (opts.vault, opts.mountpoint, opts.region) == (
        "myvault",
        Path("/mnt/glacier"),
        "eu-west-1",
    )
    assert opts.cache_dir == Path("/var/cache/glacierfs")


def test_program_hash_vault_fstab_line() -> None:
    opts = options_of("glacierfs#myvault", "/mnt/glacier", "-o", "ro,_netdev,region=eu-west-1")
    assert opts.vault == "myvault"


def test_account_and_vault() -> None:
    opts = options_of("123456789012:photos", "/m")
    assert (opts.account_id, opts.vault) == ("123456789012", "photos")


def test_systemd_and_mount_only_options_are_ignored() -> None:
    opts = options_of(
        "v",
        "/m",
        "-o",
        "defaults,noauto,nofail,user,users,auto,"
        "x-systemd.automount,x-systemd.idle-timeout=60,comment=x-gvfs-show,"
        "nosuid,nodev",
    )
    assert opts.vault == "v"


def test_rw_is_refused_with_a_clear_message() -> None:
    with pytest.raises(UsageError, match="read-only"):
        options_of("v", "/m", "-o", "rw")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nonsense", "unknown mount option"),
        ("cache_size=lots", "not a size"),
        ("umask=9", "not a number"),
        ("block_size=3M", "power of two"),
        ("verify=maybe", "verify"),
        ("refresh=-1", "from 0.1"),
        ("region", "needs a value"),
        ("allow_other=1", "takes no value"),
        ("account_id=12", "12 digits"),
        ("uid=99999999999", "uid: must be from 0 to 4294967294"),
        ("gid=4294967295", "gid: must be from 0 to 4294967294"),
        ("uid=-1", "uid: must be from 0"),
        ("timeout=inf", "timeout: must be a number of seconds from 1 to 31536000"),
        ("timeout=1e400", "timeout: must be a number of seconds from 1"),
        ("refresh=nan", "refresh: must be a number of seconds from 0.1 to"),
        ("refresh=1e300", "refresh: must be a number of seconds from 0.1 to 31536000"),
        ("timeout=0", "from 1 to"),
        ("timeout=1e-9", "timeout: must be a number of seconds from 1 to 31536000, not 1e-9"),
        ("timeout=0.5", "timeout: must be a number of seconds from 1"),
        ("refresh=0.01", "refresh: must be a number of seconds from 0.1"),
        ("names_wait=1e-9", "names_wait: must be a number of seconds from 0.1"),
        ("connections=0", "connections: must be from 1 to 256"),
        ("connections=100000", "connections: must be from 1 to 256"),
        ("retries=0", "retries: must be from 1 to 100"),
        ("retries=99999999999999999999", "retries: must be from 1 to 100"),
        ("cache_size=0", "cache_size: must be from 1048576"),
        ("cache_size=9223372036854775808", "cache_size: must be from"),
        ("cache_size=8388608T", "cache_size: must be from"),
        ("memory_cache=0", "memory_cache: must be from"),
        ("memory_budget=1K", "memory_budget: must be from"),
        ("read_ahead=99999999999T", "read_ahead: must be from 0"),
        ("max_request=2G", "max_request: at most 1024M"),
        ("block_size=4096T", "block_size: at most"),
        ("default_permissions=1", "takes no value"),
    ],
)
def test_bad_options_are_one_line_usage_errors(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message) as raised:
        options_of("v", "/m", "-o", text)
    assert "\n" not in str(raised.value)


def test_flags_and_values() -> None:
    opts = options_of(
        "-f",
        "-o",
        "allow_other,uid=1000,gid=100,umask=027,cache_size=2G",
        "-d",
        "v",
        "/m",
        "-overify=strict",
    )
    assert opts.foreground and opts.debug and opts.allow_other
    assert (opts.uid, opts.gid, opts.umask, opts.cache_size) == (1000, 100, 0o27, 2 << 30)
    assert opts.verify == "strict"


def test_options_at_their_bounds_are_accepted() -> None:
    opts = options_of(
        "v",
        "/m",
        "-o",
        "uid=0,gid=4294967294,timeout=1,refresh=31536000,connections=256,retries=100,"
        "cache_size=1M,memory_cache=1M,memory_budget=1M,read_ahead=0,max_request=1G,"
        "cache_size=9223372036854775807",
    )
    assert (opts.uid, opts.gid, opts.timeout, opts.refresh) == (0, 2**32 - 2, 1.0, 31536000.0)
    assert (opts.connections, opts.retries, opts.read_ahead) == (256, 100, 0)
    assert (opts.memory_cache, opts.memory_budget, opts.max_request) == (MIB, MIB, 1 << 30)
    assert opts.cache_size == 2**63 - 1


def test_default_permissions_is_accepted_as_always_on() -> None:
    assert options_of("v", "/m", "-o", "default_permissions,ro") == options_of("v", "/m")


@pytest.mark.parametrize("option", ["uid=99999999999", "timeout=inf"])
def test_out_of_range_options_end_the_command_in_one_line(option: str, tmp_path: Path) -> None:
    """The whole program, not only the parser: exit 2, one line, no traceback."""
    result = subprocess.run(
        [sys.executable, "-m", "glacierfs", "v", str(tmp_path), "-o", option],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and option.split("=")[0] in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("argv", [(), ("v",), ("v", "/m", "extra"), ("--bogus", "v", "/m")])
def test_wrong_arguments_are_usage_errors(argv: tuple[str, ...]) -> None:
    with pytest.raises(UsageError):
        parse_mount_args(argv)


def test_help_and_version() -> None:
    assert parse_mount_args(["--help"]).name == "help"
    assert parse_mount_args(["-V"]).name == "version"


@pytest.mark.parametrize(
    ("text", "value"),
    [("4096", 4096), ("1K", 1024), ("512M", 512 << 20), ("100G", 100 << 30), ("1GiB", 1 << 30)],
)
def test_sizes(text: str, value: int) -> None:
    assert parse_size(text) == value


def test_default_cache_dir() -> None:
    assert default_cache_dir({"XDG_CACHE_HOME": "/x"}, 1000) == Path("/x/glacierfs")
    assert default_cache_dir({"HOME": "/home/a"}, 1000) == Path("/home/a/.cache/glacierfs")
    assert default_cache_dir({}, 0) == Path("/var/cache/glacierfs")


@given(st.lists(st.text(max_size=30), max_size=6))
def test_any_argv_parses_or_raises_usage_error(argv: list[str]) -> None:
    with contextlib.suppress(UsageError):
        parse_mount_args(argv)


@given(st.text(max_size=80))
def test_any_option_string_parses_or_raises_usage_error(text: str) -> None:
    with contextlib.suppress(UsageError):
        parse_mount_args(["v", "/m", "-o", text])
