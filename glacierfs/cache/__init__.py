"""The caches: verified leaves on disk, kept across mounts and expiries, and in memory.

- :mod:`.disk`: the disk cache (one sparse file per object, an SQLite index whose rows
  are the commit points, owners per leaf, eviction, crash recovery, metadata), a
  package with a module per part and :class:`~.disk.DiskCache` in front of them.
- :mod:`.memory`: recently used leaves in memory, for the trio thread only.
- :mod:`.aio`: the disk cache from the trio loop, every call in a thread under one limiter.
"""
