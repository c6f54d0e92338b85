"""The emulator's clock: wall time by default, faster or pushed ahead for tests.

Everything the emulator dates (jobs created, completed and expired, archives, the
``Date`` header of every answer) reads this clock, so a test that runs it at
``--clock-speed 3600`` or advances it through ``POST /_emulator/clock`` sees a
12-hour Bulk job complete and a 24-hour expiry pass in seconds, while glacierfs
reads time only from the service's answers, as it would from the real one.
"""

from __future__ import annotations

import threading
import time


class Clock:
    """Emulated POSIX time: ``start + (elapsed wall time) x speed + advanced``."""

    def __init__(self, speed: float = 1.0, start: float | None = None) -> None:
        if not speed > 0:
            raise ValueError("the clock speed must be positive")
        self._lock = threading.Lock()
        self.speed = speed
        self._origin = time.time() if start is None else start
        self._wall = time.monotonic()
        self._advanced = 0.0

    def now(self) -> float:
        with self._lock:
            return self._origin + (time.monotonic() - self._wall) * self.speed + self._advanced

    def advance(self, seconds: float) -> float:
        """Jump ahead (never back: time that passed stays passed); the new time."""
        if not seconds >= 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._advanced += seconds
        return self.now()

    def set_speed(self, speed: float) -> None:
        """Run at ``speed`` from now on, without a jump."""
        if not speed > 0:
            raise ValueError("the clock speed must be positive")
        now = self.now()
        with self._lock:
            self.speed, self._origin, self._wall, self._advanced = speed, now, time.monotonic(), 0.0
