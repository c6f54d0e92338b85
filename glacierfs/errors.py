"""The domain errors of glacierfs, each knowing what it means at the edges.

``errno`` is what the FUSE layer replies when the error reaches a file operation;
``exit_code`` is what the command line exits with when it reaches ``main``. Their
messages are one line, written for the user: the CLI prints ``str(error)`` alone.
"""

from __future__ import annotations

import errno as _errno
import os as _os


class GlacierfsError(Exception):
    """Base of every error glacierfs expects and can explain."""

    errno: int = _errno.EIO
    exit_code: int = 1


class UsageError(GlacierfsError):
    """The command line or mount options are wrong."""

    exit_code = 2


class ConfigError(GlacierfsError):
    """The environment is unusable: mountpoint, cache directory, credentials."""


class CredentialsRejected(ConfigError):
    """The service refused who we are."""


class ServiceError(GlacierfsError):
    """Glacier answered with an error, or with something we cannot use."""


class TransientServiceError(ServiceError):
    """Worth retrying: throttling, 5xx, a cut connection, a short body."""


class Throttled(TransientServiceError):
    """The service said to slow down (ThrottlingException, 429): worth asking the same
    page again after a pause, where another transient failure is the caller's to retry."""


class SizeDisagreement(TransientServiceError):
    """A whole response of another length than the job's record says. Retried as a cut
    body would be; when it persists, the record and the service disagree."""

    def __init__(self, message: str, sent: int) -> None:
        super().__init__(message)
        self.sent = sent


class EndpointUnreachable(TransientServiceError):
    """No answer from the endpoint at all (connection refused, DNS, timeout)."""


class JobExpired(ServiceError):
    """The job's output is no longer downloadable (404 after its 24 hours)."""


class InsufficientCapacity(ServiceError):
    """Expedited retrievals are refused for now (InsufficientCapacityException): not
    retried, since it lasts minutes to hours; the user picks another tier or waits."""

    exit_code = 3


class PolicyEnforced(ServiceError):
    """The account's data retrieval policy refused a request (PolicyEnforcedException):
    not retried, since only time or a new policy changes the answer."""

    exit_code = 3


class BadResponse(ServiceError):
    """A response that breaks the API's contract: bad JSON, wrong sizes, ranges."""


class IntegrityError(GlacierfsError):
    """Bytes that failed their checksum, even after retries. Never served."""


class LeafUnavailable(GlacierfsError):
    """A leaf that kept vanishing between being loaded and being read (evicted, damaged)."""


class ShuttingDown(GlacierfsError):
    """The mount is ending: work in flight is dropped and no new work is started.

    ECONNABORTED is what the kernel itself answers the requests in flight when a FUSE
    connection is torn down (later calls get ENOTCONN), so a reader sees one story.
    """

    errno = _errno.ECONNABORTED


class UnverifiableRead(GlacierfsError):
    """verify=strict and no checksum covers the bytes asked for."""

    errno = _errno.EACCES


class DiskUnwritable(GlacierfsError):
    """The disk under the cache refuses writes (full, read-only, failing) where a command
    must write: not retried round after round, said in one line."""


DISK_ERRNOS = frozenset({_errno.ENOSPC, _errno.EDQUOT, _errno.EROFS, _errno.EIO})
"""What a disk says when it refuses a write: full, over quota, read-only, failing."""


def disk_error(error: OSError) -> DiskUnwritable | None:
    """The one-line error of a disk that refused a write, or None for any other OSError."""
    if error.errno not in DISK_ERRNOS:
        return None
    where = f"{error.filename}: " if error.filename else ""
    return DiskUnwritable(f"{where}{error.strerror or _os.strerror(error.errno or 0)}")


class InventoryError(GlacierfsError):
    """An inventory we cannot parse."""


class FsError(GlacierfsError):
    """A plain errno for the kernel: no such file, read-only, not a directory."""

    def __init__(self, number: int, message: str = "") -> None:
        super().__init__(message or _os.strerror(number))
        self.errno = number
