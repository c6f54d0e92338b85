"""The SHA-256 tree hash Glacier uses, and the alignment rules for when it is sent.

Pure code, no I/O. This is the only module the daemon and the emulator share: each
other piece of the API is implemented twice, from the spec, so that a misreading in
one shows up as a failing test against the other.

A tree hash hashes each 1 MiB leaf (the last one may be shorter), then hashes the
concatenation of each adjacent pair of digests, level by level, carrying an odd one
up unchanged, until one digest is left. The empty input hashes to ``sha256(b"")``.

Ranges are ``(start, end)`` with ``end`` inclusive, as in HTTP ``Range`` headers, and
are reckoned relative to data of ``size`` bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

Buffer = bytes | bytearray | memoryview

MIB = 1 << 20
"""The leaf size of Glacier's tree hash."""

EMPTY_DIGEST = hashlib.sha256(b"").digest()


def leaf_digests(data: Buffer) -> list[bytes]:
    """SHA-256 of each 1 MiB piece of ``data``; an empty buffer has no leaves."""
    view = memoryview(data).cast("B")
    return [hashlib.sha256(view[i : i + MIB]).digest() for i in range(0, len(view), MIB)]


def combine(digests: Sequence[bytes]) -> bytes:
    """The root of the tree over a run of leaf digests (or of lower tree nodes)."""
    if not digests:
        return EMPTY_DIGEST
    level = list(digests)
    while len(level) > 1:
        paired = [
            hashlib.sha256(level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def tree_hash(data: Buffer) -> str:
    """The tree hash of ``data``, as Glacier writes it: lower-case hex."""
    return combine(leaf_digests(data)).hex()


def range_root(leaves: Sequence[bytes], start: int, end: int) -> bytes:
    """The tree hash of bytes ``start..end`` of data whose leaf digests are ``leaves``.

    ``start`` must be a multiple of 1 MiB and ``end + 1`` a multiple of 1 MiB or the
    end of the data: only whole leaves can be combined.
    """
    first, last = start // MIB, -(-(end + 1) // MIB)
    ragged_end = (end + 1) % MIB != 0
    if start % MIB or end < start - 1 or last > len(leaves) or (ragged_end and last != len(leaves)):
        raise ValueError(f"range {start}-{end} is not whole leaves of the {len(leaves)} given")
    return combine(leaves[first:last])


def _check_range(start: int, end: int, size: int) -> None:
    if start < 0 or end < start or end >= size:
        raise ValueError(f"range {start}-{end} is not within data of {size} bytes")


def is_megabyte_aligned(start: int, end: int, size: int) -> bool:
    """True when ``start`` is a multiple of 1 MiB and ``end + 1`` is too, or is ``size``.

    This is what InitiateJob requires of a ``RetrievalByteRange``.
    """
    _check_range(start, end, size)
    return start % MIB == 0 and ((end + 1) % MIB == 0 or end + 1 == size)


def next_power_of_two_mib(length: int) -> int:
    """``length`` rounded up to 1 MiB times a power of two (never less than 1 MiB)."""
    span = MIB
    while span < length:
        span <<= 1
    return span


def is_tree_hash_aligned(start: int, end: int, size: int) -> bool:
    """True when the tree hash of the range alone is a node of the data's own tree.

    Either the range is 1 MiB x 2^k long and starts at a multiple of its length, or it
    runs to the end of the data and starts at a multiple of its length rounded up to
    a power of two (never less than 1 MiB). The whole data is always aligned.
    """
    _check_range(start, end, size)
    length = end - start + 1
    span = next_power_of_two_mib(length)
    if end + 1 == size:
        return start % span == 0
    return length == span and start % span == 0
