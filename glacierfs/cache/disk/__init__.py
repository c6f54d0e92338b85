"""The disk cache: verified 1 MiB leaves of job outputs, kept across mounts and expiries.

:class:`DiskCache` is the one interface; behind it, a part per concern, each guarded by
the DiskCache's one lock (:mod:`.cache`):

- :mod:`.directory`: the cache root held by descriptor and locked, the on-disk layout,
  the session and crash recovery.
- :mod:`.index`: the SQLite index (opened through the held directory), its schema and
  migrations, write transactions, and what a full disk does.
- :mod:`.blocks`: the block store: a sparse data file per object, an LRU of open
  descriptors, pread and pwrite, hole punching.
- :mod:`.leaves`: the leaf index: a row per leaf present, its owners, its removal.
- :mod:`.puts`: the commit protocol: claim room, write the bytes, commit the rows.
- :mod:`.eviction`: delivered, then replaceable leaves out first, least recently used
  first in each, never custody (:mod:`.classes`: what the layer above says of each
  leaf); last uses written lazily.
- :mod:`.room`: eviction to make room under those classes; a cache full of custody
  refuses puts (read from memory instead) with one warning.
- :mod:`.meta`: JSON values by namespace and name, kept beside the leaves (so an output
  wholly cached stays listable after the service forgets its job).

Arrows run one way: the facade uses every part; ``puts`` uses ``room``, ``leaves``,
``eviction`` and ``blocks``; ``room`` uses ``leaves`` and ``eviction``; ``leaves`` uses
``eviction`` and ``blocks``; all use ``index``.
"""

from glacierfs.cache.disk.cache import Buffer, CacheUsage, DiskCache
from glacierfs.cache.disk.directory import LAYOUT
from glacierfs.cache.disk.eviction import TOUCH_FLUSH_SECONDS
from glacierfs.cache.disk.index import SCHEMA_VERSION
from glacierfs.cache.disk.leaves import SHARED, LeafRow, merged

__all__ = [
    "LAYOUT",
    "SCHEMA_VERSION",
    "SHARED",
    "TOUCH_FLUSH_SECONDS",
    "Buffer",
    "CacheUsage",
    "DiskCache",
    "LeafRow",
    "merged",
]
