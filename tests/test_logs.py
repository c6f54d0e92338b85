"""glacierfs.logs: no log line can be forged, and repeats are dropped as asked."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from glacierfs.logs import EscapeFilter, GoneRequestFilter, LogOnce, escape, install

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@pytest.fixture
def written() -> tuple[logging.Logger, io.StringIO]:
    """A logger writing through an escaping handler, as setup_logging arranges."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(FORMAT))
    logger = logging.Logger("glacierfs.test_logs")  # outside the hierarchy, and pytest's
    logger.addHandler(handler)
    install(logger)
    return logger, stream


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("job\nERROR forged", "job\\nERROR forged"),
        ("a\rb", "a\\rb"),
        ("\x1b[31mred", "\\x1b[31mred"),
        ("nul\0del\x7f", "nul\\x00del\\x7f"),
        ("c1 \x85 \x9b2J", "c1 \\x85 \\x9b2J"),
        ("line\u2028sep", "line\\u2028sep"),
        ("bidi\u202etxt.exe", "bidi\\u202etxt.exe"),
        ("iso\u2066late\u2069", "iso\\u2066late\\u2069"),
        ("zero\u200bwidth\ufeff", "zero\\u200bwidth\\ufeff"),
        ("para\u2029tag\U000e0041", "para\\u2029tag\\U000e0041"),
        ("undecodable \udcff", "undecodable \\udcff"),
        ("café 日本 tab\there", "café 日本 tab\\there"),
    ],
)
def test_control_characters_are_escaped_and_the_rest_kept(text: str, shown: str) -> None:
    assert escape(text) == shown


@given(st.text())
def test_no_text_leaves_a_control_character_in_an_escaped_one(text: str) -> None:
    escaped = escape(text)
    assert not any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Cs") for c in escaped)


def test_a_forged_job_id_stays_on_its_own_log_line(
    written: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = written
    forged = "abc\n2026-11-25 12:00:00,000 ERROR glacierfs: forged\x1b[2J"
    logger.info("job %s appeared", forged)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    assert lines[0].endswith(
        "job abc\\n2026-11-25 12:00:00,000 ERROR glacierfs: forged\\x1b[2J appeared"
    )


def test_a_traceback_keeps_its_lines_and_none_passes_for_a_record(
    written: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = written
    try:
        raise ValueError("bad\n2026-11-25 12:00:00,000 ERROR glacierfs: forged")
    except ValueError:
        logger.exception("unexpected error in %s", "read")
    first, *rest = stream.getvalue().rstrip("\n").split("\n")
    assert first.endswith("ERROR glacierfs.test_logs: unexpected error in read")
    assert rest[0] == "  Traceback (most recent call last):"
    assert all(line.startswith("  ") for line in rest)
    assert rest[-2:] == ["  ValueError: bad", "  2026-11-25 12:00:00,000 ERROR glacierfs: forged"]


def test_two_handlers_escape_once(written: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = written
    other = io.StringIO()
    handler = logging.StreamHandler(other)
    logger.addHandler(handler)
    install(logger)
    install(logger)  # twice: still one filter per handler
    try:
        logger.info("a\nb")
    finally:
        logger.removeHandler(handler)
    assert sum(isinstance(f, EscapeFilter) for f in handler.filters) == 1
    assert other.getvalue() == "a\\nb\n"
    assert stream.getvalue().endswith("a\\nb\n")


def test_a_bad_format_string_is_left_to_the_handler(
    written: tuple[logging.Logger, io.StringIO], capsys: pytest.CaptureFixture[str]
) -> None:
    logger, stream = written
    logger.info("%d items", "not a number")  # logging reports it on stderr, not raise
    assert "--- Logging error ---" in capsys.readouterr().err
    assert stream.getvalue() == ""


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_log_once_logs_each_key_once(caplog: pytest.LogCaptureFixture) -> None:
    once = LogOnce(logging.getLogger("glacierfs.test_logs"))
    with caplog.at_level(logging.INFO):
        for _ in range(3):
            once.info("job1", "job %s expired", "job1")
            once.info("job2", "job %s expired", "job2")
    assert [r.getMessage() for r in caplog.records] == ["job job1 expired", "job job2 expired"]
    assert caplog.records[0].funcName == "test_log_once_logs_each_key_once"


def test_log_every_is_rate_limited_per_key() -> None:
    clock = Clock()
    every = LogOnce(logging.getLogger("glacierfs.test_logs"), every=60, clock=clock)
    assert every.first("a") and every.first("b")
    clock.now = 59.0
    assert not every.first("a")
    clock.now = 60.0
    assert every.first("a") and not every.first("a")


def test_log_once_remembers_a_bounded_number_of_keys() -> None:
    once = LogOnce(logging.getLogger("glacierfs.test_logs"), capacity=3)
    assert all(once.first(key) for key in "abcd")  # "a" is forgotten: the oldest
    assert not once.first("d") and not once.first("b")
    assert once.first("a")


def test_the_daemons_logging_setup_escapes_every_line() -> None:
    """What setup_logging arranges, in a process of its own (it owns the root logger)."""
    script = (
        "import logging, sys\n"
        "from pathlib import Path\n"
        "from glacierfs.config import Options\n"
        "from glacierfs.daemon import setup_logging\n"
        "setup_logging(Options(vault='v', mountpoint=Path('/'), foreground=True))\n"
        "logging.getLogger('glacierfs.catalog').error('job %s appeared', sys.argv[1])\n"
    )
    forged = "a\n2026-11-25 12:00:00,000 ERROR glacierfs: forged\x1b[2J"
    result = subprocess.run(
        [sys.executable, "-c", script, forged], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "job a\\n2026-11-25 12:00:00,000 ERROR glacierfs: forged\\x1b[2J appeared" in lines[0]


def test_a_reply_to_a_request_the_kernel_dropped_is_not_an_error() -> None:
    gone = GoneRequestFilter()

    def record(level: int, msg: str, *args: object) -> logging.LogRecord:
        return logging.LogRecord("pyfuse3", level, __file__, 1, msg, args, None)

    dropped = record(
        logging.ERROR, "fuse_read(): fuse_reply_* failed with %s", "No such file or directory"
    )
    assert not gone.filter(dropped)  # the root logger is not at DEBUG
    assert dropped.levelno == logging.DEBUG
    other = record(logging.ERROR, "fuse_read(): fuse_reply_* failed with %s", "Invalid argument")
    assert gone.filter(other) and other.levelno == logging.ERROR
    unrelated = record(logging.ERROR, "something else: %s", "No such file or directory")
    assert gone.filter(unrelated) and unrelated.levelno == logging.ERROR
