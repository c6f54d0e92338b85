"""Fast checks for bytes at rest: an XXH3-64 sum per 64 KiB granule of each leaf.

SHA-256 is the check against the service (a leaf's digest, which its object's tree hash
covers). For bytes already in the cache, that check is paid again on every first read
in a lifetime, and at 1.7 GB/s it was the largest single cost of a warm read. So a put
also stores, with the leaf's row, the XXH3-64 of each 64 KiB granule (16 for a whole
leaf, the last granule of a short leaf short; 8 bytes each, big-endian), computed from
the very bytes whose SHA-256 the caller verified. A first read checks those sums
instead: XXH3 runs at 25-60 GB/s here, on any x86-64 or aarch64 CPU (it needs no CPU
feature beyond SSE2 or NEON), takes any buffer without a copy, and lets a random
corruption through with probability 2^-64 per granule. Why ``xxhash`` over CRC32C
(``google-crc32c``, ``crc32c``): see docs/pipeline-notes.md; in short, twice as fast,
no slow software fallback, zero-copy on a ``bytearray``, 64 bits, BSD licence.

The sums catch bit rot, torn writes, and rows whose bytes a power loss never wrote. They
are no defence against someone who can write the cache: the trust rules of
:mod:`glacierfs.trusted` are. Granules make partial reads cheap: a read of 4 KiB checks
the one granule it touches (64 KiB), not the whole leaf.

The algorithm is recorded in the index (:data:`ALGORITHM`, in the ``meta`` table), so
that changing it is a format change, never a silent mismatch: an index that names
another algorithm has its sums dropped at open, and they are filled in again.

Measured (``python -m tests.bench.cache_first_read``: a 1 MiB leaf in the page cache,
this thread's CPU per leaf, medians of 7, 2 shared cores at load average 14-17):

- first ``get`` in a lifetime, SHA-256 (before schema 3): 673-677 us;
- first ``get``, XXH3 sums checked (now): 97-101 us, 6.8x less;
- first ``get`` of a row without sums: 749-761 us (SHA-256, then its sums written);
- later ``get`` (nothing checked): 64-70 us;
- ``read_range`` of 4 KiB in an unchecked granule: 20 us (one 64 KiB pread and hash);
- ``read_range`` of 4 KiB in a checked granule: 11 us (one 4 KiB pread).

The raw costs beside them: pread of 1 MiB 52 us, plus SHA-256 646-654 us, plus XXH3 of
its 16 granules 77 us.
"""

from __future__ import annotations

from collections.abc import Iterable

import xxhash

from glacierfs.treehash import MIB

GRANULE = 64 * 1024
"""Bytes a sum covers: a 4 KiB read checks at most 64 KiB (about 2 us of XXH3), and a
1 MiB leaf needs 16 sums, 128 bytes of index (a sum per 4 KiB would be 2 KiB a leaf)."""

GRANULES_PER_LEAF = MIB // GRANULE
SUM_SIZE = 8

ALGORITHM = f"xxh3-64 per {GRANULE} bytes"
"""What the ``sums`` column holds; recorded in the index's ``meta`` table."""


def sums(leaf: bytes | bytearray | memoryview) -> bytes:
    """The sums of the granules of ``leaf``, concatenated."""
    view = memoryview(leaf).cast("B")
    return b"".join(
        xxhash.xxh3_64_digest(view[start : start + GRANULE])
        for start in range(0, len(view), GRANULE)
    )


def count(length: int) -> int:
    """How many granules a leaf of ``length`` bytes has."""
    return -(-length // GRANULE)


def touched(offset: int, length: int) -> range:
    """The granules that bytes ``[offset, offset + length)`` of a leaf fall in."""
    return range(offset // GRANULE, (offset + length - 1) // GRANULE + 1)


def all_of(length: int) -> int:
    """The bitmask of every granule of a leaf of ``length`` bytes."""
    return (1 << count(length)) - 1


def matches(data: memoryview, first: int, stored: bytes, granules: Iterable[int]) -> bool:
    """Whether ``granules`` of ``data`` (which starts at granule ``first`` of its leaf)
    have the ``stored`` sums of the leaf."""
    for granule in granules:
        start = (granule - first) * GRANULE
        expected = stored[granule * SUM_SIZE : (granule + 1) * SUM_SIZE]
        if len(expected) != SUM_SIZE:
            return False
        if xxhash.xxh3_64_digest(data[start : start + GRANULE]) != expected:
            return False
    return True
