"""The botocore-facing client: the only module that imports botocore.

Every call is synchronous and meant to run in a worker thread. Botocore's own
retries are off: the reader and the catalog retry with their own bounded, jittered
backoff, so that they can tell a checksum mismatch from a throttle and keep one
deadline per read. Every botocore or HTTP failure leaves this module as one of the
domain errors of :mod:`glacierfs.errors`, and credentials never appear in a message.
"""

from __future__ import annotations

import functools
import http.client
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from email.utils import parsedate_to_datetime
from typing import Any

import botocore.config
import botocore.exceptions
import botocore.parsers
import botocore.session

from glacierfs import __version__
from glacierfs.answers import check_part, document, job_page, job_record, new_job_id
from glacierfs.errors import (
    BadResponse,
    ConfigError,
    CredentialsRejected,
    EndpointUnreachable,
    GlacierfsError,
    InsufficientCapacity,
    JobExpired,
    PolicyEnforced,
    ServiceError,
    Throttled,
    TransientServiceError,
)
from glacierfs.retry import PAGE_RETRY, retried_now
from glacierfs.wire import ClientSettings

log = logging.getLogger(__name__)

TRANSIENT_CODES = frozenset(
    {
        "ThrottlingException",
        "RequestTimeoutException",
        "ServiceUnavailableException",
        "SlowDown",
        "InternalFailure",
        "InternalError",
        "RequestLimitExceeded",
    }
)
CREDENTIAL_CODES = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "AccessDeniedException",
        "MissingAuthenticationTokenException",
        "ExpiredTokenException",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
    }
)


class OutputStream:
    """The body of one Get Job Output response, read into the caller's buffers.

    ``readinto`` on http.client's response under urllib3's (``raw._fp``) puts the
    socket's bytes in the caller's reusable buffer, with no fresh ``bytes`` per read.
    A body cut short fails (IncompleteRead, or an early end); :meth:`finish` checks the
    count and the end, and only then gives the connection back to the pool;
    :meth:`close` before that closes it (its unread bytes would spoil the next request).
    """

    def __init__(self, what: str, job_id: str, response: dict[str, Any], expected: int) -> None:
        checksum = response.get("checksum") or None
        description = response.get("archiveDescription")
        self.tree_hash: str | None = checksum.lower() if checksum else None
        self.description: str | None = description if isinstance(description, str) else None
        self._what, self._job_id, self._expected = what, job_id, expected
        self.first_byte: float | None = time.monotonic()  # built as the headers arrive
        self._raw = response["body"]._raw_stream  # urllib3's response
        self._fp = self._raw._fp  # http.client's
        self._received = 0
        self._released = False

    def readinto(self, view: memoryview) -> None:
        """Fill all of ``view`` with the next bytes of the body."""
        filled = 0
        with translated(self._what, self._job_id, body=True):
            while filled < len(view):
                got = self._fp.readinto(view[filled:]) if self._fp is not None else 0
                if not got:
                    raise self._short(self._received + filled)
                filled += got
        self._received += filled

    def finish(self) -> None:
        """The body was read to its end: check it has no more bytes; release the connection."""
        if self._received != self._expected:
            raise self._short(self._received)
        with translated(self._what, self._job_id, body=True):
            if self._fp is not None and not self._fp.isclosed() and self._fp.read(1):
                raise BadResponse(f"{self._what}: the body is longer than {self._expected} bytes")
            self._raw.release_conn()
        self._released = True

    def _short(self, received: int) -> TransientServiceError:
        return TransientServiceError(f"{self._what}: received {received} of {self._expected} bytes")

    def close(self) -> None:
        """Close the connection unless :meth:`finish` gave it back to the pool."""
        if not self._released:
            self._released = True
            with suppress(Exception):
                self._raw.close()


@contextmanager
def translated(what: str, job_id: str | None = None, body: bool = False) -> Iterator[None]:
    """Turn botocore's exceptions into domain errors, with ``what`` as context.

    ``body``: the call reads a streamed body, where urllib3 can leak socket errors and
    a ValueError for a body that ends early (transient); elsewhere a ValueError is
    botocore failing to parse the answer (a bad response, not worth retrying).
    """
    exc = botocore.exceptions
    try:
        yield
    except exc.ClientError as error:
        raise _from_client_error(error, what, job_id) from None
    except (exc.NoCredentialsError, exc.PartialCredentialsError) as error:
        raise ConfigError(f"no usable AWS credentials: {error}") from None
    except exc.ProfileNotFound as error:
        raise ConfigError(str(error)) from None
    except exc.NoRegionError:
        raise ConfigError("no AWS region: pass -o region=REGION") from None
    except (exc.EndpointConnectionError, exc.ConnectTimeoutError) as error:
        raise EndpointUnreachable(f"{what}: endpoint unreachable: {error}") from None
    except (
        exc.ReadTimeoutError,
        exc.ConnectionClosedError,
        exc.IncompleteReadError,
        exc.ResponseStreamingError,
        exc.HTTPClientError,
    ) as error:
        raise TransientServiceError(f"{what}: connection failed: {error}") from None
    except http.client.HTTPException as error:  # IncompleteRead: the body ended early
        raise TransientServiceError(f"{what}: connection failed: {error!r}") from None
    except botocore.parsers.ResponseParserError as error:
        raise BadResponse(f"{what}: unreadable response: {_first_line(error)}") from None
    except (OSError, ValueError) as error:
        if isinstance(error, ValueError) and not body:
            raise BadResponse(f"{what}: unreadable response: {_first_line(error)}") from None
        raise TransientServiceError(f"{what}: {type(error).__name__}: {error}") from None


