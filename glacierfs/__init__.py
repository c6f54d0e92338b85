"""glacierfs: a read-only FUSE filesystem for Amazon S3 Glacier job outputs."""

__version__ = "0.1.0"
