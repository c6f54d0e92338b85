"""A pytest plugin: a test that logs an unexpected WARNING or ERROR fails.

It watches the test process only: the daemon and the emulator run as child processes,
and the tests that mount read their logs themselves. A warning nobody declared is a
bug or a missing declaration, so the test fails (at teardown) and names the records.
Expected records are declared, for the whole test, with the marker::

    @pytest.mark.expected_logs(r"job not shown: .*JobId")

or, to give a level or an exact count, with the fixture::

    def test_x(expect_logs):
        expect_logs(r"checksum mismatch", level=logging.WARNING, count=2)

Patterns are regular expressions searched in each record's final message.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

MARKER = "expected_logs"


@dataclass
class Expected:
    pattern: re.Pattern[str]
    level: int | None  # None: any level
    count: int | None  # None: any number, none included
    seen: int = 0

    def matches(self, record: logging.LogRecord) -> bool:
        if self.level is not None and record.levelno != self.level:
            return False
        return self.pattern.search(record.getMessage()) is not None


_expected_key = pytest.StashKey[list[Expected]]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{MARKER}(*patterns): WARNING or ERROR log records this test may emit"
    )


@pytest.fixture
def expect_logs(request: pytest.FixtureRequest) -> Callable[..., None]:
    """Declare log records this test emits: ``expect_logs(pattern, level=, count=)``."""

    def declare(pattern: str, level: int | None = None, count: int | None = None) -> None:
        request.node.stash[_expected_key].append(Expected(re.compile(pattern), level, count))

    return declare


@pytest.fixture(autouse=True)
def _check_logs(request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    # Autouse: set up before, and torn down after, the fixtures a test asks for, so
    # that what they log is checked too.
    expected = [
        Expected(re.compile(pattern), None, None)
        for mark in request.node.iter_markers(MARKER)
        for pattern in mark.args
    ]
    request.node.stash[_expected_key] = expected
    yield
    records = [r for when in ("setup", "call", "teardown") for r in caplog.get_records(when)]
    unexpected = []
    for record in records:
        matched = [e for e in expected if e.matches(record)]
        for declared in matched:
            declared.seen += 1
        if not matched and record.levelno >= logging.WARNING:
            unexpected.append(f"{record.levelname} {record.name}: {record.getMessage()}")
    problems = [f"unexpected log record: {line}" for line in unexpected]
    problems += [
        f"expected {e.count} log records matching {e.pattern.pattern!r}, saw {e.seen}"
        for e in expected
        if e.count is not None and e.count != e.seen
    ]
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)
