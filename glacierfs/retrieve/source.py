"""Where the archives come from: the newest inventory, and starting one.

In order: the user's file (``-o inventory=FILE``); else the newest inventory job the
cache holds or the service still serves (read through whichever holds the cache, so
its output is cached and fetched once); else the store of the last inventory used,
beside the retrieval state (:mod:`.inventorydb`). Whichever it is, it is read into
that store once, and not again while it is the same. The store also outlives the
inventory job: a run lasts days, the job expires after 24 hours, and its output may be
evicted from a cache too small for the vault, while the run still needs every
archive's name and tree hash.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from glacierfs.cacheroot import Held
from glacierfs.client import GlacierClient
from glacierfs.config import Options
from glacierfs.errors import ConfigError, InventoryError
from glacierfs.inventory import parse
from glacierfs.jobs import SERVICE_ID
from glacierfs.logs import escape
from glacierfs.retrieve.inventorydb import InventoryStore
from glacierfs.retrieve.save import Access

INVENTORY_HOURS = "about 4 to 5 hours"


def store_key(vault_arn: str) -> str:
    """Names one vault's inventory store (the state directory serves every vault)."""
    return hashlib.sha256(vault_arn.encode()).hexdigest()[:16]


def _load_file(store: InventoryStore, path: Path) -> None:
    """The user's file into the store, unless the store holds it as it is now."""
    try:
        with path.open("rb") as stream:
            st = os.fstat(stream.fileno())
            identity = f"file:{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"
            if not store.holds(identity):
                store.load(parse(stream), identity, str(path))
    except OSError as error:
        raise ConfigError(f"inventory {path}: {error.strerror}") from None
    except InventoryError as error:
        raise ConfigError(f"inventory {path}: {error}") from None


def load_inventory(
    options: Options,
    client: GlacierClient,
    vault_arn: str,
    access: Access | None,
    directory: Held,
    command: str,
) -> tuple[InventoryStore, str]:
    """The store of the newest inventory, and a phrase saying where it came from: the
    user's file, else what ``access`` (the cache's holder) finds, else the store of the
    last inventory used (kept in the held state ``directory``).

    The service, not a mount's listing of up to ``refresh`` seconds ago, says which
    inventory job is the newest: a mount that does not list it yet is asked to refresh
    and waited for, so an inventory that just completed is never reported missing (and
    no one is sent to pay for a second one). ``command`` is how the user ran
    ``retrieve`` (options included), for the hints that print a command.
    """
    store = InventoryStore(directory, store_key(vault_arn))
    if options.inventory is not None:
        _load_file(store, options.inventory)
        return store, str(options.inventory)
    jobs = inventory_jobs(client)
    newest = max(
        (r for r in jobs if r.get("StatusCode") == "Succeeded"),
        key=lambda r: (str(r.get("CompletionDate") or ""), str(r.get("JobId"))),
        default=None,
    )
    try:
        found = access.newest_inventory(newest, store) if access is not None else None
    except InventoryError as error:
        raise ConfigError(f"the newest inventory: {error}") from None
    if found is not None:
        return store, found
    if store.ready:
        return store, f"the store of the last inventory used, {store.source} ({store.path})"
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
