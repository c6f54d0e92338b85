"""Two rules for everything glacierfs logs: no forged lines, and no floods.

* Text from the service (JobIds, ArchiveIds, descriptions, error messages) and from
  the kernel (file names) ends up in log lines. :class:`EscapeFilter`, installed on
  every handler by :func:`install`, escapes control, format and separator characters
  in each record's final message (``\\n``, ``\\x1b``, ``\\u202e``...), so no string can
  end a line, start a new one that looks like a record, drive a terminal or reorder
  what is shown; a traceback keeps its line breaks, each
  of its lines indented so that it cannot pass for a record either. Escaping
  happens in one place, on the final text, so no call site can forget it.
* :class:`LogOnce` decides which repeats of a message reach the log: each key once
  per mount (a job that is gone stays gone), or at most once per ``every`` seconds (a
  ``cp`` of a failing file is one line, not one per block). The state belongs to its
  owner, bounded, so tests and mounts do not share it.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Hashable

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


class _EscapeTable(dict[int, str | int]):
    """``str.translate``'s table: every character that could forge or hide text, escaped.

    Control characters (Unicode category Cc) end lines and drive terminals; format
    characters (Cf: bidi overrides and isolates, zero-width spaces, U+FEFF) reorder or
    hide what a reader sees; line and paragraph separators (Zl, Zp) end lines in some
    viewers; lone surrogates (Cs: undecodable bytes) cannot be written as UTF-8. The
    category of a code point is looked up the first time it is met and kept (up to
    :data:`_KEPT` of them), so the table costs nothing at import and stays small.
    """

    def __missing__(self, code: int) -> str | int:
        char = chr(code)
        if code < 0x100 and unicodedata.category(char) == "Cc":
            value: str | int = _NAMED.get(char, f"\\x{code:02x}")
        elif unicodedata.category(char) in ESCAPED_CATEGORIES:
            value = f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"
        else:
            value = code  # itself
        if len(self) < _KEPT:
            self[code] = value
        return value


_KEPT = 1 << 16
ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
_TABLE = _EscapeTable()
_CONTINUATION = "  "


def escape(text: str) -> str:
    """``text`` on one line, with every character that could forge or hide text (see
    :class:`_EscapeTable`) written as an escape."""
    return text.translate(_TABLE)


def _block(text: str) -> str:
    """A multi-line text that follows a message (a traceback): its own line breaks kept,
    each line escaped and indented, so that none can pass for a record."""
    return "\n".join(_CONTINUATION + escape(line) for line in text.split("\n"))


class EscapeFilter(logging.Filter):
    """Rewrites each record's message (and traceback) into its escaped, final text."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "glacierfs_escaped", False):
            return True  # already done by another handler's filter
        try:
            message = record.getMessage()
        except (TypeError, ValueError, KeyError, IndexError):
            return True  # a bad format string: the handler reports it as usual
        record.msg, record.args = escape(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = _block(record.exc_text)
        if record.stack_info:
            record.stack_info = _block(record.stack_info)
        record.glacierfs_escaped = True
        return True


class GoneRequestFilter(logging.Filter):
    """pyfuse3 logs an ERROR when a reply finds its request gone from the kernel (ENOENT:
    the reader was interrupted, or the kernel dropped the request). libfuse ignores that
    case; so do we, at DEBUG: nothing went wrong in the daemon, and the reader has its
    answer (EINTR) already."""

    def filter(self, record: logging.LogRecord) -> bool:
        gone = record.args == (os.strerror(errno.ENOENT),)
        if record.levelno >= logging.ERROR and gone and "fuse_reply_" in str(record.msg):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger().isEnabledFor(logging.DEBUG)
        return True


def install(logger: logging.Logger | None = None) -> None:
    """Escape what every handler of ``logger`` (default: the root logger) writes, and
    quiet pyfuse3's report of replies to requests the kernel no longer has."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, EscapeFilter) for f in handler.filters):
            handler.addFilter(EscapeFilter())
    fuse = logging.getLogger("pyfuse3")
    if not any(isinstance(f, GoneRequestFilter) for f in fuse.filters):
        fuse.addFilter(GoneRequestFilter())


class LogOnce:
    """Logs a message the first time its key is seen, or once per ``every`` seconds.

    ``LogOnce(log)`` logs each key once; ``LogOnce(log, every=60)`` at most once a
    minute per key. At most ``capacity`` keys are remembered (the oldest are forgotten
    first), so a stream of distinct keys costs bounded memory.
    """

    def __init__(
        self,
        logger: logging.Logger,
        every: float | None = None,
        capacity: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger, self._every, self._capacity, self._clock = logger, every, capacity, clock
        self._seen: OrderedDict[Hashable, float] = OrderedDict()
        self._lock = threading.Lock()

    def first(self, key: Hashable) -> bool:
        """True when a message with this key is due now (and counts it as logged)."""
        now = self._clock()
        with self._lock:
            last = self._seen.get(key)
            if last is not None and (self._every is None or now - last < self._every):
                return False
            self._seen[key] = now
            self._seen.move_to_end(key)
            while len(self._seen) > self._capacity:
                self._seen.popitem(last=False)
            return True

    def log(self, level: int, key: Hashable, msg: str, *args: object) -> bool:
        """Log ``msg % args`` if this key is due; True when it was logged."""
        return self._emit(level, key, msg, args)

    def error(self, key: Hashable, msg: str, *args: object) -> bool:
        return self._emit(logging.ERROR, key, msg, args)

    def warning(self, key: Hashable, msg: str, *args: object) -> bool:
        return self._emit(logging.WARNING, key, msg, args)

    def info(self, key: Hashable, msg: str, *args: object) -> bool:
        return self._emit(logging.INFO, key, msg, args)

    def _emit(self, level: int, key: Hashable, msg: str, args: tuple[object, ...]) -> bool:
        if not self.first(key):
            return False
        self._logger.log(level, msg, *args, stacklevel=3)  # the record names our caller
        return True
