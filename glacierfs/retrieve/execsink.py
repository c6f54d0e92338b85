"""``--deliver-exec CMD [ARG...]``: a command per archive, its bytes on standard input.

The command runs with no shell (its words are the user's, as given), with the archive's
path under ``archives/`` in ``GLACIERFS_PATH`` and in place of ``{}`` in its arguments
(an ARG that is exactly ``{}``, or one like ``s3://bucket/{}``), so that
``--deliver-exec aws s3 cp - s3://bucket/{}`` or ``rclone rcat remote:bucket/{}`` carry
the vault to object storage. A path never reaches the command where it could read it
as an option: in an argument that starts with ``{}``, a path that starts with ``-`` is
given as ``./-...``.

Exit 0 after reading every byte is delivered. Any other exit, or a command that stops
reading early, is a failure, reported in one line and tried again later with a backoff
(:func:`backoff`), held with the delivery state so that a restart does not hammer it.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

PATH_ENV = "GLACIERFS_PATH"
PLACEHOLDER = "{}"

FIRST_RETRY = 30.0
"""Seconds before a command that failed is tried again; doubled at each failure."""

LAST_RETRY = 3600.0
"""The longest wait between tries of one archive."""


def backoff(failures: int) -> float:
    """Seconds to wait after the ``failures``-th failure in a row."""
    return float(min(FIRST_RETRY * 2 ** max(failures - 1, 0), LAST_RETRY))


def fill(word: str, path: str) -> str:
    """``word`` with the path in place of each ``{}``, never starting with ``-``."""
    if PLACEHOLDER not in word:
        return word
    if word.startswith(PLACEHOLDER) and path.startswith("-"):
        path = f"./{path}"
    return word.replace(PLACEHOLDER, path)


@dataclass(frozen=True)
class Outcome:
    ok: bool
    why: str = ""


class ExecSink:
    """The user's command, run once per archive."""

    def __init__(self, argv: Sequence[str]) -> None:
        if not argv:
            raise ValueError("--deliver-exec needs a command")
        self.argv = list(argv)

    def describe(self) -> str:
        return " ".join(self.argv)

    def run(self, path: str, leaves: Iterable[bytes]) -> Outcome:
        """Run the command with the archive's bytes; an exception from ``leaves`` (a leaf
        that failed its check) kills it and goes up: nothing is delivered."""
        argv = [fill(a, path) for a in self.argv]
        env = {**os.environ, PATH_ENV: path}
        try:
            process = subprocess.Popen(argv, stdin=subprocess.PIPE, env=env, close_fds=True)
        except OSError as error:
            return Outcome(False, f"{self.argv[0]}: {error.strerror}")
        assert process.stdin is not None
        cut = False
        try:
            for leaf in leaves:
                try:
                    process.stdin.write(leaf)
                except BrokenPipeError:
                    cut = True
                    break
            try:
                process.stdin.close()
            except BrokenPipeError:
                cut = True
        except BaseException:
            process.kill()
            process.wait()
            raise
        code = process.wait()
        if code != 0:
            return Outcome(False, f"{self.argv[0]} exited with {_status(code)}")
        if cut:
            return Outcome(False, f"{self.argv[0]} exited 0 without reading every byte")
        return Outcome(True)


def _status(code: int) -> str:
    return f"signal {-code}" if code < 0 else f"status {code}"
