"""`glacierfs retrieve` on the command line, one run at a time: the plan before any money
is spent, what `--yes` then starts, shards, the refusals, and the contrib files that run
it (the systemd unit, the Kubernetes Indexed Job)."""

from __future__ import annotations

import json
import re
import shlex
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from glacierfs.cacheroot import open_root
from glacierfs.errors import UsageError
from glacierfs.retrieve.command import parse
from glacierfs.retrieve.holder import cache_holder
from glacierfs.retrieve.selection import shard_of
from tests.support.emulator import Emulator
from tests.support.mount import isolated_env
from tests.support.retrieve import (
    FLAGS,
    HOUR,
    MIB,
    Retrieve,
    drive,
    history,
    seed,
    take_inventory,
)

VAULT = "plans"
CONTRIB = Path(__file__).resolve().parent.parent / "contrib"

FILES = {f"dir{n % 3}/file{n:02d}.dat": 30_000 * (n + 1) for n in range(30)}


@pytest.fixture
def vault(emulator_factory: Callable[..., Emulator]) -> tuple[Emulator, dict[str, Any]]:
    emulator = emulator_factory(*FLAGS)
    made = seed(emulator, VAULT, FILES)
    take_inventory(emulator, VAULT)
    return emulator, made


def retriever(emulator: Emulator, tmp_path: Path, name: str = "cache") -> Retrieve:
    return Retrieve(emulator, VAULT, tmp_path / name, tmp_path / f"{name}.log")


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_dry_run_prints_the_plan_and_starts_nothing(
    vault: tuple[Emulator, Any], tmp_path: Path
) -> None:
    emulator, _ = vault
    result = retriever(emulator, tmp_path).run("--all", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "30 archives selected" in result.stdout
    assert "estimated retrieval cost: $" in result.stdout and "prices of" in result.stdout
    assert "30 Bulk jobs" in result.stdout and "ready 5 h to 12 h" in result.stdout
    assert history(emulator) == []
    initiated = [e for e in emulator.requests() if e["operation"] == "InitiateJob"]
    assert [e for e in initiated if e.get("archive")] == []  # only the inventory's


def test_the_plans_counts_are_what_yes_then_starts(
    vault: tuple[Emulator, Any], tmp_path: Path
) -> None:
    emulator, made = vault
    run = retriever(emulator, tmp_path)
    args = ("dir1/**", "--max-bytes-per-day", "2M")
    plan = json.loads(run.run(*args, "--dry-run", "--json").stdout)
    assert (plan["jobs"], plan["archives"]) == (10, 10)
    assert 0 < plan["batch_jobs"] < plan["jobs"]  # the cap holds most back for later
    started = run.run(*args, "--yes")
    assert started.returncode == 0, started.stderr
    jobs = history(emulator)
    sizes = {archive_id: len(data) for archive_id, data in made.values()}
    assert len(jobs) == plan["batch_jobs"]
    assert sum(sizes[j["ArchiveId"]] for j in jobs) == plan["batch_bytes"] <= 2 * MIB
    assert {j["Tier"] for j in jobs} == {"Bulk"}
    again = json.loads(run.run(*args, "--dry-run", "--json").stdout)
    assert again["in_progress"] == plan["batch_jobs"] and again["batch_jobs"] == 0
    assert run.run(*args, "--yes").returncode == 0  # the day's cap is spent
    assert len(history(emulator)) == len(jobs)


def test_archives_covered_by_live_jobs_are_not_requested_again(
    vault: tuple[Emulator, Any], tmp_path: Path
) -> None:
    emulator, made = vault
    client = emulator.client()
    mine, _ = made["dir0/file00.dat"]
    client.initiate_job(
        vaultName=VAULT, jobParameters={"Type": "archive-retrieval", "ArchiveId": mine}
    )
    result = retriever(emulator, tmp_path).run("dir0/file00.dat", "dir0/file03.dat", "--yes")
    assert result.returncode == 0, result.stderr
    assert "1 covered by jobs in progress" in result.stdout
    assert sorted(j["ArchiveId"] for j in history(emulator)) == sorted(
        [mine, made["dir0/file03.dat"][0]]
    )


def test_shards_partition_the_vault_exactly(vault: tuple[Emulator, Any], tmp_path: Path) -> None:
    emulator, made = vault
    counts = []
    for k in range(3):
        result = retriever(emulator, tmp_path, f"cache{k}").run(
            "--all", "--yes", "--shard", f"{k}/3", "--json"
        )
        assert result.returncode == 0, result.stderr
        plan = json.loads(result.stdout[: result.stdout.rindex("}") + 1])
        counts.append(plan["batch_jobs"])
    started = [j["ArchiveId"] for j in history(emulator)]
    assert sorted(started) == sorted(archive_id for archive_id, _ in made.values())
    ids = [archive_id for archive_id, _ in made.values()]
    assert counts == [sum(shard_of(a, 3) == k for a in ids) for k in range(3)]


def test_without_yes_off_a_terminal_it_refuses_and_starts_nothing(
    vault: tuple[Emulator, Any], tmp_path: Path
) -> None:
    emulator, _ = vault
    result = retriever(emulator, tmp_path).run("--all")
    assert "pass --yes" in one_line_error(result)
    assert "30 archives selected" in result.stdout  # the plan came first
    assert history(emulator) == []


def test_expedited_without_capacity_is_reported_not_retried(
    vault: tuple[Emulator, Any], tmp_path: Path
) -> None:
    emulator, _ = vault
    emulator.fault("insufficient-capacity")
    run = retriever(emulator, tmp_path)
    result = run.run("--all", "--yes", "--tier", "Expedited")
    assert result.returncode == 3
    assert "Expedited capacity" in one_line_error(result)
    assert history(emulator) == []
    requests = [e for e in emulator.requests() if e["operation"] == "InitiateJob"]
    refused = [e for e in requests if e.get("fault") == "insufficient-capacity"]
    assert len(refused) == 1 and [e for e in requests if e.get("archive")] == []  # asked once
    state = sqlite3.connect(tmp_path / "cache" / "retrieve" / "state.sqlite3")
    assert state.execute("SELECT COUNT(*) FROM intents").fetchone()[0] == 0
    state.close()


def test_an_inventory_file_is_the_source_when_given(
    vault: tuple[Emulator, Any], tmp_path: Path
) -> None:
    emulator, made = vault
    archive_id, data = made["dir2/file02.dat"]
    inventory = tmp_path / "inventory.json"
    listed = {
        "ArchiveId": archive_id,
        "ArchiveDescription": "renamed/by me.bin",
        "CreationDate": "2020-01-01T00:00:00Z",
        "Size": len(data),
        "SHA256TreeHash": "00" * 32,
    }
    inventory.write_text(
        json.dumps({"VaultARN": "x", "InventoryDate": "y", "ArchiveList": [listed]})
    )
    run = Retrieve(emulator, VAULT, tmp_path / "cache", tmp_path / "log")
    argv = run.argv("renamed/**", "--dry-run")
    argv[argv.index("-o") + 1] += f",inventory={inventory}"
    result = subprocess.run(argv, capture_output=True, text=True, env=isolated_env(), timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"archives from {inventory}" in result.stdout and "1 archive selected" in result.stdout


def test_with_no_inventory_it_says_how_to_start_one_and_inventory_starts_it(
    emulator_factory: Callable[..., Emulator], tmp_path: Path
) -> None:
    emulator = emulator_factory(*FLAGS)
    seed(emulator, VAULT, {"a": 10})
    run = retriever(emulator, tmp_path)
    assert "--inventory" in one_line_error(run.run("--all", "--dry-run"))
    started = run.run("--inventory")
    assert started.returncode == 0, started.stderr
    assert "hours" in started.stdout
    assert "is in progress" in one_line_error(run.run("--all", "--dry-run"))
    assert "already in progress" in run.run("--inventory").stdout
    jobs = [j for j in emulator.admin("GET", "jobs") if j["Action"] == "InventoryRetrieval"]
    assert len(jobs) == 1


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ((), "say what to retrieve"),
        (("--all", "--shard", "3/3"), "--shard is K/N"),
        (("--all", "--shard", "env/3"), "JOB_COMPLETION_INDEX"),
        (("--all", "--max-bytes-per-day", "lots"), "not a size"),
        (("--all", "--max-bytes-per-day", "100K"), "at least 1M"),
        (("--all", "--tier", "Glacial"), "invalid choice"),
        (("--all", "--created-after", "soon"), "not a date"),
        (("--all", "-o", "bogus=1"), "unknown mount option"),
    ],
)
def test_bad_command_lines_are_one_line_errors(args: tuple[str, ...], says: str) -> None:
    env = {k: v for k, v in isolated_env().items() if k != "JOB_COMPLETION_INDEX"}
    result = subprocess.run(
        [sys.executable, "-m", "glacierfs", "retrieve", "myvault", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 2
    assert says in one_line_error(result)


# contrib


def test_the_kubernetes_job_runs_n_shards_and_its_command_takes_k_from_the_index(
    emulator_factory: Callable[..., Emulator], tmp_path: Path
) -> None:
    documents = list(yaml.safe_load_all((CONTRIB / "kubernetes" / "retrieve-job.yaml").read_text()))
    job = next(d for d in documents if d["kind"] == "Job")
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    container = spec["template"]["spec"]["containers"][0]
    argv = container["command"] + container["args"]
    assert argv[:2] == ["glacierfs", "retrieve"]
    shard = argv[argv.index("--shard") + 1]
    count = int(shard.split("/")[1])
    assert count == spec["completions"] == spec["parallelism"]
    mount = container["volumeMounts"][0]
    assert "$(JOB_COMPLETION_INDEX)" in mount["subPathExpr"]
    declared = {e["name"] for e in container["env"]}
    assert "JOB_COMPLETION_INDEX" in declared
    for k in range(count):
        args = parse(argv[2:], env={"JOB_COMPLETION_INDEX": str(k)})
        assert args.shard == (k, count) and args.follow and args.yes and args.all
    # and the command itself runs, with the index from the environment
    emulator = emulator_factory(*FLAGS)
    vault = argv[-1]
    made = seed(emulator, vault, {f"f{n}": 100 for n in range(9)})
    take_inventory(emulator, vault)
    local = f"endpoint_url={emulator.url},cache_dir={tmp_path / 'cache'}"
    command = [sys.executable, "-m", "glacierfs", *argv[1:], "-o", local, "--dry-run", "--json"]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env=isolated_env({"JOB_COMPLETION_INDEX": "1"}),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    mine = [a for a, _ in made.values() if shard_of(a, count) == 1]
    assert json.loads(result.stdout)["selected"] == len(mine)


def test_the_systemd_unit_runs_retrieve_follow_to_the_end(
    emulator_factory: Callable[..., Emulator], tmp_path: Path
) -> None:
    text = (CONTRIB / "systemd" / "glacierfs-retrieve@.service").read_text()
    line = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    argv = shlex.split(line.removeprefix("ExecStart=").replace("%i", VAULT))
    assert argv[0] == "/usr/local/bin/glacierfs" and argv[1:3] == ["retrieve", "--follow"]
    assert "--yes" in argv and "Restart=on-failure" in text
    emulator = emulator_factory(*FLAGS)
    made = seed(emulator, VAULT, {"x": 1000, "y": 2 * MIB})
    take_inventory(emulator, VAULT)
    options = argv[argv.index("-o") + 1]
    options = re.sub(r"region=[^,]*", f"endpoint_url={emulator.url}", options)
    options = re.sub(r"cache_dir=[^,]*", f"cache_dir={tmp_path / 'cache'}", options)
    argv[argv.index("-o") + 1] = options
    follower = Retrieve(emulator, VAULT, tmp_path / "cache", tmp_path / "unit.log")
    with follower.log.open("ab") as out:
        follower.process = subprocess.Popen(
            [sys.executable, "-m", "glacierfs", *argv[1:], "--poll", "0.05"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=isolated_env(),
        )
    try:
        drive(emulator, follower, seconds=3 * HOUR)
    finally:
        follower.stop()
    assert follower.process.returncode == 0, follower.output()
    assert "2 saved, 2 verified" in follower.output()
    assert len(history(emulator)) == len(made)
    with open_root(tmp_path / "cache") as root:
        assert cache_holder(root) is None  # held only while saving: free for a mount


def test_parse_reads_the_shard_index_from_the_environment_only_when_asked() -> None:
    assert parse(["v", "--all", "--shard", "2/5"], env={}).shard == (2, 5)
    assert parse(["v", "--all", "--shard", "env/5"], env={"JOB_COMPLETION_INDEX": "4"}).shard == (
        4,
        5,
    )
    with pytest.raises(UsageError):
        parse(["v", "--all", "--shard", "env/5"], env={"JOB_COMPLETION_INDEX": "5"})
