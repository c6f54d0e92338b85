"""The emulator's way of answering an HTTP request: JSON documents, error answers, headers.

:class:`Replies` is the base of the request handler's parts (:mod:`.transfer` for job
outputs, :mod:`.admin` for the admin endpoint, :mod:`.server` for routing); each request
keeps an ``entry``, the record the counters and ``GET /_emulator/requests`` show.
"""

from __future__ import annotations

import email.utils
import json
import logging
import socket
import time
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any

from glacierfs.emulator.faults import BAD_JSON, Fault
from glacierfs.emulator.records import ApiError

if TYPE_CHECKING:
    from glacierfs.emulator.server import Emulator

log = logging.getLogger("glacierfs.emulator")


class Replies(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Emulator
    _entry: dict[str, Any]

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def date_time_string(self, timestamp: float | None = None) -> str:
        moment = self.server.store.clock.now() if timestamp is None else timestamp
        return email.utils.formatdate(moment, usegmt=True)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

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
