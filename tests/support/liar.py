"""A Glacier that lies: a reverse proxy in front of the emulator that rewrites job records.

Every request is forwarded unchanged (method, path, every header including ``Host``
and the SigV4 ``Authorization``, the body streamed), and every answer comes back
unchanged, except where a test asked for a lie:

* :meth:`Liar.lie` replaces fields of one job's record in DescribeJob and ListJobs
  answers (``ArchiveSHA256TreeHash``, ``ArchiveSizeInBytes``, ``JobId``, ...). A
  rewritten ``JobId`` (even ``"a\\nb"``, ``"."`` or ``".."``) is mapped back to the
  real job when a client then names it in a request path.
* :meth:`Liar.drop_header` removes a header from one job's Get Job Output answers
  (``x-amz-sha256-tree-hash``, say).
* :meth:`Liar.answer_job_ids` answers the next InitiateJob calls with the job ids
  given (another job's, a forged one) in place of the new job's; the emulator still
  starts the job.
* :meth:`Liar.hide` leaves one job out of ListJobs answers (as the service does once
  a job's output expires), while its output is still served to whoever names it.

The emulator stays honest, so a test compares what the client made of the lie with
the truth, which it can still ask the emulator for directly.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import pytest

from tests.support.emulator import Emulator

CHUNK = 1 << 16
HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "te", "upgrade"})


class Liar:
    """The proxy; :attr:`url` is its endpoint, to give to botocore or a mount."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._lock = threading.Lock()
        self._fields: dict[str, dict[str, Any]] = {}  # real JobId -> fields to replace
        self._forged: dict[str, str] = {}  # forged JobId -> real JobId
        self._dropped: dict[str, set[str]] = {}  # real JobId -> headers to drop (lower case)
        self._job_ids: list[str] = []  # what the next InitiateJob answers say
        self._hidden: set[str] = set()  # real JobIds left out of ListJobs
        self.rewritten = 0  # records rewritten so far
        handler = type("Handler", (_Handler,), {"liar": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> Liar:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    # --- what to lie about -------------------------------------------------------------

    def lie(self, job_id: str, **fields: Any) -> None:
        """Answer these fields in ``job_id``'s record from now on."""
        with self._lock:
            self._fields.setdefault(job_id, {}).update(fields)
            if "JobId" in fields:
                self._forged[str(fields["JobId"])] = job_id

    def drop_header(self, job_id: str, name: str) -> None:
        """Leave header ``name`` out of ``job_id``'s Get Job Output answers from now on."""
        with self._lock:
            self._dropped.setdefault(job_id, set()).add(name.lower())

    def answer_job_ids(self, *job_ids: str) -> None:
        """Answer the next InitiateJob calls with these job ids, one each."""
        with self._lock:
            self._job_ids.extend(job_ids)

    def hide(self, job_id: str) -> None:
        """Leave ``job_id`` out of ListJobs answers from now on."""
        with self._lock:
            self._hidden.add(job_id)

    def truth(self) -> None:
        """Stop every lie."""
        with self._lock:
            self._fields.clear()
            self._forged.clear()
            self._dropped.clear()
            self._job_ids.clear()
            self._hidden.clear()

    # --- used by the handler -----------------------------------------------------------

    def real_job(self, job_id: str) -> str:
        with self._lock:
            return self._forged.get(job_id, job_id)

    def dropped(self, job_id: str | None) -> set[str]:
        with self._lock:
            return set(self._dropped.get(job_id or "", ()))

    def next_job_id(self) -> str | None:
        with self._lock:
            return self._job_ids.pop(0) if self._job_ids else None

    def rewrite_record(self, record: Any) -> Any:
        if not isinstance(record, dict):
            return record
        with self._lock:
            fields = self._fields.get(str(record.get("JobId")))
            if fields is None:
                return record
            self.rewritten += 1
        return {**record, **fields}

    @staticmethod
    def _names(record: Any, jobs: set[str]) -> bool:
        return isinstance(record, dict) and record.get("JobId") in jobs

    def rewrite(self, operation: str, body: bytes) -> bytes:
        """A DescribeJob or ListJobs answer with the lies put in."""
        try:
            document = json.loads(body)
        except ValueError:
            return body  # not JSON (a fault the emulator injected): pass it on as it is
        if operation == "DescribeJob":
            document = self.rewrite_record(document)
        elif isinstance(document, dict) and isinstance(document.get("JobList"), list):
            with self._lock:
                hidden = set(self._hidden)
            listed = [r for r in document["JobList"] if not self._names(r, hidden)]
            document["JobList"] = [self.rewrite_record(r) for r in listed]
        return json.dumps(document).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    liar: Liar
    _upstream: http.client.HTTPConnection | None = None

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._forward()

    def do_PUT(self) -> None:
        self._forward()

    def do_POST(self) -> None:
        self._forward()

    def do_DELETE(self) -> None:
        self._forward()

    def finish(self) -> None:
        super().finish()
        if self._upstream is not None:
            self._upstream.close()

    def _route(self) -> tuple[str, str, str | None]:
        """The path to ask upstream, the operation (for answers that may be rewritten),
        and the real JobId it names."""
        url = urlsplit(self.path)
        parts = url.path.split("/")  # "", account, "vaults", vault, "jobs", job, "output"
        operation, job = "", None
        if len(parts) >= 5 and parts[2] == "vaults" and parts[4] == "jobs":
            if len(parts) == 5 and self.command == "GET":
                operation = "ListJobs"
            elif len(parts) == 5 and self.command == "POST":
                operation = "InitiateJob"
            elif len(parts) >= 6:
                job = self.liar.real_job(unquote(parts[5]))
                parts[5] = quote(job, safe="")
                operation = {6: "DescribeJob", 7: "GetJobOutput"}.get(len(parts), "")
        path = "/".join(parts) + (f"?{url.query}" if url.query else "")
        return path, operation, job

    def _forward(self) -> None:
        path, operation, job = self._route()
        headers = [(k, v) for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP]
        length = int(self.headers.get("Content-Length") or 0)
        try:
            response = self._ask(path, headers, length)
        except OSError:
            if length:  # the body is gone: let the client try again
                self.close_connection = True
                self.send_error(502, "the emulator did not answer")
                return
            response = self._ask(path, headers, 0)  # a kept-alive connection had closed
        drop = self.liar.dropped(job) if operation == "GetJobOutput" else set()
        forged = self.liar.next_job_id() if operation == "InitiateJob" else None
        if forged is not None and response.status == 202:
            self._answer(response, response.read(), {"x-amz-job-id"}, (("x-amz-job-id", forged),))
        elif operation in ("DescribeJob", "ListJobs") and response.status == 200:
            self._answer(response, self.liar.rewrite(operation, response.read()), drop)
        elif int(response.getheader("Content-Length") or 0) < CHUNK:
            self._answer(response, response.read(), drop)  # small, or of no stated length
        else:
            self._stream(response, drop)

    def _ask(
        self, path: str, headers: list[tuple[str, str]], length: int
    ) -> http.client.HTTPResponse:
        if self._upstream is None:
            self._upstream = http.client.HTTPConnection(*self.liar.upstream, timeout=120)
        upstream = self._upstream
        upstream.putrequest(self.command, path, skip_host=True, skip_accept_encoding=True)
        for name, value in headers:
            upstream.putheader(name, value)
        upstream.endheaders()
        left = length
        while left > 0:
            chunk = self.rfile.read(min(CHUNK, left))
            if not chunk:
                break
            upstream.send(chunk)
            left -= len(chunk)
        try:
            return upstream.getresponse()
        except OSError:
            self._upstream = None
            upstream.close()
            raise

    def _send_head(
        self,
        response: http.client.HTTPResponse,
        drop: set[str],
        extra: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.send_response_only(response.status, response.reason)
        for name, value in [*response.getheaders(), *extra]:
            if name.lower() not in HOP_BY_HOP | drop | {"content-length"} or (name, value) in extra:
                self.send_header(name, value)

    def _answer(
        self,
        response: http.client.HTTPResponse,
        body: bytes,
        drop: set[str],
        extra: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self._send_head(response, drop, extra)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        if response.will_close:
            self._reconnect()

    def _stream(self, response: http.client.HTTPResponse, drop: set[str]) -> None:
        """Pass a body on as it comes; a body cut short upstream is cut short here too."""
        self._send_head(response, drop)
        length = int(response.getheader("Content-Length") or 0)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        sent = 0
        try:
            while sent < length:
                chunk = response.read(min(CHUNK, length - sent))
                if not chunk:
                    break
                self.wfile.write(chunk)
                sent += len(chunk)
        except (OSError, http.client.HTTPException):
            pass
        if sent < length:
            self.close_connection = True
            self._reconnect()
        else:
            response.read()  # nothing left: this frees the connection for the next request
            if response.will_close:
                self._reconnect()

    def _reconnect(self) -> None:
        if self._upstream is not None:
            self._upstream.close()
            self._upstream = None


@pytest.fixture
def liar(emulator: Emulator) -> Iterator[Liar]:
    """A lying proxy in front of the test's emulator."""
    proxy = Liar(emulator.url).start()
    yield proxy
    proxy.stop()
