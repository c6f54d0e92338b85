"""A tiny object store over HTTP for delivery tests, and an uploader to feed it.

The store (:class:`ObjectStore`, in the test's process, on a free port) takes ``PUT
/BUCKET/KEY`` (the whole body, chunked or not) and answers ``GET`` with it; it counts
PUTs per key, so a test can tell an archive delivered twice. The uploader,
``python -m tests.support.objectstore URL``, streams its standard input to ``URL`` with
one chunked PUT and exits 0 on a 2xx answer: a stand-in for ``aws s3 cp - s3://b/{}``
under ``--deliver-exec``, with no third-party package (moto is not installed here, and
what is under test is delivery's contract: bytes on stdin, the path in ``{}``).
"""

from __future__ import annotations

import http.client
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit


class _Handler(BaseHTTPRequestHandler):
    server: ObjectStore

    def do_PUT(self) -> None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = bytearray()
            while size := int(self.rfile.readline().strip() or b"0", 16):
                body += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
        else:
            body = bytearray(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        self.server.put(unquote(self.path.lstrip("/")), bytes(body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


class ObjectStore(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.objects: dict[str, bytes] = {}
        self.puts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def put(self, key: str, data: bytes) -> None:
        with self._lock:
            self.objects[key] = data
            self.puts[key] = self.puts.get(key, 0) + 1

    def __enter__(self) -> ObjectStore:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=10)


def upload(url: str) -> int:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.netloc, timeout=60)
    connection.putrequest("PUT", parts.path)
    connection.putheader("Transfer-Encoding", "chunked")
    connection.endheaders()
    while chunk := sys.stdin.buffer.read(1 << 20):
        connection.send(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
    connection.send(b"0\r\n\r\n")
    status = connection.getresponse().status
    connection.close()
    return 0 if 200 <= status < 300 else 1


if __name__ == "__main__":
    sys.exit(upload(sys.argv[1]))
