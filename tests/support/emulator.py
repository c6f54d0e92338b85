"""The Glacier emulator as a child process of a test, and clients for it.

:class:`Emulator` starts ``python -m glacierfs.emulator`` on a free port with its own
state directory, waits for its ready file (polling with a deadline), and stops the
process it started at teardown. The ``emulator`` fixture gives each test a fresh
one; ``emulator_factory`` starts more with flags of the test's choosing.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import botocore.config
import botocore.session
import pytest

from tests.support.mount import isolated_env, stop_process, wait_for

ACCESS_KEY = isolated_env()["AWS_ACCESS_KEY_ID"]
SECRET_KEY = isolated_env()["AWS_SECRET_ACCESS_KEY"]


class Emulator:
    def __init__(self, state_dir: Path, *flags: str) -> None:
        self.state_dir, self.flags = state_dir, flags
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Emulator:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        ready = self.state_dir / "port"
        ready.unlink(missing_ok=True)
        argv = [sys.executable, "-m", "glacierfs.emulator", "--port", str(self.port)]
        argv += ["--state-dir", str(self.state_dir / "state"), "--ready-file", str(ready)]
        self.log = (self.state_dir / "emulator.log").open("ab")
        self.process = subprocess.Popen([*argv, *self.flags], stderr=self.log, env=isolated_env())
        process = self.process
        wait_for(ready.exists, "the emulator to listen", alive=lambda: process.poll() is None)
        self.port = int(ready.read_text())
        return self

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None
            self.log.close()

    def restart(self) -> None:
        """Stop and start again on the same port, with the same state."""
        self.stop()
        self.start()

    def client(self, **config: Any) -> Any:
        """A botocore glacier client that makes one attempt per call unless told."""
        config.setdefault("retries", {"total_max_attempts": 1})
        return botocore.session.get_session().create_client(
            "glacier",
            region_name="us-east-1",
            endpoint_url=self.url,
            aws_access_key_id=config.pop("access_key", ACCESS_KEY),
            aws_secret_access_key=SECRET_KEY,
            config=botocore.config.Config(**config),
        )

    def admin(self, method: str, path: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(f"{self.url}/_emulator/{path}", data, method=method)
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return json.load(response)
        except urllib.error.HTTPError as error:
            raise AssertionError(f"emulator admin {method} {path}: {error.read()!r}") from None

    def seeded_archive(
        self, vault: str, size: int, seed: int = 1, description: str = ""
    ) -> tuple[str, str]:
        """A seeded archive: (ArchiveId, tree hash)."""
        payload = {"vault": vault, "size": size, "seed": seed, "description": description}
        answer = self.admin("POST", "seeded-archives", payload)
        return answer["archiveId"], answer["checksum"]

    def content(self, vault: str, archive_id: str) -> bytes:
        url = f"{self.url}/_emulator/archives/{vault}/{archive_id}/content"
        with urllib.request.urlopen(url, timeout=120) as response:
            return bytes(response.read())

    def save_content(
        self, vault: str, archive_id: str, path: Path, start: int = 0, end: int | None = None
    ) -> Path:
        """Bytes ``start`` up to ``end`` (exclusive) of an archive, written to ``path``."""
        url = f"{self.url}/_emulator/archives/{vault}/{archive_id}/content"
        with urllib.request.urlopen(url, timeout=120) as response, path.open("wb") as out:
            position = 0
            while chunk := response.read(1 << 20):
                piece = chunk[max(start - position, 0) :]
                if end is not None:
                    piece = piece[: max(end - max(position, start), 0)]
                out.write(piece)
                position += len(chunk)
        return path

    def complete(self, job: str) -> Any:
        return self.admin("POST", f"jobs/{job}/complete")

    def fail(self, job: str, message: str = "Job failed") -> Any:
        return self.admin("POST", f"jobs/{job}/fail", {"message": message})

    def expire(self, job: str) -> Any:
        return self.admin("POST", f"jobs/{job}/expire")

    def set_job(self, job: str, **fields: Any) -> Any:
        return self.admin("POST", f"jobs/{job}/set", fields)

    def fault(self, kind: str, **spec: Any) -> int:
        return int(self.admin("POST", "faults", {"kind": kind, **spec})["id"])

    def clear_faults(self) -> None:
        self.admin("DELETE", "faults")

    def counters(self) -> dict[str, Any]:
        return dict(self.admin("GET", "counters"))

    def reset_counters(self) -> None:
        self.admin("POST", "counters/reset")

    def requests(self) -> list[dict[str, Any]]:
        return list(self.admin("GET", "requests"))

    def job_requests(self, job: str) -> int:
        """Requests naming this job (Describe Job and Get Job Output)."""
        return int(self.counters()["jobs"].get(job, {}).get("requests", 0))

    def job_bytes(self, job: str) -> int:
        """Bytes of this job's output served so far."""
        return int(self.counters()["jobs"].get(job, {}).get("bytes", 0))

    def output_totals(self) -> dict[str, int]:
        """Get Job Output requests and bytes, over every job."""
        totals = self.counters()["operations"].get("GetJobOutput", {})
        return {"requests": int(totals.get("requests", 0)), "bytes": int(totals.get("bytes", 0))}


@pytest.fixture
def emulator_factory(tmp_path: Path) -> Iterator[Callable[..., Emulator]]:
    started: list[Emulator] = []

    def start(*flags: str) -> Emulator:
        emulator = Emulator(tmp_path / f"emulator{len(started)}", *flags)
        started.append(emulator)
        return emulator.start()

    yield start
    for emulator in reversed(started):
        emulator.stop()


@pytest.fixture
def emulator(emulator_factory: Callable[..., Emulator]) -> Emulator:
    return emulator_factory()
