"""The words a user acts on: counts that agree with their nouns, a plan that says when there
is nothing to do, transfer costs with the free allowance, one prefix per error."""

from __future__ import annotations

import subprocess
import sys

from glacierfs.humane import plural
from glacierfs.retrieve.pricing import GB, TRANSFER_OUT_PER_GB, transfer_cost
from tests.support.mount import isolated_env


def test_counts_agree_with_their_nouns() -> None:
    assert plural(1, "archive") == "1 archive"
    assert plural(0, "job") == "0 jobs"
    assert plural(2, "Bulk job") == "2 Bulk jobs"
    assert plural(12345, "archive") == "12,345 archives"
    assert plural(3, "copy", "copies") == "3 copies"


def test_transfer_out_takes_off_the_free_hundred_gb() -> None:
    assert transfer_cost(50 * GB) == 0.0
    assert transfer_cost(100 * GB) == 0.0
    assert transfer_cost(150 * GB) == 50 * TRANSFER_OUT_PER_GB


def test_a_usage_error_is_one_line_with_one_prefix() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "glacierfs", "retrieve", "myvault"],
        capture_output=True,
        text=True,
        env=isolated_env(),
        timeout=60,
    )
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("glacierfs retrieve: say what to retrieve")
    assert "retrieve: retrieve:" not in result.stderr


def test_retrieve_help_shows_its_defaults() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "glacierfs", "retrieve", "--help"],
        capture_output=True,
        text=True,
        env=isolated_env(),
        timeout=60,
    )
    text = " ".join(result.stdout.split())
    assert result.returncode == 0
    assert "(default: Bulk)" in text and "--in-region" in text
    assert "--max-bytes-per-day SIZE requested in any 24 hours (default:" in text
