"""Running `glacierfs retrieve` in tests, and the emulator's clock driving it.

:class:`Retrieve` runs the command as a child process against an emulator, with its own
cache directory. :func:`drive` moves the emulator's clock forward step by step and,
after each step, waits (polling the emulator's request log, with a deadline) until
`--follow` has made two full looks at the jobs: the first may have begun before the
step, the second began after it and so saw it, and finished its round before the next
began. Time passes only on the emulator; `retrieve` reads it from the service.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.emulator import Emulator
from tests.support.mount import isolated_env, stop_process, wait_for
from tests.support.vault import sample, upload

HOUR = 3600.0
DAY = 86400.0
MIB = 1 << 20

FLAGS = ("--real-tier-times", "--max-page-size", "1000")
"""The emulator for retrieval tests: real tier times, every job on one page."""


def mt2(path: str) -> str:
    text = json.dumps({"filename": path, "mtime": "20190704T120000Z"}).encode()
    return "mt2 " + base64.urlsafe_b64encode(text).decode().rstrip("=")


def fastglacier(path: str) -> str:
    encoded = base64.b64encode(path.encode()).decode()
    return f"<m><v>4</v><p>{encoded}</p><lm>20210115T093000Z</lm></m>"


def seed(emulator: Emulator, vault: str, files: dict[str, int]) -> dict[str, tuple[str, bytes]]:
    """Upload each path's bytes (every other one in FastGlacier's format, the rest in
    mt-aws-glacier's); path -> (ArchiveId, bytes)."""
    client = emulator.client()
    client.create_vault(vaultName=vault)
    made = {}
    for n, (path, size) in enumerate(sorted(files.items())):
        data = sample(size, n)
        description = fastglacier(path) if n % 2 else mt2(path)
        made[path] = (upload(client, vault, data, description), data)
    return made


def take_inventory(emulator: Emulator, vault: str) -> str:
    """An inventory job, completed by moving the clock past its tier's time."""
    client = emulator.client()
    params = {"Type": "inventory-retrieval", "Tier": "Expedited"}
    job = str(client.initiate_job(vaultName=vault, jobParameters=params)["jobId"])
    advance(emulator, 301)
    return job


def advance(emulator: Emulator, seconds: float) -> None:
    emulator.admin("POST", "clock", {"advance": seconds})


def history(emulator: Emulator) -> list[dict[str, Any]]:
    """Every job the emulator ever started, expired ones too."""
    return [j for j in emulator.admin("GET", "jobs") if j["Action"] == "ArchiveRetrieval"]


def looks(emulator: Emulator) -> int:
    """Full looks at the jobs (ListJobs of every state, first page) so far."""
    return sum(
        1 for e in emulator.requests() if e["operation"] == "ListJobs" and not e.get("query")
    )


class Retrieve:
    def __init__(
        self,
        emulator: Emulator,
        vault: str,
        cache_dir: Path,
        log: Path,
        endpoint: str | None = None,  # another than the emulator's: a liar in front of it
    ) -> None:
        self.emulator, self.vault, self.cache_dir, self.log = emulator, vault, cache_dir, log
        self.endpoint = endpoint or emulator.url
        self.process: subprocess.Popen[bytes] | None = None
        self.options = f"endpoint_url={self.endpoint},cache_dir={cache_dir}"  # -o, more to add

    def argv(self, *args: str) -> list[str]:
        options = self.options
        return [sys.executable, "-m", "glacierfs", "retrieve", "-o", options, self.vault, *args]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args), capture_output=True, text=True, env=isolated_env(), timeout=300
        )

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.argv(*args), stdout=out, stderr=subprocess.STDOUT, env=isolated_env()
            )
        return self.process

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def step(emulator: Emulator, follower: Retrieve, seconds: float) -> None:
    """Move the clock ``seconds`` on, and wait for a full round of --follow after it."""
    before = looks(emulator)
    advance(emulator, seconds)
    wait_for(
        lambda: looks(emulator) >= before + 2 or not follower.alive(),
        "a round of retrieve --follow",
        deadline=120,
    )


def drive(
    emulator: Emulator,
    follower: Retrieve,
    seconds: float = 3 * HOUR,
    limit: int = 200,
    until: Callable[[], bool] = lambda: False,
) -> None:
    """Step the clock until --follow ends (or ``until`` holds); fail after ``limit`` steps."""
    for _ in range(limit):
        if not follower.alive() or until():
            return
        step(emulator, follower, seconds)
    raise AssertionError(
        f"retrieve --follow still running after {limit} steps:\n{follower.output()}"
    )
