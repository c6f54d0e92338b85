"""The account's data retrieval policy: Get and Set Data Retrieval Policy, and the
``PolicyEnforcedException`` InitiateJob answers when a request would break it.

From the service's documentation ("Glacier Data Retrieval Policies"): one policy per
account and region, one rule, its ``Strategy`` one of ``None`` (the default: every
request accepted), ``FreeTier`` (only what the daily free allowance covers) or
``BytesPerHour`` (a peak retrieval rate). A policy applies only to Standard retrievals.

How this emulator reckons them (the service does not publish its arithmetic):

* ``BytesPerHour``: a Standard job's bytes are retrieved evenly over :data:`SPREAD`
  seconds (4 hours) from its creation, as the service's rate model has it; a request is
  refused when the rate of the Standard jobs created in the last 4 hours, this one
  included, would exceed ``BytesPerHour``.
* ``FreeTier``: at most :data:`FREE_TIER_PER_DAY` bytes of Standard retrievals in any
  24 hours.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from glacierfs.emulator.records import ApiError, Job, invalid

STRATEGIES = ("None", "FreeTier", "BytesPerHour")

SPREAD = 4 * 3600.0
"""Seconds over which the service counts a Standard job's bytes as retrieved."""

FREE_TIER_PER_DAY = 10 * 10**9 // 30
"""The free allowance: 10 GB a month, a thirtieth of it a day."""

DENIED = "InitiateJob request denied by current data retrieval policy."

DEFAULT: dict[str, Any] = {"Rules": [{"Strategy": "None"}]}


def checked(body: Any) -> dict[str, Any]:
    """The policy of a Set Data Retrieval Policy body, or InvalidParameterValue."""
    policy = body.get("Policy") if isinstance(body, dict) else None
    rules = policy.get("Rules") if isinstance(policy, dict) else None
    if not isinstance(rules, list) or len(rules) != 1 or not isinstance(rules[0], dict):
        raise invalid("The policy must have exactly one rule")
    rule = rules[0]
    strategy, rate = rule.get("Strategy"), rule.get("BytesPerHour")
    if strategy not in STRATEGIES:
        raise invalid(f"Invalid data retrieval strategy: {strategy}")
    if strategy == "BytesPerHour":
        if not isinstance(rate, int) or isinstance(rate, bool) or not 1 <= rate < 2**63:
            raise invalid("BytesPerHour must be a number of bytes from 1 to 2^63-1")
        return {"Rules": [{"Strategy": strategy, "BytesPerHour": rate}]}
    if rate is not None:
        raise invalid("BytesPerHour may be given only with the BytesPerHour strategy")
    return {"Rules": [{"Strategy": strategy}]}


def job_bytes(job: Job, archive_size: int) -> int:
    if job.byte_range:
        return job.byte_range[1] - job.byte_range[0] + 1
    return archive_size


def enforce(
    policy: dict[str, Any], tier: str, size: int, earlier: Iterable[tuple[float, int]], now: float
) -> None:
    """Refuse a Standard request of ``size`` bytes at ``now`` that the policy forbids,
    given the (created, bytes) of earlier Standard archive jobs."""
    rule = policy["Rules"][0]
    if tier != "Standard" or rule["Strategy"] == "None":
        return
    if rule["Strategy"] == "FreeTier":
        window, limit, scale = 86400.0, FREE_TIER_PER_DAY, 1.0
    else:
        window, limit, scale = SPREAD, rule["BytesPerHour"], 3600.0 / SPREAD
    recent = sum(n for when, n in earlier if when > now - window)
    if (recent + size) * scale > limit:
        raise ApiError(400, "PolicyEnforcedException", DENIED)
