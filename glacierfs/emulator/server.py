"""The HTTP/1.1 server and its request routing: the vault REST API, and an admin endpoint for tests.

Requests must carry a SigV4 ``Authorization`` header (its signature is not checked;
with ``--access-key`` any other key id is refused, as real credentials of another
account would be) and ``x-amz-glacier-version``. The account id is ``-`` or the
emulator's own 12-digit id.

The admin endpoint, ``/_emulator/...``, takes and answers JSON, with no credentials:

====================================  ==============================================
``GET health``                        ``{"ok": true}``
``POST seeded-archives``              ``{vault, size, seed, description}``: a seeded
                                      archive, generated on the fly; answers
                                      ``{archiveId, checksum}``
``GET archives/VAULT/ID/content``     an archive's bytes (to compare with)
``POST jobs/ID/complete|fail|expire`` end a job now (``fail`` takes ``{message}``)
``POST jobs/ID/set``                  fields that override the job's record
``GET counters`` / ``POST counters/reset``  requests and bytes, per operation, per job;
                                      faults applied, per kind
``GET requests``                      the latest requests, in the order they ended, each
                                      with its ``began`` and ``ended`` (this host's monotonic clock)
``GET|POST|DELETE faults``            list, add (see :mod:`.faults`), clear all
``DELETE faults/N``                   remove one fault
``GET clock``                         the emulated time: ``{now, iso, speed}``
``POST clock``                        ``{advance: seconds}`` jumps ahead, ``{speed: N}``
                                      runs faster from now; answers as ``GET clock``
``GET jobs``                          every job ever initiated, expired ones too,
                                      with when it was created, completed, expired
====================================  ==============================================

Every answer's ``Date`` header is the emulated time, as the service's is its own.
"""

from __future__ import annotations

import json
import re
import time
from http.server import ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from glacierfs.emulator.admin import Admin
from glacierfs.emulator.counters import Counters
from glacierfs.emulator.faults import ERRORS, Fault, Faults, RateLimit
from glacierfs.emulator.jobs import Jobs
from glacierfs.emulator.policy import checked
from glacierfs.emulator.records import ApiError, invalid, missing, not_found
from glacierfs.emulator.store import Store
from glacierfs.emulator.transfer import Nic, Transfer

CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")

ROUTES = {
    ("GET", 2, "vaults"): "ListVaults",
    ("PUT", 3, "vaults"): "CreateVault",
    ("GET", 3, "vaults"): "DescribeVault",
    ("DELETE", 3, "vaults"): "DeleteVault",
    ("POST", 4, "vaults", "archives"): "UploadArchive",
    ("DELETE", 5, "vaults", "archives"): "DeleteArchive",
    ("POST", 4, "vaults", "jobs"): "InitiateJob",
    ("GET", 4, "vaults", "jobs"): "ListJobs",
    ("GET", 5, "vaults", "jobs"): "DescribeJob",
    ("GET", 6, "vaults", "jobs", "output"): "GetJobOutput",
    ("GET", 3, "policies"): "GetDataRetrievalPolicy",
    ("PUT", 3, "policies"): "SetDataRetrievalPolicy",
}
"""Operation by (method, number of path parts, the fixed parts: 1, 3, 5)."""


class Emulator(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        store: Store,
        faults: Faults,
        *,
        access_key: str | None = None,
        latency_ms: float = 0.0,
        bandwidth: int = 0,
        list_jobs_rate: float = 0.0,
        total_bandwidth: int = 0,
    ) -> None:
        super().__init__(address, Handler)
        self.store, self.jobs, self.faults = store, Jobs(store), faults
        self.counters = Counters()
        self.access_key, self.latency_ms, self.bandwidth = access_key, latency_ms, bandwidth
        self.list_limit = RateLimit(list_jobs_rate) if list_jobs_rate > 0 else None
        self.nic = Nic(total_bandwidth) if total_bandwidth > 0 else None


