"""Numbers and moments as people read them, the same in every command's output."""

from __future__ import annotations

import time

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def size(nbytes: float) -> str:
    """``1.5 GiB``."""
    return _scaled(nbytes, compact=False)


def short_size(nbytes: float) -> str:
    """``1.5G``: for columns (``status``, progress lines)."""
    return _scaled(nbytes, compact=True)


def _scaled(nbytes: float, *, compact: bool) -> str:
    for unit in _UNITS:
        if abs(nbytes) < 1024 or unit == _UNITS[-1]:
            break
        nbytes /= 1024
    number = f"{nbytes:.0f}" if unit == "B" else f"{nbytes:.1f}"
    return f"{number}{unit[0]}" if compact else f"{number} {unit}"


def utc(moment: float, form: str = "%Y-%m-%d %H:%M UTC") -> str:
    """A moment (seconds since the epoch) in UTC, the service's time zone."""
    return time.strftime(form, time.gmtime(moment))


def plural(count: int, noun: str, many: str | None = None) -> str:
    """``1 archive``, ``3 archives``, ``0 jobs``: a count with its noun in agreement."""
    return f"{count:,} {noun if count == 1 else (many or noun + 's')}"
