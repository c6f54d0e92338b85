"""The admin endpoint, ``/_emulator/...``: what tests use to seed archives, end jobs,
inject faults, read counters and move the clock (the table in :mod:`.server`)."""

from __future__ import annotations

import json
from typing import Any

from glacierfs.emulator.faults import parse_fault
from glacierfs.emulator.records import invalid, iso, not_found
from glacierfs.emulator.replies import Replies
from glacierfs.emulator.store import Store


class Admin(Replies):
    def _admin(self, method: str, parts: list[str], body: bytes) -> None:
        try:
            payload = json.loads(body) if body else {}
        except ValueError:
            raise invalid("the admin request body is not JSON") from None
        for part in (self._admin_vaults, self._admin_jobs, self._admin_instruments):
            if part(method, parts, payload):
                return
        raise not_found(f"no admin operation {method} /_emulator/{'/'.join(parts)}")

    def _admin_vaults(self, method: str, parts: list[str], payload: Any) -> bool:
        store = self.server.store
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
            case _:
                return False
        return True

    def _admin_jobs(self, method: str, parts: list[str], payload: Any) -> bool:
        jobs = self.server.jobs
        match (method, *parts):
            case ("POST", "jobs", job_id, "complete"):
                self._json(200, jobs.describe(jobs.complete(job_id)), [])
            case ("POST", "jobs", job_id, "fail"):
                job = jobs.fail(job_id, str(payload.get("message", "Job failed")))
                self._json(200, jobs.describe(job), [])
            case ("POST", "jobs", job_id, "expire"):
                jobs.expire(job_id)
                self._json(200, {"expired": job_id}, [])
            case ("POST", "jobs", job_id, "set"):
                self._json(200, jobs.describe(jobs.override(job_id, payload)), [])
            case ("GET", "jobs"):
                self._json(200, jobs.history(), [])
            case _:
                return False
        return True

    def _admin_instruments(self, method: str, parts: list[str], payload: Any) -> bool:
        """Counters, the request log, faults and the clock."""
        server = self.server
        match (method, *parts):
            case ("GET", "counters"):
                self._json(200, server.counters.snapshot(), [])
            case ("POST", "counters", "reset"):
                server.counters.reset()
                self._json(200, {"reset": True}, [])
            case ("GET", "requests"):
                self._json(200, list(server.counters.log), [])
            case ("GET", "clock"):
                self._json(200, _clock(server.store), [])
            case ("POST", "clock"):
                self._set_clock(payload)
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
                return False
        return True

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


def _clock(store: Store) -> dict[str, Any]:
    now = store.clock.now()
    return {"now": now, "iso": iso(now), "speed": store.clock.speed}
