"""The account's data retrieval policy, as ``retrieve`` paces within it. Pure code.

The service holds one policy per account and region (GetDataRetrievalPolicy), one rule:
``None`` (no limit), ``FreeTier`` (only what the daily free allowance covers) or
``BytesPerHour`` (a peak retrieval rate). It applies to Standard retrievals only. A
request that would break it fails with ``PolicyEnforcedException``, which ends the batch
(:class:`glacierfs.errors.PolicyEnforced`): asking again at once gets the same answer.

So ``retrieve`` reads the policy before it plans (when the credentials may: reading it
needs ``glacier:GetDataRetrievalPolicy``), prints it, and for Standard retrievals paces
within it: at most ``BytesPerHour`` requested in any hour, at most the free allowance in
any 24 hours under ``FreeTier``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from glacierfs.humane import size

FREE_TIER_PER_DAY = 10 * 10**9 // 30
"""The free retrieval allowance as this module reckons it: 10 GB a month, a thirtieth of
it a day (the service's own count may differ a little: it is its to make)."""

WHAT_TO_DO = (
    "wait for the policy's window to pass, or change the policy "
    "(aws glacier set-data-retrieval-policy), then run again"
)


@dataclass(frozen=True)
class RetrievalPolicy:
    strategy: str | None  # None, FreeTier, BytesPerHour; None: not readable
    bytes_per_hour: int | None = None

    @classmethod
    def from_rule(cls, rule: dict[str, Any] | None) -> RetrievalPolicy:
        """From the service's rule; an unreadable policy is ``strategy=None``."""
        if rule is None:
            return cls(None)
        strategy = str(rule.get("Strategy") or "None")
        rate = rule.get("BytesPerHour")
        if strategy == "BytesPerHour" and isinstance(rate, int) and rate > 0:
            return cls(strategy, rate)
        return cls(strategy if strategy in ("None", "FreeTier") else "None")

    def words(self) -> str:
        """The policy in a few words, for the plan and for errors."""
        if self.strategy is None:
            return (
                "not readable with these credentials (glacier:GetDataRetrievalPolicy): "
                "paced by the caps alone"
            )
        if self.strategy == "FreeTier":
            return (
                f"FreeTier: Standard retrievals within the free allowance, about "
                f"{size(FREE_TIER_PER_DAY)} a day (10 GB a month)"
            )
        if self.strategy == "BytesPerHour":
            return f"BytesPerHour: at most {size(self.bytes_per_hour or 0)} an hour of Standard"
        return "None: no retrieval limit"

    def per_hour(self, tier: str) -> int | None:
        """Bytes a run may request in an hour at ``tier``; None: no such limit."""
        return self.bytes_per_hour if tier == "Standard" else None

    def per_day(self, tier: str) -> int | None:
        """Bytes a run may request in 24 hours at ``tier``; None: no such limit."""
        return FREE_TIER_PER_DAY if tier == "Standard" and self.strategy == "FreeTier" else None

    def refusal(self, what: str) -> str:
        """One line for a PolicyEnforcedException: what was refused, the policy, what to do."""
        return (
            f"{what}: refused by the account's data retrieval policy "
            f"({self.words()}); nothing more is requested in this run: {WHAT_TO_DO}"
        )
