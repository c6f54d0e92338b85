"""Get Job Output on the wire: the Range asked, the headers sent (Content-Range, the tree
hash of a tree-node range), and the body, paced by a bandwidth cap per connection and a
total one (:class:`Nic`), and cut, flipped or stalled by the faults that struck the
request."""

from __future__ import annotations

import re
import socket
import struct
import threading
import time
from collections.abc import Callable

from glacierfs.emulator.faults import Fault
from glacierfs.emulator.outputs import Output
from glacierfs.emulator.records import Job, invalid
from glacierfs.emulator.replies import Replies

BYTE_RANGE = re.compile(r"bytes=(\d+)-(\d*)\Z")
PACE_CHUNK = 64 * 1024
BODY_FAULTS = ("reset", "short", "flip", "stall")


def requested(header: str | None, total: int) -> tuple[int, int, bool]:
    """The bytes a Range header asks of an output of ``total`` bytes: first, last
    (inclusive), and whether the answer is partial."""
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


class Nic:
    """A cap on the bytes/s of every answer body together, as a host's network card (or
    its link) caps all its connections beside each connection's own rate: each piece of
    a body takes its turn on the wire, first come first served."""

    def __init__(self, rate: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self._clock = rate, clock
        self._lock = threading.Lock()
        self._free_at = 0.0

    def turn(self, nbytes: int) -> float:
        """When a piece of ``nbytes`` asked for now has passed (on ``clock``)."""
        with self._lock:
            start = max(self._clock(), self._free_at)
            self._free_at = start + nbytes / self.rate
            return self._free_at


class Transfer(Replies):
    def _job_output(self, job: Job, struck: list[Fault]) -> None:
        output = self.server.jobs.output(job)
        total = output.source.size
        start, end, partial = requested(self.headers.get("Range"), total)
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

    def _stream(self, output: Output, start: int, end: int, struck: list[Fault]) -> None:
        length = end - start
        body_faults = {f.kind: f for f in struck if f.kind in BODY_FAULTS}
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
        nic: Nic | None = self.server.nic
        if not pace and nic is None:
            self.wfile.write(piece)
            return sent + len(piece)
        for offset in range(0, len(piece), PACE_CHUNK):
            part = piece[offset : offset + PACE_CHUNK]
            due = nic.turn(len(part)) if nic is not None else 0.0
            self.wfile.write(part)
            sent += len(part)
            now = time.monotonic()
            ahead = max(sent / pace - (now - began) if pace else 0.0, due - now)
            if ahead > 0:
                time.sleep(ahead)
        return sent

    def _cut(self, reset: bool) -> None:
        self.close_connection = True
        if reset:  # SO_LINGER 0: close sends RST instead of FIN
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