def _first_line(error: BaseException) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _from_client_error(error: Any, what: str, job_id: str | None) -> GlacierfsError:
    info = error.response.get("Error", {})
    code = str(info.get("Code", "Unknown"))
    message = str(info.get("Message", "")).splitlines()[0] if info.get("Message") else ""
    status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    text = f"{what}: {code}: {message}" if message else f"{what}: {code}"
    if code == "InsufficientCapacityException":  # a 503 that retrying soon will not cure
        return InsufficientCapacity(f"{what}: no Expedited capacity now ({code})")
    if code == "PolicyEnforcedException":  # the account's retrieval policy said no
        return PolicyEnforced(f"{what}: refused by the account's data retrieval policy")
    if code == "ThrottlingException" or status == 429:
        return Throttled(text)
    if code in TRANSIENT_CODES or status >= 500 or status == 408:
        return TransientServiceError(text)
    if code in CREDENTIAL_CODES:
        return CredentialsRejected(f"the service rejected the credentials ({code})")
    if code == "ResourceNotFoundException" and job_id is not None:
        return JobExpired(f"job {job_id}: output no longer available (expired or deleted)")
    return ServiceError(text)


AS_SENT = "GlacierfsAsSent"
"""Where :func:`_as_sent` puts the answer's JSON document among botocore's parsed fields."""


def _as_sent(
    response_dict: dict[str, Any], customized_response_dict: dict[str, Any], **_: Any
) -> None:
    """botocore's ``before-parse`` hook for ListJobs and DescribeJob: keep the JSON document
    as the service sent it, and give botocore's parser an empty one.

    Why a hook, not botocore's parse: botocore converts every field of every record to its
    model's type at once, so one bad record (``ArchiveSizeInBytes: "abc"``) fails the
    whole page, and others are changed before we check them (``1.5`` becomes ``1``); see
    :mod:`glacierfs.answers`. Botocore's event system is its documented extension point,
    and the hook sees the body after botocore read it, so signing, connections and error
    answers stay botocore's: an error status is left to its parser (a ClientError), and a
    body that is not JSON leaves no document, which the caller answers with BadResponse.
    """
    if int(response_dict.get("status_code") or 500) >= 300:
        return
    try:
        customized_response_dict[AS_SENT] = document(response_dict.get("body"))
    except ValueError:
        return
    response_dict["body"] = b"{}"


