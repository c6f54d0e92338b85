"""The HTTP/1.1 server: the vault REST API, and an admin endpoint for tests.

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
``GET requests``                      the latest requests, oldest first
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

import collections
import email.utils
import json
import logging
import re
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from glacierfs.emulator.faults import BAD_JSON, ERRORS, Fault, Faults, parse_fault
from glacierfs.emulator.store import ApiError, Output, Store, invalid, iso, missing, not_found

log = logging.getLogger("glacierfs.emulator")

CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")
BYTE_RANGE = re.compile(r"bytes=(\d+)-(\d*)\Z")
PACE_CHUNK = 64 * 1024


def _applied(entry: dict[str, Any]) -> list[str]:
    """The faults that acted on a request: an error answer's own, or every one that struck
    an answer that did not fail for another reason (a job not found has no body to cut)."""
    if entry.get("fault"):
        return [entry["fault"]]
    return [] if entry.get("error") else list(entry.get("faults", []))


class Counters:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.requests, self.bytes = 0, 0
            self.operations: dict[str, dict[str, int]] = {}
            self.jobs: dict[str, dict[str, int]] = {}
            self.faults: dict[str, int] = {}
            self.log: collections.deque[dict[str, Any]] = collections.deque(maxlen=100_000)

    def count(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self.requests += 1
            self.bytes += entry["bytes"]
            self.log.append(entry)
            operation = self.operations.setdefault(entry["operation"], {"requests": 0, "bytes": 0})
            operation["requests"] += 1
            operation["bytes"] += entry["bytes"]
            if entry.get("job"):  # a job's bytes are those of its output only
                job = self.jobs.setdefault(entry["job"], {"requests": 0, "bytes": 0})
                job["requests"] += 1
                if entry["operation"] == "GetJobOutput":
                    job["bytes"] += entry["bytes"]
            for kind in _applied(entry):
                self.faults[kind] = self.faults.get(kind, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return json.loads(
                json.dumps(
                    {
                        "requests": self.requests,
                        "bytes": self.bytes,
                        "operations": self.operations,
                        "jobs": self.jobs,
                        "faults": self.faults,
                    }
                )
            )


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
    ) -> None:
        super().__init__(address, Handler)
        self.store, self.faults, self.counters = store, faults, Counters()
        self.access_key, self.latency_ms, self.bandwidth = access_key, latency_ms, bandwidth


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Emulator

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def date_time_string(self, timestamp: float | None = None) -> str:
        moment = self.server.store.clock.now() if timestamp is None else timestamp
        return email.utils.formatdate(moment, usegmt=True)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    # dispatch

    def _handle(self, method: str) -> None:
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.split("/")[1:]]
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        body = self._read_body()
        self._entry: dict[str, Any] = {
            "operation": "Unknown",
            "job": None,
            "range": None,
            "status": 0,
            "bytes": 0,
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
        route = self._route(method, parts)
        operation, vault, item = route
        self._entry["operation"] = operation
        if operation == "ListJobs":  # which listing: tests tell a full look from a refresh
            self._entry["query"] = query
        if operation in ("DescribeJob", "GetJobOutput"):
            self._entry["job"] = item
        self._authorise(parts[0])
        tier = _asked_tier(body) if operation == "InitiateJob" else None
        struck = self.server.faults.fire(operation, self._entry["job"], tier)
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
        routes = {
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
        }
        operation = routes.get(shape)  # type: ignore[arg-type]
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
        store = self.server.store
        if operation == "GetJobOutput":
            self._job_output(store.job(vault, item or ""), struck)
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
            self._json(200, store.list_jobs(vault, *args), struck)
        elif operation == "DescribeJob":
            self._json(200, store.describe(store.job(vault, item or "")), struck)

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
        job = store.initiate(vault, params)
        self._entry["initiated"] = job.job_id
        headers = {
            "Location": f"/{store.account}/vaults/{vault}/jobs/{job.job_id}",
            "x-amz-job-id": job.job_id,
        }
        self._json(202, None, [], headers)

    # answers

    def _json(
        self,
        status: int,
        document: Any,
        struck: list[Fault],
        headers: dict[str, str] | None = None,
    ) -> None:
        data = b"" if document is None else json.dumps(document).encode()
        if data and any(f.kind == BAD_JSON for f in struck):
            data = data[: len(data) // 2]
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if data:
            self.send_header("Content-Type", "application/json")
        self._finish_headers(len(data))
        self.wfile.write(data)
        self._entry.update(status=status, bytes=len(data))

    def _error(self, error: ApiError) -> None:
        document = {"code": error.code, "message": error.message, "type": error.type}
        self._json(error.status, document, [])
        self._entry.update(bytes=0, error=error.code)  # an error serves no output bytes

    def _finish_headers(self, length: int) -> None:
        self.send_header("Content-Length", str(length))
        self.send_header("x-amzn-RequestId", f"{time.monotonic_ns():x}")
        self.end_headers()

    def _job_output(self, job: Any, struck: list[Fault]) -> None:
        output = self.server.store.output(job)
        total = output.source.size
        start, end, partial = self._requested(total)
        self._entry["range"] = f"{start}-{end}"
        self.send_response(206 if partial else 200)
        self.send_header("Content-Type", output.content_type)
        self.send_header("Accept-Ranges", "bytes")
        if partial:
            shift = 1 if any(f.kind == "bad-content-range" for f in struck) else 0
            self.send_header("Content-Range", f"bytes {start + shift}-{end + shift}/{total}")
        checksum = output.tree_hash(start, end)
        if checksum is not None and not any(f.kind == "drop-checksum" for f in struck):
            self.send_header("x-amz-sha256-tree-hash", checksum)
        if output.description is not None:
            self.send_header("x-amz-archive-description", output.description)
        self._finish_headers(end - start + 1)
        self._entry["status"] = 206 if partial else 200
        self._stream(output, start, end + 1, struck)

    def _requested(self, total: int) -> tuple[int, int, bool]:
        header = self.headers.get("Range")
        if header is None:
            return 0, total - 1, False
        match = BYTE_RANGE.match(header.strip())
        if not match:
            raise invalid(f"The requested range is not valid: {header}")
        start = int(match.group(1))
        end = int(match.group(2)) if match.group(2) else total - 1
        if start > end or end >= total:
            raise invalid(f"The requested range {header} is not within the output of {total} bytes")
        return start, end, True

    def _stream(self, output: Output, start: int, end: int, struck: list[Fault]) -> None:
        length = end - start
        body_faults = {f.kind: f for f in struck if f.kind in ("reset", "short", "flip", "stall")}
        strikes = {
            kind: min(fault.at if fault.at is not None else length // 2, max(length - 1, 0))
            for kind, fault in body_faults.items()
        }
        caps = [self.server.bandwidth] + [f.bps for f in struck if f.kind == "bandwidth"]
        pace = min((c for c in caps if c > 0), default=0)
        sent, began = 0, time.monotonic()
        for chunk in output.source.chunks(start, end):
            piece = memoryview(chunk)
            for kind, at in sorted(strikes.items(), key=lambda item: item[1]):
                if not sent <= at < sent + len(piece):
                    continue
                if kind == "flip":
                    flipped = bytearray(piece)
                    flipped[at - sent] ^= 0xFF
                    piece = memoryview(bytes(flipped))
                elif kind == "stall":
                    self._write(piece[: at - sent], pace, began, sent)
                    sent, piece = at, piece[at - sent :]
                    time.sleep(body_faults["stall"].ms / 1000)
                else:
                    self._write(piece[: at - sent], pace, began, sent)
                    self._entry["bytes"] = at
                    self._cut(reset=kind == "reset")
                    return
            sent = self._write(piece, pace, began, sent)
            self._entry["bytes"] = sent

    def _write(self, piece: memoryview, pace: int, began: float, sent: int) -> int:
        if not pace:
            self.wfile.write(piece)
            return sent + len(piece)
        for offset in range(0, len(piece), PACE_CHUNK):
            part = piece[offset : offset + PACE_CHUNK]
            self.wfile.write(part)
            sent += len(part)
            ahead = sent / pace - (time.monotonic() - began)
            if ahead > 0:
                time.sleep(ahead)
        return sent

    def _cut(self, reset: bool) -> None:
        self.close_connection = True
        if reset:  # SO_LINGER 0: close sends RST instead of FIN
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()

    # admin

    def _admin(self, method: str, parts: list[str], body: bytes) -> None:
        try:
            payload = json.loads(body) if body else {}
        except ValueError:
            raise invalid("the admin request body is not JSON") from None
        store, server = self.server.store, self.server
        match (method, *parts):
            case ("GET", "health"):
                self._json(200, {"ok": True}, [])
            case ("POST", "seeded-archives"):
                archive = store.seed(
                    payload["vault"],
                    int(payload["size"]),
                    int(payload.get("seed", 0)),
                    str(payload.get("description", "")),
                )
                answer = {"archiveId": archive.archive_id, "checksum": archive.tree_hash}
                self._json(200, answer, [])
            case ("GET", "archives", vault, archive_id, "content"):
                self._archive_content(vault, archive_id)
            case ("POST", "jobs", job_id, "complete"):
                self._json(200, store.describe(store.complete(job_id)), [])
            case ("POST", "jobs", job_id, "fail"):
                job = store.fail(job_id, str(payload.get("message", "Job failed")))
                self._json(200, store.describe(job), [])
            case ("POST", "jobs", job_id, "expire"):
                store.expire(job_id)
                self._json(200, {"expired": job_id}, [])
            case ("POST", "jobs", job_id, "set"):
                self._json(200, store.describe(store.override(job_id, payload)), [])
            case ("GET", "counters"):
                self._json(200, server.counters.snapshot(), [])
            case ("POST", "counters", "reset"):
                server.counters.reset()
                self._json(200, {"reset": True}, [])
            case ("GET", "requests"):
                self._json(200, list(server.counters.log), [])
            case ("GET", "clock"):
                self._json(200, _clock(store), [])
            case ("POST", "clock"):
                self._set_clock(payload)
            case ("GET", "jobs"):
                self._json(200, store.history(), [])
            case ("GET", "faults"):
                self._json(200, server.faults.listed(), [])
            case ("POST", "faults"):
                self._add_fault(payload)
            case ("DELETE", "faults"):
                server.faults.clear()
                self._json(200, {"cleared": True}, [])
            case ("DELETE", "faults", number) if number.isdigit():
                if not server.faults.remove(int(number)):
                    raise not_found(f"no fault {number}")
                self._json(200, {"removed": int(number)}, [])
            case _:
                raise not_found(f"no admin operation {method} /_emulator/{'/'.join(parts)}")

    def _add_fault(self, payload: Any) -> None:
        try:
            fault = self.server.faults.add(parse_fault(payload))
        except (TypeError, ValueError) as error:
            raise invalid(f"bad fault: {error}") from None
        self._json(200, {"id": fault.id}, [])

    def _set_clock(self, payload: Any) -> None:
        clock = self.server.store.clock
        try:
            if "speed" in payload:
                clock.set_speed(float(payload["speed"]))
            if "advance" in payload:
                clock.advance(float(payload["advance"]))
        except ValueError as error:
            raise invalid(f"bad clock request: {error}") from None
        self.server.store.save()
        self._json(200, _clock(self.server.store), [])

    def _archive_content(self, vault: str, archive_id: str) -> None:
        store = self.server.store
        archive = store.archive(vault, archive_id)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self._finish_headers(archive.size)
        for chunk in store.source(archive).chunks(0, archive.size):
            self.wfile.write(chunk)


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


def _clock(store: Store) -> dict[str, Any]:
    now = store.clock.now()
    return {"now": now, "iso": iso(now), "speed": store.clock.speed}
