"""`glacierfs retrieve` counts an output as saved only on its verdict: a claimer's output
(another archive's bytes under a record that names this one) is never "saved", and the
archive is requested again, behind a lying proxy (tests/support/liar.py)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from glacierfs.treehash import tree_hash
from tests.support.emulator import Emulator
from tests.support.liar import Liar
from tests.support.retrieve import (
    FLAGS,
    HOUR,
    MIB,
    Retrieve,
    advance,
    drive,
    history,
    seed,
    take_inventory,
)
from tests.support.vault import retrieve

VAULT = "saved-or-not"
SIZE = 2 * MIB + 100
FILES = {"a.bin": SIZE, "b.bin": SIZE, "c.bin": SIZE}


@pytest.fixture
def emulator(emulator_factory: Callable[..., Emulator]) -> Emulator:
    """With real tier times: jobs complete as the test moves the clock."""
    return emulator_factory(*FLAGS)


@pytest.fixture
def made(emulator: Emulator) -> dict[str, tuple[str, bytes]]:
    made = seed(emulator, VAULT, FILES)
    take_inventory(emulator, VAULT)
    return made


@pytest.fixture
def claimer(emulator: Emulator, liar: Liar, made: dict[str, tuple[str, bytes]]) -> Iterator[str]:
    """Jobs of a.bin and b.bin, and one more of a.bin whose record says c.bin's all
    through (ArchiveId, tree hashes, size): the claimer; completed."""
    client = emulator.client()
    (a, _), (b, _), (c, c_bytes) = made["a.bin"], made["b.bin"], made["c.bin"]
    retrieve(client, VAULT, a)
    retrieve(client, VAULT, b)
    job = retrieve(client, VAULT, a)
    c_hash = tree_hash(c_bytes)
    liar.lie(
        job,
        ArchiveId=c,
        ArchiveSHA256TreeHash=c_hash,
        SHA256TreeHash=c_hash,
        ArchiveSizeInBytes=SIZE,
    )
    advance(emulator, 6 * HOUR)
    yield job


def test_a_claimers_output_is_never_saved_and_its_archive_is_requested_again(
    emulator: Emulator,
    liar: Liar,
    made: dict[str, tuple[str, bytes]],
    claimer: str,
    tmp_path: Path,
) -> None:
    follower = Retrieve(emulator, VAULT, tmp_path / "cache", tmp_path / "log", liar.url)
    follower.start("--all", "--yes", "--follow", "--poll", "0.05")
    try:
        drive(emulator, follower)
    finally:
        follower.stop()
    output = follower.output()
    assert not re.search(r"saved: c\\.bin", output), output
    assert f"c.bin: not saved yet: job {claimer}: SHA256TreeHash is" in output
    assert f"job {claimer}: its output does not match its record: not counted" in output
    c = made["c.bin"][0]
    again = [j for j in history(emulator) if j["ArchiveId"] == c]
    assert len(again) == 1, output  # requested by retrieve: the claimer is not c's job
    assert follower.process is not None and follower.process.returncode == 0
    done = [line for line in output.splitlines() if line.startswith("done:")][-1]
    assert "3 saved, 3 verified against their tree hash" in done, output
