"""A fetch streams its response into the disk cache through one reusable buffer: real
HTTP to the emulator, the real client, fetcher and disk cache, no mount."""

from __future__ import annotations

import os
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from glacierfs.cache.aio import AsyncDisk
from glacierfs.cache.disk import DiskCache
from glacierfs.client import ClientSettings, GlacierClient
from glacierfs.jobs import Job
from glacierfs.read.fetch import Fetcher, Landed, Sink
from glacierfs.read.ledger import BLOCK, Ledger
from glacierfs.retry import RetryPolicy
from glacierfs.stats import Stats
from glacierfs.treehash import combine
from tests.support.emulator import Emulator
from tests.support.mount import isolated_env
from tests.support.vault import retrieve

MIB = 1 << 20
SIZE = 64 * MIB


@pytest.fixture
def client(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[GlacierClient]:
    for name in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(name)
    for name, value in isolated_env().items():
        if name.startswith("AWS_"):
            monkeypatch.setenv(name, value)
    made = GlacierClient(ClientSettings(vault="mem", endpoint_url=emulator.url))
    yield made
    made.close()


def test_a_64_mib_response_is_streamed_through_one_buffer_into_the_cache(
    emulator: Emulator, client: GlacierClient, tmp_path: Path
) -> None:
    emulator.client().create_vault(vaultName="mem")
    archive_id, tree = emulator.seeded_archive("mem", SIZE, 5, "")
    job = Job(
        job_id=retrieve(emulator.client(), "mem", archive_id),
        kind="archive",
        size=SIZE,
        completed=0.0,
        created=0.0,
        vault_arn="arn:vault",
        archive_id=archive_id,
        archive_size=SIZE,
        archive_tree_hash=tree,
        tree_hash=tree,
    )
    fetcher = Fetcher(
        lambda job, start, end: client.open_output(job.job_id, start, end, job.size),
        1,
        RetryPolicy(attempts=1),
        Stats(),
    )
    with DiskCache(tmp_path / "cache", 4 * SIZE) as disk:
        ledger = Ledger(AsyncDisk(disk))

        async def fetch(start: int, end: int) -> Landed:
            sink = Sink(disk, job.cache_key, start // MIB, job.owner)
            return await fetcher.fetch(job, start, end, ledger, sink)

        trio.run(fetch, 0, MIB - 1)  # warm: the connection, botocore's model, the buffer
        tracemalloc.start()
        try:
            landed = trio.run(fetch, 0, SIZE - 1)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert landed.how == BLOCK and combine(landed.digests).hex() == tree
        assert landed.stored == set(range(64)) and not landed.held
        assert disk.cached_bytes(job.cache_key) == SIZE
        # No leaf-sized allocation at all: the socket's bytes land in the reused buffer.
        assert peak < MIB // 2, f"peak {peak} bytes allocated while fetching {SIZE}"
        found = disk.get_leaf(job.cache_key, 63, job.owner)
        assert found is not None and found[1] == landed.digests[63]
