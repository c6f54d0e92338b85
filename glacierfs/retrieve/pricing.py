"""What a retrieval costs and how long it takes, per tier: one dated table. Pure code.

Prices change, and differ by region: the table says where and when it was read, the
plan prints that date beside every estimate, and ``--price-per-gb`` and
``--price-per-1000`` replace the chosen tier's figures (take them from the pricing page
of your vault's region). Estimates cover retrieval only; data transfer out of AWS is
printed apart, as it does not apply to a host inside the region.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

PRICES_DATE = "2025-06-01"
PRICES_WHERE = "S3 Glacier vaults, US East (N. Virginia), aws.amazon.com/s3/glacier/pricing"

GB = 1 << 30
"""AWS bills retrieval per GB of 2^30 bytes."""

HOUR = 3600.0


@dataclass(frozen=True)
class TierPrice:
    """One tier: dollars per GB retrieved and per 1,000 jobs, and when outputs are ready."""

    tier: str
    per_gb: float
    per_thousand_requests: float
    ready: tuple[float, float]  # seconds from initiation, typical least and most


PRICES: dict[str, TierPrice] = {
    "Expedited": TierPrice("Expedited", 0.03, 10.00, (60.0, 300.0)),
    "Standard": TierPrice("Standard", 0.01, 0.05, (3 * HOUR, 5 * HOUR)),
    "Bulk": TierPrice("Bulk", 0.0025, 0.025, (5 * HOUR, 12 * HOUR)),
}
"""The vault API's retrieval prices and the documented typical completion times."""

TIERS = tuple(PRICES)

TRANSFER_OUT_PER_GB = 0.09
"""Data transfer out to the internet, first 10 TB a month (free within the region)."""

FREE_TRANSFER_GB = 100
"""GB a month of transfer out to the internet that AWS does not charge, across the whole
account (since December 2021): an estimate cannot know how much of it is used elsewhere,
so it is taken off one plan and said in words."""


def price(tier: str, per_gb: float | None = None, per_thousand: float | None = None) -> TierPrice:
    """The tier's price, with the user's figures where given."""
    base = PRICES[tier]
    if per_gb is not None:
        base = replace(base, per_gb=per_gb)
    if per_thousand is not None:
        base = replace(base, per_thousand_requests=per_thousand)
    return base


def cost(tier: TierPrice, nbytes: int, requests: int) -> float:
    """Dollars for retrieving ``nbytes`` in ``requests`` jobs."""
    return nbytes / GB * tier.per_gb + requests / 1000 * tier.per_thousand_requests


def transfer_cost(nbytes: int) -> float:
    """Dollars to carry ``nbytes`` out to the internet, after the free allowance."""
    return max(nbytes / GB - FREE_TRANSFER_GB, 0.0) * TRANSFER_OUT_PER_GB


def dollars(amount: float) -> str:
    """``$0.0123``, ``$12.34``: cents where they matter, more digits where they do not."""
    return f"${amount:,.2f}" if amount >= 1 else f"${amount:.4f}"


def duration(seconds: float) -> str:
    """``3 min``, ``5 h``, ``2.5 d``."""
    if seconds < HOUR:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * HOUR:
        return f"{seconds / HOUR:.0f} h"
    return f"{seconds / 86400:.1f} d"