class Handler(Admin, Transfer):
    """One connection's requests: routed to the API's operations or to the admin endpoint."""

    def do_GET(self) -> None:
        self._handle("GET")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.split("/")[1:]]
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        body = self._read_body()
        self._entry = {
            "operation": "Unknown",
            "job": None,
            "range": None,
            "status": 0,
            "bytes": 0,
            "began": time.monotonic(),  # this host's clock, for traces of the requests
        }
        try:
            if parts[:1] == ["_emulator"]:
                self._admin(method, parts[1:], body)
                return
            self._api(method, parts, query, body)
        except ApiError as error:
            self._error(error)
        except (KeyError, TypeError, ValueError) as error:
            if parts[:1] != ["_emulator"]:
                raise
            self._error(invalid(f"bad admin request: {error!r}"))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            if parts[:1] != ["_emulator"]:
                self.server.counters.count(self._entry)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _api(self, method: str, parts: list[str], query: dict[str, str], body: bytes) -> None:
        operation, vault, item = self._route(method, parts)
        self._entry["operation"] = operation
        if operation == "ListJobs":  # which listing: tests tell a full look from a refresh
            self._entry["query"] = query
        if operation in ("DescribeJob", "GetJobOutput"):
            self._entry["job"] = item
        self._authorise(parts[0])
        tier = _asked_tier(body) if operation == "InitiateJob" else None
        struck = self.server.faults.fire(operation, self._entry["job"], tier)
        limit = self.server.list_limit
        if operation == "ListJobs" and limit is not None and not limit.take():
            self._entry["fault"] = "throttle"
            raise ApiError(*ERRORS["throttle"])
        for fault in struck:
            if fault.kind in ERRORS:
                self._entry["fault"] = fault.kind
                raise ApiError(*ERRORS[fault.kind])
        delay = self.server.latency_ms + sum(f.ms for f in struck if f.kind == "latency")
        if delay:
            time.sleep(delay / 1000)
        self._entry["faults"] = [f.kind for f in struck]
        self._operate(operation, vault, item, query, body, struck)

    def _route(self, method: str, parts: list[str]) -> tuple[str, str, str | None]:
        shape = (method, len(parts), *(p for i, p in enumerate(parts) if i in (1, 3, 5)))
        operation = ROUTES.get(shape)  # type: ignore[arg-type]
        if operation is None:
            raise not_found(f"No such operation: {method} {self.path}")
        return operation, parts[2] if len(parts) > 2 else "", parts[4] if len(parts) > 4 else None

    def _authorise(self, account: str) -> None:
        authorization = self.headers.get("Authorization")
        if not authorization:
            raise ApiError(403, "MissingAuthenticationTokenException", "Missing Authentication")
        key = CREDENTIAL.search(authorization)
        expected = self.server.access_key
        if expected is not None and (not key or key.group(1) != expected):
            message = "The security token included in the request is invalid."
            raise ApiError(403, "UnrecognizedClientException", message)
        if account not in ("-", self.server.store.account):
            raise ApiError(403, "AccessDeniedException", f"Access denied to account {account}")
        if not self.headers.get("x-amz-glacier-version"):
            raise missing("x-amz-glacier-version")

    def _operate(
        self,
        operation: str,
        vault: str,
        item: str | None,
        query: dict[str, str],
        body: bytes,
        struck: list[Fault],
    ) -> None:
        store, jobs = self.server.store, self.server.jobs
        if operation == "GetJobOutput":
            self._job_output(jobs.job(vault, item or ""), struck)
        elif operation == "ListVaults":
            self._json(200, store.list_vaults(query.get("limit"), query.get("marker")), struck)
        elif operation == "CreateVault":
            store.create_vault(vault)
            self._json(201, None, struck, {"Location": f"/{store.account}/vaults/{vault}"})
        elif operation == "DescribeVault":
            self._json(200, store.describe_vault(vault), struck)
        elif operation == "DeleteVault":
            store.delete_vault(vault)
            self._json(204, None, struck)
        elif operation == "UploadArchive":
            self._upload(vault, body)
        elif operation == "DeleteArchive":
            store.delete_archive(vault, item or "")
            self._json(204, None, struck)
        elif operation == "InitiateJob":
            self._initiate(vault, body)
        elif operation == "ListJobs":
            args = (query.get(k) for k in ("completed", "statuscode", "limit", "marker"))
            self._json(200, jobs.list_jobs(vault, *args), struck)
        elif operation == "DescribeJob":
            self._json(200, jobs.describe(jobs.job(vault, item or "")), struck)
        else:
            self._policy(operation, vault, body, struck)

    def _policy(self, operation: str, name: str, body: bytes, struck: list[Fault]) -> None:
        """Get and Set Data Retrieval Policy (``/ACCOUNT/policies/data-retrieval``)."""
        store = self.server.store
        if name != "data-retrieval":
            raise not_found(f"No such policy: {name}")
        if operation == "GetDataRetrievalPolicy":
            self._json(200, {"Policy": store.policy}, struck)
            return
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            raise invalid("The request body is not JSON") from None
        with store.lock:
            store.policy = checked(payload)
            store.save()
        self._json(204, None, struck)

    def _upload(self, vault: str, body: bytes) -> None:
        store = self.server.store
        archive = store.upload(
            vault,
            body,
            self.headers.get("x-amz-archive-description") or "",
            self.headers.get("x-amz-sha256-tree-hash"),
        )
        location = f"/{store.account}/vaults/{vault}/archives/{archive.archive_id}"
        headers = {
            "Location": location,
            "x-amz-archive-id": archive.archive_id,
            "x-amz-sha256-tree-hash": archive.tree_hash,
        }
        self._json(201, None, [], headers)

    def _initiate(self, vault: str, body: bytes) -> None:
        try:
            params = json.loads(body or b"{}")
        except ValueError:
            raise invalid("The request body is not JSON") from None
        if not isinstance(params, dict):
            raise invalid("The job parameters are not a JSON object")
        store = self.server.store
        self._entry.update(archive=params.get("ArchiveId"), tier=params.get("Tier"))
        job = self.server.jobs.initiate(vault, params)
        self._entry["initiated"] = job.job_id
        headers = {
            "Location": f"/{store.account}/vaults/{vault}/jobs/{job.job_id}",
            "x-amz-job-id": job.job_id,
        }
        self._json(202, None, [], headers)


def _asked_tier(body: bytes) -> str | None:
    """The Tier an InitiateJob body asks for (Standard when it names none)."""
    try:
        params = json.loads(body or b"{}")
    except ValueError:
        return None
    if not isinstance(params, dict):
        return None
    tier = params.get("Tier") or "Standard"
    return tier if isinstance(tier, str) else None
