"""What Get Job Output serves for a job: its bytes, and which ranges carry a tree hash.

The service sends ``x-amz-sha256-tree-hash`` with a job's output, or a range of it, only
when the range is one node of the data's tree hash (``GLACIER-NOTES.md``); an archive
job asked for an unaligned range has no checksum at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from glacierfs.emulator.content import FileSource, Source
from glacierfs.emulator.records import Archive, Job, invalid
from glacierfs.emulator.store import Store
from glacierfs.treehash import MIB, combine


def is_tree_node(start: int, end: int, size: int) -> bool:
    """Whether bytes ``start`` to ``end`` (exclusive) are one node of the data's tree.

    Node ``j`` of level ``k`` covers leaves ``j*2^k`` up to ``(j+1)*2^k`` or the last
    leaf, whichever comes first (an odd node is carried up unchanged).
    """
    if size == 0:
        return start == end == 0
    if start % MIB or start >= end or end > size or (end != size and end % MIB):
        return False
    first, count, leaves = start // MIB, -(-(end - start) // MIB), -(-size // MIB)
    span = 1
    while span < count:
        span *= 2
    return first % span == 0 and (count == span or first + count == leaves)


def leaf_window(leaves: list[bytes], start: int, end: int) -> list[bytes]:
    """The digests of the leaves that bytes ``start..end`` (inclusive) cover."""
    return leaves[start // MIB : -(-(end + 1) // MIB)]


@dataclass
class Output:
    """What Get Job Output serves for one job."""

    source: Source
    content_type: str
    description: str | None
    leaves: list[bytes] | None  # None: no checksum header for any range

    def tree_hash(self, start: int, end: int) -> str | None:
        """The checksum header for bytes ``start..end`` (inclusive), when one is sent."""
        if self.leaves is None or not is_tree_node(start, end + 1, self.source.size):
            return None
        return combine(leaf_window(self.leaves, start, end)).hex()


class _Window:
    """Bytes ``offset`` to ``offset + size`` of another source."""

    def __init__(self, inner: Source, offset: int, size: int) -> None:
        self._inner, self._offset, self.size = inner, offset, size

    def chunks(self, start: int, end: int) -> Any:
        return self._inner.chunks(self._offset + start, self._offset + end)


def retrieved(store: Store, job: Job) -> tuple[Archive, int, int, list[bytes] | None]:
    """An archive job's archive and range (inclusive), and the range's leaf digests
    when the range is a node of the archive's tree (else None: no checksum)."""
    archive = store.archives[job.archive_id or ""]
    start, end = job.byte_range or (0, archive.size - 1)
    if not is_tree_node(start, end + 1, archive.size):
        return archive, start, end, None
    return archive, start, end, leaf_window(store.leaves(archive), start, end)


def job_output(store: Store, job: Job) -> Output:
    if job.status != "Succeeded":
        raise invalid(f"The job is not currently available for download: {job.job_id}")
    if job.action == "InventoryRetrieval":
        path = store.root / "outputs" / job.job_id
        kind = "text/csv" if job.fmt == "CSV" else "application/json"
        return Output(FileSource(path, path.stat().st_size), kind, None, None)
    archive, start, end, leaves = retrieved(store, job)
    window = _Window(store.source(archive), start, end - start + 1)
    return Output(window, "application/octet-stream", archive.description, leaves)
