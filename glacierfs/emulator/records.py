"""What the emulator's store keeps (vaults, archives, jobs) and the API's error answer.

Plain records, saved as JSON in the state directory by :class:`.store.Store`; the
helpers here check and format what the API reference constrains (vault names,
descriptions, dates, ids).
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any


class ApiError(Exception):
    """An error answer: HTTP status, Glacier error code, message, Client or Server."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.type = "Server" if status >= 500 else "Client"


def not_found(message: str) -> ApiError:
    return ApiError(404, "ResourceNotFoundException", message)


def invalid(message: str) -> ApiError:
    return ApiError(400, "InvalidParameterValueException", message)


def missing(what: str) -> ApiError:
    return ApiError(400, "MissingParameterValueException", f"Required parameter {what} missing")


def iso(moment: float) -> str:
    milliseconds = int(moment * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(moment)) + f".{milliseconds:03d}Z"


VAULT_NAME = re.compile(r"[A-Za-z0-9_.-]{1,255}\Z")


@dataclass
class Vault:
    name: str
    created: float
    last_inventory: float | None = None


@dataclass
class Archive:
    archive_id: str
    vault: str
    size: int
    tree_hash: str
    description: str
    created: float
    seed: int | None = None
    deleted: bool = False  # jobs started before the delete still read it


@dataclass
class Job:
    job_id: str
    vault: str
    action: str  # ArchiveRetrieval | InventoryRetrieval
    created: float
    description: str | None
    tier: str
    archive_id: str | None = None
    byte_range: list[int] | None = None  # [start, end] inclusive, as asked
    fmt: str | None = None
    status: str = "InProgress"
    completed: float | None = None
    status_message: str | None = None
    expired: bool = False
    inventory_size: int | None = None
    sns_topic: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    delay: float | None = None  # seconds to complete; None: the store's job_delay
    expired_at: float | None = None


def new_id(nbytes: int) -> str:
    return secrets.token_urlsafe(nbytes)[: nbytes * 4 // 3]


def check_description(text: str) -> None:
    if len(text) > 1024 or any(not " " <= c <= "~" for c in text):
        raise invalid("The description must be at most 1024 printable ASCII characters")
