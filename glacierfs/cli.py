"""The ``glacierfs`` command: mount, ``hydrate``, ``status``, ``retrieve``, ``deliver`` and
``release``.

Imports are lazy so that ``--help`` and ``--version`` answer at once. Every error
glacierfs expects ends here as one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from glacierfs import __version__
from glacierfs.config import HELP
from glacierfs.errors import GlacierfsError, disk_error
from glacierfs.logs import escape
from glacierfs.options import parse_mount_args


def run(argv: Sequence[str]) -> int:
    if argv and argv[0] == "retrieve":
        from glacierfs.retrieve import command as retrieve

        return retrieve.main(argv[1:])
    if argv and argv[0] == "deliver":
        from glacierfs.retrieve import deliver_command

        return deliver_command.main(argv[1:])
    if argv and argv[0] == "release":
        from glacierfs import release

        return release.main(argv[1:])
    if argv and argv[0] in ("hydrate", "status"):
        from glacierfs import control

        return control.main(argv[0], argv[1:])
    command = parse_mount_args(argv)
    if command.name == "help":
        print(HELP, end="")
        return 0
    if command.name == "version":
        print(f"glacierfs {__version__}")
        return 0
    assert command.options is not None
    from glacierfs.daemon import mount

    return mount(command.options)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except GlacierfsError as error:
        print(f"glacierfs: {escape(str(error))}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `glacierfs status --json | head`: the reader has had enough
        _silence_stdout()
        return SIGPIPE_EXIT
    except OSError as error:  # a disk that refused a write, wherever: one line
        said = disk_error(error)
        if said is None:
            raise
        print(f"glacierfs: {said}", file=sys.stderr)
        return said.exit_code


SIGPIPE_EXIT = 141
"""What a shell reports for a command ended by SIGPIPE, as ``yes | head`` ends ``yes``."""


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush at exit finds no
    closed pipe to complain about (Python's documented recipe for SIGPIPE)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
