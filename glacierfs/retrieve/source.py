"""Where the archives come from: the newest inventory, and starting one.

In order: the user's file (``-o inventory=FILE``); else the newest inventory job the
cache holds or the service still serves (read through whichever holds the cache, so
its output is cached and fetched once); else the copy of the last inventory used,
kept beside the retrieval state. The copy is there because a run lasts days: the
inventory job expires after 24 hours, and its output may be evicted from a cache too
small for the vault, while the run still needs every archive's name and tree hash.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

from glacierfs.cacheroot import Held
from glacierfs.client import GlacierClient
from glacierfs.config import Options
from glacierfs.errors import ConfigError, InventoryError
from glacierfs.inventory import Entry, parse
from glacierfs.jobs import SERVICE_ID
from glacierfs.logs import escape
from glacierfs.retrieve.save import Access

INVENTORY_HOURS = "about 4 to 5 hours"


def kept_name(vault_arn: str) -> str:
    """The kept copy of one vault's inventory (the state directory serves every vault)."""
    return f"inventory-{hashlib.sha256(vault_arn.encode()).hexdigest()[:16]}.json"


def _read_file(path: Path) -> list[Entry]:
    try:
        with path.open("rb") as stream:
            return list(parse(stream))
    except OSError as error:
        raise ConfigError(f"inventory {path}: {error.strerror}") from None
    except InventoryError as error:
        raise ConfigError(f"inventory {path}: {error}") from None


def _read_kept(directory: Held, name: str) -> list[Entry] | None:
    """The kept copy, read through the held state directory; None when there is none."""
    path = directory.path / name
    try:
        fd = directory.open(name, os.O_RDONLY)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise ConfigError(f"inventory {path}: {error.strerror}") from None
    try:
        with io.BufferedReader(io.FileIO(fd, "rb")) as stream:
            return list(parse(stream))
    except OSError as error:
        raise ConfigError(f"inventory {path}: {error.strerror}") from None
    except InventoryError as error:
        raise ConfigError(f"inventory {path}: {error}") from None


def keep(entries: list[Entry], source: str, directory: Held, name: str) -> None:
    """Write the inventory used as Glacier's JSON, beside the state (atomically, through
    the held state directory: never through a link)."""
    document = {
        "VaultARN": None,
        "InventoryDate": None,
        "Source": source,
        "ArchiveList": [
            {
                "ArchiveId": e.archive_id,
                "ArchiveDescription": e.description,
                "CreationDate": e.creation_date,
                "Size": e.size,
                "SHA256TreeHash": e.tree_hash,
            }
            for e in entries
        ],
    }
    try:
        with directory.replacing(name) as out:
            text = io.TextIOWrapper(out, encoding="utf-8")
            json.dump(document, text)
            text.flush()
            text.detach()
    except OSError as error:
        where = directory.path / name
        raise ConfigError(f"keeping a copy of the inventory as {where}: {error.strerror}") from None


def load_inventory(
    options: Options,
    client: GlacierClient,
    vault_arn: str,
    access: Access | None,
    kept: Held,
    command: str,
) -> tuple[list[Entry], str]:
    """The archives of the newest inventory, and a phrase saying where they came from:
    the user's file, else what ``access`` (the cache's holder) finds, else the copy kept.

    The service, not a mount's listing of up to ``refresh`` seconds ago, says which
    inventory job is the newest: a mount that does not list it yet is asked to refresh
    and waited for, so an inventory that just completed is never reported missing (and
    no one is sent to pay for a second one). ``command`` is how the user ran
    ``retrieve`` (options included), for the hints that print a command.
    """
    if options.inventory is not None:
        return _read_file(options.inventory), str(options.inventory)
    jobs = inventory_jobs(client)
    newest = max(
        (r for r in jobs if r.get("StatusCode") == "Succeeded"),
        key=lambda r: (str(r.get("CompletionDate") or ""), str(r.get("JobId"))),
        default=None,
    )
    copy = kept_name(vault_arn)
    found = access.newest_inventory(newest) if access is not None else None
    if found is not None:
        keep(found[0], found[1], kept, copy)
        return found
    entries = _read_kept(kept, copy)
    if entries is not None:
        return entries, f"the copy kept of the last inventory used ({kept.path / copy})"
    running = [r for r in jobs if r.get("StatusCode") == "InProgress"]
    if running:
        raise ConfigError(
            f"no inventory of vault {options.vault} yet: job {running[0].get('JobId')} started "
            f"{running[0].get('CreationDate')} is in progress ({INVENTORY_HOURS}); run again then"
        )
    raise ConfigError(
        f"no inventory of vault {options.vault}: start one with `{command} --inventory` "
        f"({INVENTORY_HOURS}), or give one with -o inventory=FILE"
    )


def inventory_jobs(client: GlacierClient) -> list[dict[str, object]]:
    """The inventory jobs the service knows now, in any state."""
    return [
        r
        for r in client.list_all_jobs()
        if isinstance(r, dict)
        and r.get("Action") == "InventoryRetrieval"
        and isinstance(r.get("JobId"), str)
        and SERVICE_ID.fullmatch(str(r["JobId"])) is not None  # never a path's '..' or '/'
    ]


def start_inventory(options: Options, client: GlacierClient, command: str) -> int:
    running = [r for r in inventory_jobs(client) if r.get("StatusCode") == "InProgress"]
    if running:
        job = running[0].get("JobId")
        print(escape(f"an inventory job of vault {options.vault} is already in progress: {job}"))
        return 0
    job_id = client.initiate_inventory("JSON", "glacierfs retrieve --inventory")
    print(
        f"inventory job {job_id} started for vault {options.vault}: Glacier takes "
        f"{INVENTORY_HOURS}; then run `{command} --all --dry-run` (or with PATTERNs) "
        "to plan the retrieval"
    )
    return 0
