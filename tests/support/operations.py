"""Counting the work a pure function does, so a test can check how it grows, not its time.

:func:`operations` runs a call under :func:`sys.settrace` and counts the Python lines it
executes (in every function it calls); past ``limit`` it stops the call with
:class:`TooMuchWork`, so a test of code that would walk 40 million leaves fails at once
instead of hanging.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import FrameType
from typing import Any, TypeVar

T = TypeVar("T")


class TooMuchWork(AssertionError):
    pass


def operations(call: Callable[[], T], limit: int = 200_000) -> tuple[int, T]:
    """(lines of Python executed by ``call()``, its result)."""
    count = 0

    def trace(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal count
        if event == "line":
            count += 1
            if count > limit:
                raise TooMuchWork(f"more than {limit} lines of Python")
        return trace

    previous = sys.gettrace()
    sys.settrace(trace)
    try:
        result = call()
    finally:
        sys.settrace(previous)
    return count, result
