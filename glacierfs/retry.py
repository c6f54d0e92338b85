"""Bounded retries with jittered exponential backoff, on the trio loop (and, for the
pages of a listing, in the worker thread that reads them: :func:`retried_now`).

One policy for every call to the service: a transient failure (throttling, 5xx, a
cut connection, a short body, a checksum mismatch) is tried again after a delay that
doubles each time, with full jitter so that many readers throttled together do not
come back together, until either the attempts or the deadline run out. Anything
else is final at once.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import trio

from glacierfs.errors import IntegrityError, Throttled, TransientServiceError

log = logging.getLogger(__name__)

T = TypeVar("T")

RETRYABLE: tuple[type[Exception], ...] = (TransientServiceError, IntegrityError)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 8
    timeout: float = 120.0  # seconds from the first attempt
    base_delay: float = 0.2
    max_delay: float = 10.0

    def delay(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(max, base * 2^attempt)]."""
        return random.uniform(0, min(self.max_delay, self.base_delay * (2**attempt)))


PAGE_RETRY = RetryPolicy(attempts=10, base_delay=0.5, max_delay=10.0)
"""A page of a listing the service throttles (it throttles fast listers) is
asked again where the listing stopped: starting a listing of a thousand pages over
might, under a rate limit, never end."""


def retried_now(call: Callable[[], T], policy: RetryPolicy) -> T:
    """``call`` (blocking, in a worker thread) asked again while the service throttles
    it, up to ``policy.attempts`` times, sleeping the jittered delays in between. Other
    transient failures go to the caller, whose policy (the mount's ``timeout`` and
    ``retries``) bounds them: a service that answers 503 throughout must fail a start-up
    within the time the user gave, not after this policy's own pauses."""
    attempt = 0
    while True:
        try:
            return call()
        except Throttled as error:
            attempt += 1
            if attempt >= policy.attempts:
                raise
            log.debug("asked again after: %s", error)
            time.sleep(policy.delay(attempt))


async def retrying(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    what: str,
    on_retry: Callable[[Exception], None] | None = None,
) -> T:
    """Run ``call`` until it succeeds, or raise its last error."""
    deadline = trio.current_time() + policy.timeout
    attempt = 0
    while True:
        try:
            return await call()
        except RETRYABLE as error:
            attempt += 1
            delay = policy.delay(attempt)
            log.debug("%s: attempt %d failed: %s", what, attempt, error)
            if attempt >= policy.attempts or trio.current_time() + delay > deadline:
                log.error("giving up after %d attempts: %s", attempt, error)
                raise
            if on_retry is not None:
                on_retry(error)
            level = logging.WARNING if attempt == 1 else logging.DEBUG
            log.log(level, "%s; retrying (attempt %d)", error, attempt + 1)
            await trio.sleep(delay)
