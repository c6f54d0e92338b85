"""The soak's vault: seeded archive jobs of mixed sizes, a range job, an inventory, and
two spare jobs that :mod:`tests.soak.lies` tells lies about (a second job of a middle
archive, a second range job of the biggest).

Each job's bytes are saved from the emulator's admin endpoint (which no fault
touches) before any fault is turned on, so readers compare with the source and not
with anything that went through the daemon.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.support.emulator import Emulator
from tests.support.vault import inventory, job_output, retrieve

KIB, MIB = 1 << 10, 1 << 20
VAULT = "soak"

SIZES = (KIB, 200 * KIB + 3, MIB, 3 * MIB + 17, 9 * MIB + 123, 24 * MIB, 64 * MIB)
RANGE = (6, 16 * MIB, 32 * MIB - 1)
"""Bytes 16-32 MiB of the 64 MiB archive: a node of its tree hash, so that every answer
carries a checksum (a range that is not a node has none, and a flipped byte in it could
not be caught: a documented limit, not what the soak is for)."""

SMALL_SIZES = (KIB, 300 * KIB + 3, 2 * MIB + 5, 6 * MIB)
SMALL_RANGE = (3, 4 * MIB, 6 * MIB - 1)
SPARES = (4, (6, 0, 16 * MIB - 1))
SMALL_SPARES = (2, (3, 0, 4 * MIB - 1))
"""The spare jobs: an archive's index, and a range (a node of its archive's tree too)."""


@dataclass(frozen=True)
class SoakJob:
    job_id: str
    kind: str  # archive | range | inventory | file (archives/PATH: job_id is that path)
    size: int
    expected: Path
    archive: str | None = None
    offset: int = 0  # where its output starts in its archive
    spare: bool = False  # one that lies are told about

    @property
    def path(self) -> str:
        """Where it is in the mount: ``jobs/<JobId>``, or an archive file's own path."""
        return self.job_id if self.kind == "file" else f"jobs/{self.job_id}"

    @property
    def checksummed(self) -> bool:
        """Whether its outputs carry a checksum: only these may get flipped bytes."""
        return self.kind != "inventory"


def build(emulator: Emulator, workdir: Path, small: bool) -> list[SoakJob]:
    """Seed the vault, start every job, and save each job's expected bytes."""
    client = emulator.client()
    client.create_vault(vaultName=VAULT)
    jobs: list[SoakJob] = []
    archives: list[str] = []
    for seed, size in enumerate(SMALL_SIZES if small else SIZES, start=1):
        archive, _ = emulator.seeded_archive(VAULT, size, seed, name(seed, size))
        expected = emulator.save_content(VAULT, archive, workdir / f"archive-{seed}")
        job_id = retrieve(client, VAULT, archive)
        jobs.append(SoakJob(job_id, "archive", size, expected, archive))
        archives.append(archive)
    index, start, end = SMALL_RANGE if small else RANGE
    expected = emulator.save_content(VAULT, archives[index], workdir / "range", start, end + 1)
    ranged = retrieve(client, VAULT, archives[index], f"{start}-{end}")
    jobs.append(SoakJob(ranged, "range", end - start + 1, expected, archives[index], start))
    jobs += spares(emulator, workdir, archives, jobs, small)
    listing = inventory(client, VAULT)
    expected = workdir / "inventory"
    expected.write_bytes(job_output(client, VAULT, listing))
    jobs.append(SoakJob(listing, "inventory", expected.stat().st_size, expected))
    return jobs


def name(seed: int, size: int) -> str:
    return f"soak/{seed}-{size}.bin"


def archive_files(jobs: list[SoakJob], small: bool) -> list[SoakJob]:
    """Each archive's file, ``archives/soak/N-SIZE.bin`` (its archive job's bytes)."""
    sizes = SMALL_SIZES if small else SIZES
    return [
        SoakJob(f"archives/{name(seed, size)}", "file", size, job.expected, job.archive)
        for (seed, size), job in zip(enumerate(sizes, start=1), jobs, strict=False)
    ]


def spares(
    emulator: Emulator, workdir: Path, archives: list[str], jobs: list[SoakJob], small: bool
) -> list[SoakJob]:
    """A second job of one archive and a second range job: the ones lies are told about."""
    client = emulator.client()
    whole, (index, start, end) = SMALL_SPARES if small else SPARES
    job_id = retrieve(client, VAULT, archives[whole])
    first = jobs[whole]
    spare = SoakJob(job_id, "archive", first.size, first.expected, first.archive, spare=True)
    expected = emulator.save_content(
        VAULT, archives[index], workdir / "spare-range", start, end + 1
    )
    ranged = retrieve(client, VAULT, archives[index], f"{start}-{end}")
    size = end - start + 1
    return [spare, SoakJob(ranged, "range", size, expected, archives[index], start, spare=True)]


def cache_size(jobs: list[SoakJob], fraction: float) -> int:
    """A share of the distinct bytes (a range job's and a spare's are its archive's), in
    whole MiB."""
    distinct = sum(job.size for job in jobs if job.kind != "range" and not job.spare)
    return max(MIB, int(distinct * fraction) // MIB * MIB)
