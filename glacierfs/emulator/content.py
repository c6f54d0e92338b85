"""Archive bytes: uploaded ones in files, seeded ones generated on the fly.

A seeded archive is deterministic pseudo-random content of any size that never
touches the disk: leaf ``i`` (1 MiB) of seed ``s`` is a rotation of one random
1 MiB block of that seed, stamped with ``(s, i)`` so that no two leaves are equal
and a block served from the wrong offset is always caught.
"""

from __future__ import annotations

import functools
import os
import random
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from glacierfs.treehash import MIB, leaf_digests

_STAMP = struct.Struct(">QQ")


class Source(Protocol):
    size: int

    def chunks(self, start: int, end: int) -> Iterator[bytes]:
        """Bytes ``start`` to ``end`` (exclusive), in pieces of at most 1 MiB."""
        ...


@functools.lru_cache(maxsize=16)
def _base(seed: int) -> bytes:
    return random.Random(seed).randbytes(MIB)


@functools.lru_cache(maxsize=64)
def seeded_leaf(seed: int, index: int) -> bytes:
    """Leaf ``index`` (a full 1 MiB) of the seeded content of ``seed``."""
    base = _base(seed)
    turn = (index * 7919 + 1) % MIB
    rotated = memoryview(base[turn:] + base[:turn])
    return b"".join((_STAMP.pack(seed, index), rotated[_STAMP.size :]))


class SeededSource:
    def __init__(self, seed: int, size: int) -> None:
        self.seed, self.size = seed, size

    def chunks(self, start: int, end: int) -> Iterator[bytes]:
        position = start
        while position < end:
            index, offset = divmod(position, MIB)
            piece = seeded_leaf(self.seed, index)[offset : min(MIB, end - index * MIB)]
            yield piece
            position += len(piece)


class FileSource:
    def __init__(self, path: Path, size: int) -> None:
        self.path, self.size = path, size

    def chunks(self, start: int, end: int) -> Iterator[bytes]:
        fd = os.open(self.path, os.O_RDONLY)
        try:
            position = start
            while position < end:
                piece = os.pread(fd, min(MIB, end - position), position)
                if not piece:
                    raise OSError(f"{self.path} is shorter than {self.size} bytes")
                yield piece
                position += len(piece)
        finally:
            os.close(fd)


def source_digests(source: Source) -> list[bytes]:
    """The 1 MiB leaf digests of a whole source."""
    digests: list[bytes] = []
    for start in range(0, source.size, MIB):
        leaf = b"".join(source.chunks(start, min(start + MIB, source.size)))
        digests.extend(leaf_digests(leaf))
    return digests
