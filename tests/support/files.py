"""Files as the cache leaves them on disk: damaged on purpose, or looked at for holes."""

from __future__ import annotations

import errno
import os
from pathlib import Path


def flip_byte(path: Path, offset: int, mask: int = 0xFF) -> None:
    """XOR the byte at ``offset`` of ``path`` with ``mask``, in place."""
    with path.open("r+b") as damaged:
        damaged.seek(offset)
        byte = damaged.read(1)
        damaged.seek(offset)
        damaged.write(bytes([byte[0] ^ mask]))


def has_data(path: Path, start: int, stop: int) -> bool:
    """Whether ``path`` holds data (not a hole) anywhere in ``[start, stop)``; False
    for a file that is not there."""
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.lseek(fd, start, os.SEEK_DATA) < stop
    except OSError as error:
        if error.errno != errno.ENXIO:
            raise
        return False
    finally:
        os.close(fd)
