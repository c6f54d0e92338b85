"""What a mount shows, without the kernel: the tree of names and the file operations.

- :mod:`.tree`: inodes and paths (jobs/, archives/, inventories/); pure.
- :mod:`.archives`: archives assembled from the jobs that cover them; pure.
- :mod:`.archive_files`: reading an archive file through the jobs that cover it.
- :mod:`.damage`: jobs known to fail their checks, remembered with the cache.
- :mod:`.filesystem`: lookups, attributes, listings, reads and xattrs, as domain values
  and domain errors; :mod:`glacierfs.fuse_adapter` turns them into pyfuse3 replies.
"""
