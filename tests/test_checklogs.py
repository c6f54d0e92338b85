"""The log plugin (tests/support/checklogs.py): an undeclared WARNING or ERROR fails a test."""

from __future__ import annotations

import pytest

CONFTEST = 'pytest_plugins = ["tests.support.checklogs"]\n'


def outcomes(pytester: pytest.Pytester, source: str) -> dict[str, int]:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(source)
    return pytester.runpytest_inprocess("-p", "no:cacheprovider").parseoutcomes()


# The inner runs share this process's logging: what they log is declared here too.
@pytest.mark.expected_logs(r"disk on fire")
def test_an_unexpected_error_fails_the_test(pytester: pytest.Pytester) -> None:
    result = outcomes(
        pytester,
        """
import logging

def test_logs_an_error():
    logging.getLogger("glacierfs.x").error("disk on fire")

def test_logs_info_only():
    logging.getLogger("glacierfs.x").info("all is well")
""",
    )
    assert result == {"passed": 2, "errors": 1}


@pytest.mark.expected_logs(r"job not shown", r"retrying")
def test_declared_records_pass_and_counts_are_checked(pytester: pytest.Pytester) -> None:
    result = outcomes(
        pytester,
        """
import logging
import pytest

log = logging.getLogger("glacierfs.x")

@pytest.mark.expected_logs(r"job not shown")
def test_marker(): log.error("job not shown: bad id")

def test_fixture(expect_logs):
    expect_logs(r"retrying", level=logging.WARNING, count=2)
    log.warning("throttled; retrying")
    log.warning("throttled; retrying")

def test_wrong_count(expect_logs):
    expect_logs(r"retrying", count=2)
    log.warning("throttled; retrying")

def test_wrong_level(expect_logs):
    expect_logs(r"retrying", level=logging.WARNING)
    log.error("throttled; retrying")
""",
    )
    assert result == {"passed": 4, "errors": 2}
