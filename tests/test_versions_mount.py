"""Versions of one file, through real mounts and real `retrieve` runs: the newest (by the
uploader's mtime) is ``docs/a.txt``, older ones are named by their dates, the same in both
and on every mount, whichever jobs complete first."""

from __future__ import annotations

import base64
import json
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.emulator import Emulator
from tests.support.mount import Mount, needs_fuse, wait_for
from tests.support.retrieve import FLAGS, Retrieve, history, take_inventory
from tests.support.vault import inventory, retrieve, sample, upload

VAULT = "versions"
YEARS = {"2020": "20200301T100000Z", "2021": "20210301T100000Z", "2019": "20190301T100000Z"}
"""Uploaded in this order: neither the first uploaded nor the last is the newest file."""

NAMES = {
    "2021": "docs/a.txt",
    "2020": "docs/a~20200301T100000Z.txt",
    "2019": "docs/a~20190301T100000Z.txt",
}


def mt2(path: str, mtime: str) -> str:
    text = json.dumps({"filename": path, "mtime": mtime}).encode()
    return "mt2 " + base64.urlsafe_b64encode(text).decode().rstrip("=")


def upload_versions(client: Any) -> dict[str, tuple[str, bytes]]:
    """year -> (ArchiveId, bytes) of each version of docs/a.txt."""
    client.create_vault(vaultName=VAULT)
    made = {}
    for n, (year, mtime) in enumerate(YEARS.items()):
        data = sample(3000 + n, n)
        made[year] = (upload(client, VAULT, data, mt2("docs/a.txt", mtime)), data)
    return made


def shown(mount: Mount) -> dict[str, str]:
    """Path under archives/ -> the ArchiveId it shows."""
    root = mount.path / "archives"
    return {
        str(p.relative_to(root)): os.getxattr(p, "user.glacier.archive_id").decode()
        for p in root.rglob("*")
        if p.is_file()
    }


def expected(made: dict[str, tuple[str, bytes]], years: list[str]) -> dict[str, str]:
    return {NAMES[year]: made[year][0] for year in years}


@needs_fuse
def test_the_newest_version_is_the_plain_name_on_every_mount_whichever_jobs_complete_first(
    emulator: Emulator, mount_factory: Callable[..., Mount]
) -> None:
    client = emulator.client()
    made = upload_versions(client)
    inventory(client, VAULT)
    for year in ("2019", "2020"):  # the older versions' jobs complete first
        retrieve(client, VAULT, made[year][0])
    mount = mount_factory(emulator.url, VAULT)
    assert shown(mount) == expected(made, ["2019", "2020"])
    assert (mount.path / "archives" / NAMES["2019"]).read_bytes() == made["2019"][1]
    retrieve(client, VAULT, made["2021"][0])
    os.kill(mount.pid, signal.SIGHUP)
    wait_for(lambda: "docs/a.txt" in shown(mount), "the newest version to appear")
    assert shown(mount) == expected(made, ["2019", "2020", "2021"])
    assert (mount.path / "archives" / "docs" / "a.txt").read_bytes() == made["2021"][1]
    mount.stop()
    again = mount_factory(emulator.url, VAULT, cache_dir=mount.cache_dir)
    assert shown(again) == expected(made, ["2019", "2020", "2021"])
    again.stop()
    fresh = mount_factory(emulator.url, VAULT)  # a new cache: every job there at once
    assert shown(fresh) == expected(made, ["2019", "2020", "2021"])


@needs_fuse
def test_without_an_inventory_the_uploaders_dates_name_the_versions_with_jobs(
    emulator: Emulator, mount_factory: Callable[..., Mount]
) -> None:
    client = emulator.client()
    made = upload_versions(client)
    for year in YEARS:
        retrieve(client, VAULT, made[year][0])
    mount = mount_factory(emulator.url, VAULT)
    assert shown(mount) == expected(made, list(YEARS))


@pytest.fixture
def versions_vault(
    emulator_factory: Callable[..., Emulator],
) -> tuple[Emulator, dict[str, tuple[str, bytes]]]:
    emulator = emulator_factory(*FLAGS)
    made = upload_versions(emulator.client())
    take_inventory(emulator, VAULT)
    return emulator, made


def requested(emulator: Emulator) -> list[str]:
    return [job["ArchiveId"] for job in history(emulator)]


def test_retrieve_names_the_versions_as_the_mount_does_and_latest_plans_one(
    versions_vault: tuple[Emulator, dict[str, tuple[str, bytes]]], tmp_path: Path
) -> None:
    emulator, made = versions_vault
    run = Retrieve(emulator, VAULT, tmp_path / "cache", tmp_path / "log")
    latest = run.run("--latest", "--all", "--dry-run", "--json")
    assert latest.returncode == 0, latest.stderr
    plan = json.loads(latest.stdout)
    assert (plan["selected"], plan["jobs"]) == (1, 1)
    assert (plan["older_versions"], plan["older_bytes"]) == (2, 3000 + 3002)
    text = run.run("--latest", "--all", "--dry-run")
    assert "--latest left out 2 older versions (5.9 KiB)" in text.stdout
    everything = json.loads(run.run("--all", "--dry-run", "--json").stdout)
    assert (everything["selected"], everything["older_versions"]) == (3, 0)
    for year in ("2021", "2019"):
        result = run.run(NAMES[year], "--yes")
        assert result.returncode == 0, result.stderr
    assert requested(emulator) == [made["2021"][0], made["2019"][0]]
