"""How long a job of each retrieval tier takes to complete, in emulated seconds.

The real service gives ranges, not times: Expedited 1-5 minutes, Standard 3-5 hours,
Bulk 5-12 hours (the documented typical times for archives under 250 MB). Each job
draws its delay from its tier's range, seeded by its JobId, so a job keeps its delay
across restarts and tests see the spread a real vault shows.
"""

from __future__ import annotations

import random
import re

TIERS = ("Expedited", "Standard", "Bulk")

REAL_TIMES: dict[str, tuple[float, float]] = {
    "Expedited": (60.0, 300.0),
    "Standard": (3 * 3600.0, 5 * 3600.0),
    "Bulk": (5 * 3600.0, 12 * 3600.0),
}
"""Seconds from initiation to completion, least and most, as the service documents them."""

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)\Z")


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``5m``, ``12h``, ``1.5d`` -> seconds."""
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f"not a duration: {text!r} (e.g. 90, 5m, 12h)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_tier_delay(text: str) -> tuple[str, tuple[float, float]]:
    """``Bulk=5h-12h`` or ``Expedited=30`` -> (tier, (least, most))."""
    tier, sep, value = text.partition("=")
    if not sep or tier not in TIERS:
        raise ValueError(f"a tier delay is TIER=MIN[-MAX] with TIER one of {', '.join(TIERS)}")
    low, _, high = value.partition("-")
    least = parse_duration(low)
    most = parse_duration(high) if high else least
    if most < least:
        raise ValueError(f"tier delay {text!r}: the most is less than the least")
    return tier, (least, most)


def completion_delay(span: tuple[float, float], job_id: str) -> float:
    """A delay within ``span``, the same every time for the same job."""
    least, most = span
    return least + random.Random(job_id).random() * (most - least)
