"""A fuzzer over single fields of job records, through the lying proxy, a real mount and
real `glacierfs retrieve` runs.

Each case puts one value in one field of one job's record (every field the service
sends; values of the wrong type, huge, negative, empty, holding control, bidi or
format characters), as ListJobs and DescribeJob answer it. Several victims lie at once,
each about one field; the jobs that do not lie must always be shown, the daemon must
stay up and keep serving them, and `retrieve` (which lists through the same proxy,
and reads the inventory through it) must never print a raw control character nor a
traceback.

The cases are a table crossed with the fields, shuffled with a fixed seed and cut to
:data:`CASES` (``GLACIERFS_FUZZ_CASES`` asks for more, ``GLACIERFS_FUZZ_SEED`` another
order), so that ``make test`` runs it in seconds.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

from tests.support.emulator import Emulator
from tests.support.liar import Liar
from tests.support.mount import Mount, needs_fuse, wait_for
from tests.support.retrieve import Retrieve
from tests.support.vault import inventory, retrieve

VAULT = "fuzz"
CASES = int(os.environ.get("GLACIERFS_FUZZ_CASES", "96"))
SEED = int(os.environ.get("GLACIERFS_FUZZ_SEED", "20"))
VICTIMS = 6
"""Jobs that lie in each round, each about one field."""
HONEST = 3
"""Jobs that never lie: always shown."""
RETRIEVE_EVERY = 8
"""Rounds between two `retrieve --dry-run` runs (each costs a process start)."""

FIELDS = (
    "JobId",
    "JobDescription",
    "Action",
    "ArchiveId",
    "ArchiveSizeInBytes",
    "ArchiveSHA256TreeHash",
    "SHA256TreeHash",
    "RetrievalByteRange",
    "InventorySizeInBytes",
    "InventoryRetrievalParameters",
    "VaultARN",
    "CreationDate",
    "Completed",
    "CompletionDate",
    "StatusCode",
    "StatusMessage",
    "SNSTopic",
    "Tier",
)
VALUES: tuple[Any, ...] = (
    None,  # null
    "",  # empty
    [],
    {},
    True,  # wrong types
    1.5,
    "abc",
    {"nested": ["x"]},
    -1,  # negative
    -(10**20),
    10**30,  # huge
    "9" * 400,
    "x" * 100_000,
    "\x1b]0;owned\x07\x1b[31mred\nglacierfs retrieve: saved: forged",  # control characters
    "a\x00b\r\t\x7f\x85\x9b",
    "invoice\u202efdp.exe\u2066\u2069\u200b\ufeff\u2028\u2029",  # bidi and format
    "\udcff",  # a lone surrogate, as JSON can carry
)
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\u200b\ufeff]")


def cases() -> list[tuple[str, Any]]:
    table = [(field, value) for field in FIELDS for value in VALUES]
    random.Random(SEED).shuffle(table)
    return table[:CASES]


def listings(emulator: Emulator) -> int:
    return int(emulator.counters()["operations"].get("ListJobs", {}).get("requests", 0))


def refreshed(emulator: Emulator, mount: Mount) -> None:
    """Two refreshes, one after the other: the first one's tree is shown once the second
    has listed (the refresh loop runs one at a time)."""
    for _ in range(2):
        before = listings(emulator)
        os.kill(mount.pid, signal.SIGHUP)
        wait_for(
            lambda before=before: listings(emulator) > before or not mount.alive(), "a refresh"
        )


def dry_run(emulator: Emulator, liar: Liar, tmp_path: Path) -> None:
    run = Retrieve(emulator, VAULT, tmp_path / "retrieve", tmp_path / "retrieve.log", liar.url)
    result: subprocess.CompletedProcess[str] = run.run("--all", "--dry-run")
    said = result.stdout + result.stderr
    assert not RAW.search(said), repr(said)
    assert "Traceback" not in said, said
    if result.returncode != 0:  # a lie may make the inventory unusable: one line says so
        assert len(result.stderr.strip().splitlines()) == 1, said


@needs_fuse
def test_one_field_of_a_record_never_hides_another_job_nor_reaches_a_terminal_raw(
    emulator: Emulator, liar: Liar, mount_factory: Any, tmp_path: Path
) -> None:
    client = emulator.client()
    client.create_vault(vaultName=VAULT)
    archive, _ = emulator.seeded_archive(VAULT, 1 << 20, 1, "fuzzed/file.bin")
    jobs = [retrieve(client, VAULT, archive) for _ in range(HONEST + VICTIMS)]
    honest, victims = jobs[:HONEST], jobs[HONEST:]
    inventory(client, VAULT, "JSON")
    mount: Mount = mount_factory(liar.url, VAULT)
    assert set(honest) <= set(os.listdir(mount.path / "jobs"))
    table = cases()
    for number, start in enumerate(range(0, len(table), VICTIMS)):
        liar.truth()
        for victim, (field, value) in zip(victims, table[start : start + VICTIMS], strict=False):
            liar.lie(victim, **{field: value})
        refreshed(emulator, mount)
        assert mount.alive(), mount.log()
        shown = set(os.listdir(mount.path / "jobs"))
        assert set(honest) <= shown, (table[start : start + VICTIMS], sorted(shown))
        if number % RETRIEVE_EVERY == 0:
            dry_run(emulator, liar, tmp_path)
    assert (mount.path / "jobs" / honest[0]).read_bytes() == emulator.content(VAULT, archive)
    log = mount.log()
    assert not RAW.search(log.replace("\n", "")), "a raw control character in the log"
