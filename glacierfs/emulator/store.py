"""The emulator's vaults and archives, and the state directory that keeps them across restarts.

Layout of the state directory: ``state.json`` (vaults, archives, jobs; rewritten
atomically on every change), ``archives/<id>`` (uploaded bytes; seeded archives
have no file), ``archives/<id>.leaves`` (the 32-byte leaf digests of every
archive) and ``outputs/<job>`` (inventory outputs, made when the job completes).

The store holds the job records too, so that one file saves everything; what jobs do
(complete, expire, list, describe) is :class:`.jobs.Jobs`. The clock's time is saved with
the state, so a restart never moves it back.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from pathlib import Path
from typing import Any

from glacierfs.emulator.clock import Clock
from glacierfs.emulator.content import FileSource, SeededSource, Source, source_digests
from glacierfs.emulator.policy import DEFAULT as DEFAULT_POLICY
from glacierfs.emulator.records import (
    VAULT_NAME,
    Archive,
    Job,
    Vault,
    check_description,
    invalid,
    iso,
    missing,
    new_id,
    not_found,
)
from glacierfs.treehash import combine, leaf_digests


class Store:
    def __init__(
        self,
        root: Path,
        *,
        account: str = "123456789012",
        region: str = "us-east-1",
        job_delay: float = 0.0,
        job_expiry: float = 86400.0,
        max_page: int = 50,
        tier_delays: dict[str, tuple[float, float]] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.root, self.account, self.region = root, account, region
        self.job_delay, self.job_expiry, self.max_page = job_delay, job_expiry, max_page
        self.tier_delays = dict(tier_delays or {})
        self.clock = clock or Clock()
        self.lock = threading.RLock()
        self.vaults: dict[str, Vault] = {}
        self.archives: dict[str, Archive] = {}
        self.jobs: dict[str, Job] = {}
        self._leaves: dict[str, list[bytes]] = {}
        self.policy: dict[str, Any] = DEFAULT_POLICY
        for sub in ("archives", "outputs"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        self._load()

    # persistence

    def _load(self) -> None:
        path = self.root / "state.json"
        if not path.exists():
            return
        state = json.loads(path.read_text())
        saved_time = state.get("clock")
        if isinstance(saved_time, int | float) and saved_time > self.clock.now():
            self.clock.advance(saved_time - self.clock.now())
        self.vaults = {v["name"]: Vault(**v) for v in state["vaults"]}
        self.archives = {a["archive_id"]: Archive(**a) for a in state["archives"]}
        self.jobs = {j["job_id"]: Job(**j) for j in state["jobs"]}
        self.policy = state.get("policy") or DEFAULT_POLICY

    def save(self) -> None:
        with self.lock:
            state = {
                "vaults": [dataclasses.asdict(v) for v in self.vaults.values()],
                "archives": [dataclasses.asdict(a) for a in self.archives.values()],
                "jobs": [dataclasses.asdict(j) for j in self.jobs.values()],
                "clock": self.clock.now(),
                "policy": self.policy,
            }
            temporary = self.root / "state.json.tmp"
            temporary.write_text(json.dumps(state))
            os.replace(temporary, self.root / "state.json")

    # vaults

    def arn(self, vault: str) -> str:
        return f"arn:aws:glacier:{self.region}:{self.account}:vaults/{vault}"

    def vault(self, name: str) -> Vault:
        found = self.vaults.get(name)
        if found is None:
            raise not_found(f"Vault not found for ARN: {self.arn(name)}")
        return found

    def create_vault(self, name: str) -> None:
        if not VAULT_NAME.match(name):
            raise invalid(f"Invalid vault name: {name}")
        with self.lock:
            self.vaults.setdefault(name, Vault(name, self.clock.now()))
            self.save()

    def delete_vault(self, name: str) -> None:
        with self.lock:
            self.vault(name)
            if self.live(name):
                raise invalid(f"Vault not empty or recently written to: {self.arn(name)}")
            del self.vaults[name]
            self.save()

    def describe_vault(self, name: str) -> dict[str, Any]:
        vault = self.vault(name)
        archives = self.live(name)
        return {
            "VaultARN": self.arn(name),
            "VaultName": name,
            "CreationDate": iso(vault.created),
            "LastInventoryDate": iso(vault.last_inventory) if vault.last_inventory else None,
            "NumberOfArchives": len(archives),
            "SizeInBytes": sum(a.size for a in archives),
        }

    def list_vaults(self, limit: str | None, marker: str | None) -> dict[str, Any]:
        names = sorted(self.vaults)
        page, next_marker = self.page([self.arn(n) for n in names], limit, marker)
        return {
            "VaultList": [self.describe_vault(arn.rsplit("/", 1)[1]) for arn in page],
            "Marker": next_marker,
        }

    def page(self, keys: list[str], limit: str | None, marker: str | None) -> Any:
        """One page of a listing: the keys from ``marker`` on, and the next page's marker."""
        size = self.max_page
        if limit is not None:
            if not limit.isdigit() or not 1 <= int(limit) <= 1000:
                raise invalid(f"Invalid limit: {limit}")
            size = min(int(limit), self.max_page)
        start = 0
        if marker is not None:
            if marker not in keys:
                raise invalid(f"Invalid marker: {marker}")
            start = keys.index(marker)
        page = keys[start : start + size]
        return page, keys[start + size] if start + size < len(keys) else None

    # archives

    def upload(self, vault: str, data: bytes, description: str, checksum: str | None) -> Archive:
        self.vault(vault)
        check_description(description)
        digests = leaf_digests(data)
        tree = combine(digests).hex()
        if checksum is None:
            raise missing("x-amz-sha256-tree-hash")
        if checksum.lower() != tree:
            raise invalid(f"Checksum mismatch: expected {checksum}, computed {tree}")
        archive = Archive(new_id(104), vault, len(data), tree, description, self.clock.now())
        (self.root / "archives" / archive.archive_id).write_bytes(data)
        return self._add(archive, digests)

    def seed(self, vault: str, size: int, seed: int, description: str) -> Archive:
        self.vault(vault)
        check_description(description)
        if size < 0 or seed < 0:
            raise invalid("size and seed must not be negative")
        digests = source_digests(SeededSource(seed, size))
        archive = Archive(
            new_id(104), vault, size, combine(digests).hex(), description, self.clock.now(), seed
        )
        return self._add(archive, digests)

    def _add(self, archive: Archive, digests: list[bytes]) -> Archive:
        path = self.root / "archives" / f"{archive.archive_id}.leaves"
        path.write_bytes(b"".join(digests))
        with self.lock:
            self._leaves[archive.archive_id] = digests
            self.archives[archive.archive_id] = archive
            self.save()
        return archive

    def archive(self, vault: str, archive_id: str) -> Archive:
        self.vault(vault)
        found = self.archives.get(archive_id)
        if found is None or found.vault != vault or found.deleted:
            raise not_found(f"Archive not found: {archive_id}")
        return found

    def delete_archive(self, vault: str, archive_id: str) -> None:
        with self.lock:
            self.archive(vault, archive_id).deleted = True
            self.save()

    def live(self, vault: str) -> list[Archive]:
        """The vault's archives not deleted."""
        return [a for a in self.archives.values() if a.vault == vault and not a.deleted]

    def source(self, archive: Archive) -> Source:
        if archive.seed is not None:
            return SeededSource(archive.seed, archive.size)
        return FileSource(self.root / "archives" / archive.archive_id, archive.size)

    def leaves(self, archive: Archive) -> list[bytes]:
        with self.lock:
            if archive.archive_id not in self._leaves:
                raw = (self.root / "archives" / f"{archive.archive_id}.leaves").read_bytes()
                self._leaves[archive.archive_id] = [raw[i : i + 32] for i in range(0, len(raw), 32)]
            return self._leaves[archive.archive_id]
