"""The caches: verified leaves on disk, kept across mounts and expiries, and in memory.

- :mod:`.disk`: the disk cache (one sparse file per object, an SQLite index whose rows
  are the commit points, owners per leaf, eviction, crash recovery, metadata), a
  package with a module per part and :class:`~.disk.DiskCache` in front of them.
- :mod:`.local`: a mount's reads of cached leaves on the trio thread, no SQLite, no
  lock, no thread unless the page cache misses; :mod:`.replies`, their reply buffers.
- :mod:`.memory`: fetched leaves the disk cache could not take, for the trio thread only.
- :mod:`.aio`: the disk cache from the trio loop, every call in a thread under one limiter.
"""
