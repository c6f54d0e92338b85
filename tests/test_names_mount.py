"""Names people recognise, through a real mount: every upload tool's format, hostile text.

Descriptions are written exactly as each tool writes them (from their documented
formats), uploaded through botocore, and read back through a completed inventory
job or the user's own inventory file; the friendly view must show the user's tree,
each file equal to its archive, and nothing named outside the mount or too long.
"""

from __future__ import annotations

import base64
import calendar
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.emulator import Emulator
from tests.support.mount import Mount, needs_fuse
from tests.support.vault import inventory, retrieve, sample, upload

pytestmark = needs_fuse

VAULT = "names"


def mt2(path: str, mtime: str = "20190704T120000Z") -> str:
    text = json.dumps({"filename": path, "mtime": mtime}, ensure_ascii=False).encode()
    return "mt2 " + base64.urlsafe_b64encode(text).decode().rstrip("=")


def mt1(path: str, mtime: str = "20190704T120000Z") -> str:
    text = json.dumps({"filename": path, "mtime": mtime}, ensure_ascii=False)
    twice = text.encode("utf-8").decode("latin-1").encode("utf-8")
    return "mt1 " + base64.urlsafe_b64encode(twice).decode().rstrip("=")


def fastglacier(path: str, version: int = 4, mtime: str = "20210115T093000Z") -> str:
    encoded = base64.b64encode(path.encode()).decode()
    if version == 1:
        return f"<ArchiveMetadata><Path>{encoded}</Path></ArchiveMetadata>"
    return f"<m><v>{version}</v><p>{encoded}</p><lm>{mtime}</lm></m>"


def cloudberry(path: str) -> str:
    utf7 = path.encode("utf-7").decode("ascii")
    return json.dumps({"Path": utf7, "UTCDateModified": "20200202T020202Z", "Size": 1})


def qnap(path: str) -> str:
    return json.dumps({"path": path, "type": "file"})


def epoch(text: str) -> float:
    return float(calendar.timegm(time.strptime(text, "%Y%m%dT%H%M%SZ")))


CASES: list[tuple[str, str | None]] = [
    # (description, the path expected under archives/; None: named by the ArchiveId)
    (mt2("photos/2019/img_0042.jpg"), "photos/2019/img_0042.jpg"),
    (mt1("café/menü.txt"), "café/menü.txt"),
    (fastglacier("documents/taxes 2020.pdf"), "documents/taxes 2020.pdf"),
    (fastglacier("documents/v2.txt", 2), "documents/v2.txt"),
    (fastglacier("documents/v3.txt", 3), "documents/v3.txt"),
    (fastglacier("old/v1.bin", 1), "old/v1.bin"),
    (fastglacier("a directory marker/"), None),
    (cloudberry("docs/résumé.txt"), "docs/résumé.txt"),
    (qnap("/share/qnap/file.txt"), "share/qnap/file.txt"),
    ("plain/notes.txt", "plain/notes.txt"),
    ("../../etc/passwd", "etc/passwd"),
    ("/abs/path", "abs/path"),
    ("a/./b//c", "a/b/c"),
    (mt2("line\nbreak.txt"), "line_break.txt"),
    (mt2("invoice\u202efdp.exe"), "invoice_fdp.exe"),
    (mt2("\u2066iso\u2069 zero\u200b bom\ufeff ls\u2028.txt"), "_iso_ zero_ bom_ ls_.txt"),
    (mt2("nfd/cafe\u0301.txt"), "nfd/caf\u00e9.txt"),
    ("<m><v>4</v><p>!!!not base64!!!</p></m>", "<m><v>4<"),
    ('{"Path": "truncated', '{"Path": "truncated'),
    ("", None),
]


@pytest.fixture
def described(emulator: Emulator) -> Any:
    """The vault with an archive per case, a job for each, and a JSON inventory."""
    client = emulator.client()
    client.create_vault(vaultName=VAULT)
    made = []
    for number, (description, _) in enumerate(CASES):
        data = sample(1000 + number, number)
        archive = upload(client, VAULT, data, description)
        made.append((archive, retrieve(client, VAULT, archive), data))
    inventory(client, VAULT, "JSON")
    return made


def archives_tree(mount: Mount) -> dict[str, Path]:
    root = mount.path / "archives"
    return {str(p.relative_to(root)): p for p in root.rglob("*") if p.is_file()}


