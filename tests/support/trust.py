"""What the trust tests ask of a mount and of the emulator behind a lying proxy."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.emulator import Emulator
from tests.support.liar import Liar
from tests.support.mount import Mount, isolated_env

RECORD_FIELDS = (
    "ArchiveId",
    "ArchiveSHA256TreeHash",
    "ArchiveSizeInBytes",
    "RetrievalByteRange",
    "SHA256TreeHash",
)
"""What a job's record says of what it retrieved (all a claimer needs to pass as another)."""


def record(emulator: Emulator, vault: str, job: str) -> dict[str, Any]:
    return dict(emulator.client().describe_job(vaultName=vault, jobId=job))


def impersonate(liar: Liar, emulator: Emulator, vault: str, claimer: str, genuine: str) -> None:
    """Make ``claimer``'s record say what ``genuine``'s does, ArchiveId and all: only its
    bytes (and their checksums, which agree with them) are its own."""
    truth = record(emulator, vault, genuine)
    liar.lie(claimer, **{name: truth.get(name) for name in RECORD_FIELDS})


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256sum(path: Path) -> tuple[int, str]:
    """What ``sha256sum`` says of a file: its exit code and the digest it printed."""
    done = subprocess.run(["sha256sum", str(path)], capture_output=True, text=True)
    return done.returncode, done.stdout.split()[0] if done.stdout else ""


def read_error(path: Path) -> int | None:
    """The errno of opening and reading the whole file, None when it reads."""
    try:
        path.read_bytes()
    except OSError as error:
        return error.errno
    return None


def status(mount: Mount) -> dict[str, Any]:
    """``glacierfs status --json``'s files, by job id (an archive's: ``archive/ID``)."""
    done = subprocess.run(
        [sys.executable, "-m", "glacierfs", "status", "--json", str(mount.path)],
        capture_output=True,
        text=True,
        env=isolated_env(),
        check=True,
    )
    return {f["job_id"]: f for f in json.loads(done.stdout)["files"]}
