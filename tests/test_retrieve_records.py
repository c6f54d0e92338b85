"""`glacierfs retrieve` meets records it cannot trust: a JobId holding terminal escapes
and a newline, and an InitiateJob answering a job id that is already another's.

Such a record covers nothing (its archive is requested as if it were not listed), is
logged once per run however many rounds meet it, and nothing the command prints holds
a raw control character; a job id answered twice is a failed request, not a success.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.emulator import Emulator
from tests.support.liar import Liar
from tests.support.retrieve import FLAGS, Retrieve, drive, history, seed, take_inventory

VAULT = "records"
FILES = {"a.dat": 300_000, "b.dat": 200_000, "c.dat": 100_000}
FORGED = "\x1b]0;owned\x07\x1b[31mJOB\nglacierfs retrieve: saved: b.dat: forged"
RAW_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


@pytest.fixture
def vault(emulator_factory: Callable[..., Emulator]) -> tuple[Emulator, dict[str, Any]]:
    emulator = emulator_factory(*FLAGS)
    made = seed(emulator, VAULT, FILES)
    take_inventory(emulator, VAULT)
    return emulator, made


@pytest.fixture
def liar_of(vault: tuple[Emulator, Any]) -> Iterator[Liar]:
    liar = Liar(vault[0].url).start()
    yield liar
    liar.stop()


def start_job(emulator: Emulator, archive_id: str) -> str:
    params = {"Type": "archive-retrieval", "ArchiveId": archive_id, "Tier": "Bulk"}
    answer = emulator.client().initiate_job(vaultName=VAULT, jobParameters=params)
    return str(answer["jobId"])


def test_a_job_id_with_terminal_escapes_covers_nothing_and_is_logged_once_escaped(
    vault: tuple[Emulator, Any], tmp_path: Path
) -> None:
    """can fail: the forged job covered b.dat, which was never requested, and --follow
    looped for ever, logging "job not shown" every round."""
    emulator, made = vault
    forged = start_job(emulator, made["b.dat"][0])
    emulator.set_job(forged, JobId=FORGED)
    follower = Retrieve(emulator, VAULT, tmp_path / "cache", tmp_path / "follow.log")
    follower.start("--all", "--yes", "--follow", "--poll", "0.2")
    try:
        drive(emulator, follower, limit=40)
    finally:
        follower.stop()
    output = follower.output()
    assert follower.process is not None and follower.process.returncode == 0, output
    assert not RAW_CONTROL.search(output), repr(output)
    assert not any(line.startswith("saved: b.dat: forged") for line in output.splitlines())
    refused = [line for line in output.splitlines() if "JOB" in line and "job not" in line]
    assert len(refused) == 1, output
    assert "\\x1b]0;owned\\x07\\x1b[31mJOB\\n" in refused[0]
    requested = {j["ArchiveId"] for j in history(emulator) if j["JobId"] != forged}
    assert made["b.dat"][0] in requested  # the forged record covered nothing


@pytest.mark.parametrize("answer", ["another job's", "forged"])
def test_an_initiate_job_answering_another_jobs_id_or_a_forged_one_is_a_failed_request(
    vault: tuple[Emulator, Any], liar_of: Liar, tmp_path: Path, answer: str
) -> None:
    """can fail: the other job's id was taken as each request's, and the run said so."""
    emulator, made = vault
    other = start_job(emulator, made["a.dat"][0])
    given = other if answer == "another job's" else FORGED.split("\n")[0]  # a header: no CR, LF
    liar_of.answer_job_ids(given, given)
    run = Retrieve(emulator, VAULT, tmp_path / "cache", tmp_path / "run.log", liar_of.url)
    result = run.run("b.dat", "c.dat", "--yes")
    said = result.stdout + result.stderr
    assert result.returncode == 1 and not RAW_CONTROL.search(said), said
    failed = [line for line in result.stderr.splitlines() if "failed:" in line]
    why = f"job id {other}, which is already" if given == other else "unusable job id '\\x1b]0"
    assert len(failed) == 2 and all(why in line for line in failed), said
    assert "started 0 jobs" in result.stdout
    assert len(history(emulator)) == 3  # the jobs the service did start (under their ids)...
    again = run.run("b.dat", "c.dat", "--yes")
    assert again.returncode == 0 and "2 covered by jobs in progress" in again.stdout
    assert len(history(emulator)) == 3  # ...are listed and cover b and c: not paid twice
