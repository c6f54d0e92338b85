"""The demo's sample vault, seeded through botocore as a user's upload tools would.

Archives of several sizes, with descriptions in the formats upload tools write, and an
inventory job (Expedited, so that it is ready in minutes of the emulator's clock): what
a vault owner has before ``glacierfs retrieve`` carries the vault out. Credentials come
from the environment (``make demo`` sets dummy ones).
"""

from __future__ import annotations

import base64
import json
import random
import urllib.request
from typing import Any

import botocore.session

VAULT = "demo-vault"
MIB = 1 << 20


def _mt2(path: str, mtime: str) -> str:
    text = json.dumps({"filename": path, "mtime": mtime}).encode()
    return "mt2 " + base64.urlsafe_b64encode(text).decode().rstrip("=")


def _fastglacier(path: str, mtime: str) -> str:
    encoded = base64.b64encode(path.encode()).decode()
    return f"<m><v>4</v><p>{encoded}</p><lm>{mtime}</lm></m>"


SAMPLES = [
    (_mt2("photos/2019/img_0042.jpg", "20190704T120000Z"), 3 * MIB + 12345),
    (_fastglacier("documents/taxes 2020.pdf", "20210115T093000Z"), 700_000),
    ("backup-notes.txt", 4096),
]


def _seeded(url: str, size: int, seed: int, description: str) -> str:
    request = urllib.request.Request(
        f"{url}/_emulator/seeded-archives",
        data=json.dumps(
            {"vault": VAULT, "size": size, "seed": seed, "description": description}
        ).encode(),
        method="POST",
    )
    with urllib.request.urlopen(request) as response:
        return str(json.load(response)["archiveId"])


def seed(url: str) -> str:
    """Create and fill the sample vault; the inventory job's id."""
    client: Any = botocore.session.get_session().create_client(
        "glacier", endpoint_url=url, region_name="us-east-1"
    )
    client.create_vault(vaultName=VAULT)
    for number, (description, size) in enumerate(SAMPLES):
        body = random.Random(number).randbytes(size)
        client.upload_archive(vaultName=VAULT, body=body, archiveDescription=description)
        print(f"  uploaded {size:>10} bytes  {description[:60]}")
    _seeded(url, 64 * MIB + 4321, 7, _mt2("videos/holiday.mp4", "20180812T180000Z"))
    print(f"  uploaded {64 * MIB + 4321:>10} bytes  (videos/holiday.mp4, mt-aws-glacier)")
    params = {"Type": "inventory-retrieval", "Format": "JSON", "Tier": "Expedited"}
    job = client.initiate_job(vaultName=VAULT, jobParameters=params)["jobId"]
    print(f"  inventory job {job[:16]}... started")
    return str(job)
