"""The memory cache: recently used leaves, bounded in bytes, least recently used out first.

It holds only fetched leaves the disk cache could not take (a full or failing disk), so
that the kernel reads that follow a fetch do not fetch it again; warm reads come from
the disk cache (:mod:`glacierfs.cache.local`). Not thread-safe: only the trio thread uses
it, so it needs no lock.
"""

from __future__ import annotations

from collections import OrderedDict


class MemoryCache:
    """Leaves by ``(key, index)``, at most ``capacity`` bytes of them."""

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError(f"memory cache capacity {capacity} is negative")
        self._capacity = capacity
        self._leaves: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._size = 0

    def get(self, key: str, index: int) -> bytes | None:
        """The leaf, marked as the most recently used; None when it is not here."""
        data = self._leaves.get((key, index))
        if data is not None:
            self._leaves.move_to_end((key, index))
        return data

    def put(self, key: str, index: int, data: bytes) -> None:
        """Keep ``data`` as the leaf, evicting the least recently used to make room.

        A leaf larger than the whole capacity is not kept.
        """
        self.discard(key, index)
        if len(data) > self._capacity:
            return
        self._leaves[(key, index)] = data
        self._size += len(data)
        while self._size > self._capacity:
            _, evicted = self._leaves.popitem(last=False)
            self._size -= len(evicted)

    def discard(self, key: str, index: int) -> None:
        """Forget the leaf if it is here."""
        data = self._leaves.pop((key, index), None)
        if data is not None:
            self._size -= len(data)

    @property
    def size(self) -> int:
        """Bytes of leaves held."""
        return self._size