def test_every_format_and_hostile_description_becomes_a_safe_tree(
    emulator: Emulator, described: Any, mount_factory: Any
) -> None:
    mount: Mount = mount_factory(emulator.url, VAULT)
    tree = archives_tree(mount)
    assert len(tree) == len(CASES)
    for (description, expected), (archive, job, data) in zip(CASES, described, strict=True):
        found = [name for name, path in tree.items() if path.read_bytes() == data]
        assert len(found) == 1, description
        if expected is None:
            assert found[0] == archive
        elif expected.startswith(("<m>", "{")):  # malformed: the plain description, made safe
            assert "/" not in found[0] or found[0].split("/")[0] == expected.split("/")[0]
        else:
            assert found[0] == expected, description
        assert os.path.realpath(tree[found[0]]).startswith(str(mount.path / "archives") + "/")
        subprocess.run(["cmp", str(tree[found[0]]), str(mount.job_file(job))], check=True)
    photo = mount.path / "archives" / "photos" / "2019" / "img_0042.jpg"
    assert photo.stat().st_mtime == epoch("20190704T120000Z")
    taxes = mount.path / "archives" / "documents" / "taxes 2020.pdf"
    assert taxes.stat().st_mtime == epoch("20210115T093000Z")
    for _root, dirs, files in os.walk(mount.path):
        for name in dirs + files:
            assert len(name.encode()) <= 255
            assert name not in (".", "..") and "\0" not in name and "\n" not in name


def test_collisions_get_stable_suffixes_and_long_paths_are_cut_from_an_inventory_file(
    emulator: Emulator, mount_factory: Any, tmp_path: Path
) -> None:
    client = emulator.client()
    client.create_vault(vaultName=VAULT)
    same = [upload(client, VAULT, sample(500 + n, n), "dup/same.txt") for n in range(2)]
    prefix_file = upload(client, VAULT, b"file", "x/y")
    prefix_dir = upload(client, VAULT, b"dir entry", "x/y/z")
    long_one = upload(client, VAULT, b"long", "placeholder")
    jobs = {a: retrieve(client, VAULT, a) for a in [*same, prefix_file, prefix_dir, long_one]}
    long_path = "/".join(["d" * 300, "é" * 700, "tail.txt"])  # over 2,000 bytes
    truths = {a: client.describe_job(vaultName=VAULT, jobId=j) for a, j in jobs.items()}
    listing = {
        "VaultARN": "arn:aws:glacier:us-east-1:123456789012:vaults/names",
        "InventoryDate": "2026-01-01T00:00:00Z",
        "ArchiveList": [
            {
                "ArchiveId": archive,
                "ArchiveDescription": long_path if archive == long_one else description,
                "CreationDate": "2026-01-01T00:00:00Z",
                # the service's word twice, or the files would be a mismatch
                "Size": truths[archive]["ArchiveSizeInBytes"],
                "SHA256TreeHash": truths[archive]["ArchiveSHA256TreeHash"],
            }
            for archive, description in [
                (same[0], "dup/same.txt"),
                (same[1], "dup/same.txt"),
                (prefix_file, "x/y"),
                (prefix_dir, "x/y/z"),
                (long_one, ""),
            ]
        ],
    }
    inventory_file = tmp_path / "inventory.json"
    inventory_file.write_text(json.dumps(listing, ensure_ascii=False))
    mount: Mount = mount_factory(emulator.url, VAULT, {"inventory": str(inventory_file)})
    first = archives_tree(mount)
    dup = sorted(name for name in first if name.startswith("dup/"))
    assert dup[0] == "dup/same.txt" and dup[1].startswith("dup/same~")
    assert dup[1].endswith(".txt")
    assert (mount.path / "archives" / "x" / "y" / "z").read_bytes() == b"dir entry"
    assert any(name.startswith("x/y~") for name in first)  # the file gives way to the dir
    long_names = [name for name in first if name.endswith("tail.txt")]
    assert len(long_names) == 1
    assert all(len(part.encode()) <= 255 for part in long_names[0].split("/"))
    for archive, job in jobs.items():
        matches = [
            p
            for p in first.values()
            if os.getxattr(p, "user.glacier.archive_id") == archive.encode()
        ]
        assert len(matches) == 1
        subprocess.run(["cmp", str(matches[0]), str(mount.job_file(job))], check=True)
    mount.stop()
    again: Mount = mount_factory(emulator.url, VAULT, cache_dir=mount.cache_dir)
    assert sorted(archives_tree(again)) == sorted(first)  # the same names every mount