class GlacierClient:
    """One vault of one account, through botocore."""

    def __init__(self, settings: ClientSettings) -> None:
        self.settings = settings
        self.service_time: float | None = None  # the Date of the latest answer
        config = botocore.config.Config(
            retries={"total_max_attempts": 1, "mode": "standard"},  # one try: we retry
            max_pool_connections=settings.connections + 2,
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            user_agent_extra=f"glacierfs/{__version__}",
        )
        region = settings.region
        if region is None and settings.endpoint_url:
            region = "us-east-1"  # a custom endpoint still needs a region to sign with
        with translated("creating the Glacier client"):
            session = botocore.session.Session(profile=settings.profile)
            self._client = session.create_client(
                "glacier", region_name=region, endpoint_url=settings.endpoint_url, config=config
            )
        for operation in ("ListJobs", "DescribeJob"):
            self._client.meta.events.register(f"before-parse.glacier.{operation}", _as_sent)

    def _call(self, operation: str, **params: Any) -> Any:
        method = getattr(self._client, operation)
        response = method(
            accountId=self.settings.account_id, vaultName=self.settings.vault, **params
        )
        self._note_date(response)
        return response

    def _note_date(self, response: Any) -> None:
        """Keep the service's clock from the answer's Date header (glacierfs reckons job
        times, expiries and daily caps by the service's clock, never by this host's)."""
        try:
            text = response["ResponseMetadata"]["HTTPHeaders"]["date"]
            self.service_time = parsedate_to_datetime(text).timestamp()
        except (KeyError, TypeError, ValueError, IndexError):
            pass

    def describe_vault(self) -> dict[str, Any]:
        """The vault's record; ConfigError when there is no such vault."""
        try:
            with translated(f"vault {self.settings.vault}"):
                return dict(self._call("describe_vault"))
        except ServiceError as error:
            if "ResourceNotFoundException" in str(error):
                raise ConfigError(
                    f"no vault named {self.settings.vault!r} in this account and region"
                ) from None
            raise

    def retrieval_policy(self) -> dict[str, Any] | None:
        """The account's data retrieval rule (``Strategy``, ``BytesPerHour``) in this
        region; None when these credentials may not read it."""
        with translated("reading the data retrieval policy"):
            try:
                response = self._client.get_data_retrieval_policy(
                    accountId=self.settings.account_id
                )
            except botocore.exceptions.ClientError as error:
                if error.response.get("Error", {}).get("Code") == "AccessDeniedException":
                    return None
                raise
        self._note_date(response)
        rules = (response.get("Policy") or {}).get("Rules")
        if not isinstance(rules, list) or not rules or not isinstance(rules[0], dict):
            return {"Strategy": "None"}
        return dict(rules[0])

    def list_jobs(self) -> list[Any]:
        """Every completed, succeeded job, following ``Marker`` page by page: the records as
        sent, each to be checked by its user (one bad record hides one job)."""
        return self._listed({"completed": "true", "statuscode": "Succeeded"})

    def list_all_jobs(self) -> list[Any]:
        """Every job the service still knows: in progress, succeeded or failed."""
        return self._listed({})

    def _listed(self, filters: dict[str, Any]) -> list[Any]:
        jobs: list[Any] = []
        marker: str | None = None
        seen: set[str] = set()
        while True:
            params: dict[str, Any] = dict(filters)
            if marker:
                params["marker"] = marker
            page = retried_now(functools.partial(self._page, params), PAGE_RETRY)
            batch, marker = job_page("listing jobs", page.get(AS_SENT))
            jobs.extend(batch)
            if not marker:
                return jobs
            if marker in seen:
                raise BadResponse("listing jobs: the service repeated a page marker")
            seen.add(marker)

    def _page(self, params: dict[str, Any]) -> Any:
        with translated("listing jobs"):
            return self._call("list_jobs", **params)

    def describe_job(self, job_id: str) -> dict[str, Any]:
        """The job's record as the service sent it (checked by the caller); BadResponse
        when the answer is no record of this job."""
        with translated(f"job {job_id}", job_id):
            answer = self._call("describe_job", jobId=job_id)
        return job_record(f"job {job_id}", answer.get(AS_SENT), job_id)

    def initiate_retrieval(
        self,
        archive_id: str,
        tier: str,
        byte_range: tuple[int, int] | None = None,
        description: str | None = None,
    ) -> str:
        """Start an archive retrieval job (this spends money); its JobId.

        ``byte_range``: bytes ``start..end`` inclusive, which the service wants megabyte
        aligned; InsufficientCapacity when Expedited has no capacity now.
        """
        params: dict[str, Any] = {
            "Type": "archive-retrieval",
            "ArchiveId": archive_id,
            "Tier": tier,
        }
        if byte_range is not None:
            params["RetrievalByteRange"] = f"{byte_range[0]}-{byte_range[1]}"
        if description:
            params["Description"] = description
        return self._initiate(f"retrieval of archive {archive_id[:16]}...", params)

    def initiate_inventory(self, fmt: str = "JSON", description: str | None = None) -> str:
        """Start an inventory retrieval job; its JobId."""
        params: dict[str, Any] = {"Type": "inventory-retrieval", "Format": fmt}
        if description:
            params["Description"] = description
        return self._initiate("inventory retrieval", params)

    def _initiate(self, what: str, params: dict[str, Any]) -> str:
        with translated(what):
            response = self._call("initiate_job", jobParameters=params)
        return new_job_id(what, response.get("jobId"))

    def open_output(self, job_id: str, start: int, end: int, total: int) -> OutputStream:
        """Bytes ``start..end`` (inclusive) of a job's output of ``total`` bytes, its body
        to be read by the caller. ``Content-Range`` and ``Content-Length`` are checked
        against the request first (a mismatch is transient, a cut connection, or
        BadResponse, a service that answered another range); the byte count as it is read.
        """
        what = f"job {job_id} bytes {start}-{end}"
        whole = start == 0 and end == total - 1
        params: dict[str, Any] = {"jobId": job_id}
        if not whole:
            params["range"] = f"bytes={start}-{end}"
        with translated(what, job_id, body=True):
            response = self._call("get_job_output", **params)
        body = response["body"]
        try:
            headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
            length = headers.get("content-length")
            sent = int(length) if length is not None and str(length).isdigit() else end - start + 1
            check_part(what, response, start, end, total, whole, sent)
            return OutputStream(what, job_id, response, end - start + 1)
        except BaseException:
            with translated(what, job_id, body=True):
                body.close()
            raise

    def get_description(self, job_id: str) -> str | None:
        """The archive's description, from the header of a one-byte Get Job Output."""
        with translated(f"job {job_id} description", job_id, body=True):
            response = self._call("get_job_output", jobId=job_id, range="bytes=0-0")
            response["body"].close()
        description = response.get("archiveDescription")
        return description if isinstance(description, str) else None

    def close(self) -> None:
        self._client.close()
