"""The disk cache from the trio loop: every call awaited, in a worker thread, under one limiter.

Design. :class:`~glacierfs.cache.disk.DiskCache` blocks (SQLite, pread, fsync), and the
trio loop must not, so every call into it from the loop goes through :class:`AsyncDisk`:
a worker thread per call, at most :data:`DISK_THREADS` at once for the whole mount. A
slow disk then queues its callers here rather than taking every worker thread (which the
network and hashing need too). Worker threads that are not on the loop (a ReaderStream,
``glacierfs retrieve``'s own threads) call the DiskCache directly. Reads of leaves
already checked skip the worker thread: :attr:`AsyncDisk.local` (:mod:`.local`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, TypeVar

import trio

from glacierfs.cache.disk import CacheUsage, DiskCache, LeafRow
from glacierfs.cache.local import LocalReads
from glacierfs.config import DEFAULT_DISK_THREADS

T = TypeVar("T")


class AsyncDisk:
    """The public methods of a DiskCache, each awaitable, sharing one thread limiter."""

    def __init__(self, disk: DiskCache, threads: int = DEFAULT_DISK_THREADS) -> None:
        self.disk = disk
        self._limiter = trio.CapacityLimiter(threads)
        self.local = LocalReads(disk.reads, self._limiter)

    async def _run(self, call: Callable[..., T], *args: Any) -> T:
        return await trio.to_thread.run_sync(call, *args, limiter=self._limiter)

    async def get_leaf(self, key: str, index: int, owner: str) -> tuple[bytes, bytes] | None:
        return await self._run(self.disk.get_leaf, key, index, owner)

    async def read_range(
        self, key: str, index: int, offset: int, length: int, owner: str
    ) -> bytes | None:
        return await self._run(self.disk.read_range, key, index, offset, length, owner)

    async def put(
        self,
        key: str,
        first: int,
        data: bytes,
        digests: Sequence[bytes],
        verified: str,
        *,
        owner: str,
    ) -> bool:
        def put() -> bool:
            return self.disk.put(key, first, data, digests, verified, owner=owner)

        return await self._run(put)

    async def leaves(self, key: str) -> dict[int, LeafRow]:
        return await self._run(self.disk.leaves, key)

    async def share(self, key: str, digests: Sequence[bytes]) -> bool:
        return await self._run(self.disk.share, key, digests)

    async def adopt(self, key: str, first: int, digests: Sequence[bytes], owner: str) -> bool:
        return await self._run(self.disk.adopt, key, first, digests, owner)

    async def disown(self, key: str, index: int, owner: str) -> None:
        await self._run(self.disk.disown, key, index, owner)

    async def get_meta(self, namespace: str, name: str) -> Any | None:
        return await self._run(self.disk.get_meta, namespace, name)

    async def put_meta(self, namespace: str, name: str, value: Any) -> None:
        await self._run(self.disk.put_meta, namespace, name, value)

    async def list_meta(self, namespace: str) -> dict[str, Any]:
        return await self._run(self.disk.list_meta, namespace)

    async def delete_meta(self, namespace: str, name: str) -> None:
        await self._run(self.disk.delete_meta, namespace, name)

    async def fit(self) -> None:
        await self._run(self.disk.fit)

    async def usage(self) -> CacheUsage:
        usage = await self._run(self.disk.usage)
        return replace(usage, bytes_read=usage.bytes_read + self.local.bytes_read)
