"""The emulator's --help shows how to make a vault of one's own, and the example runs as
printed (the port aside): a newcomer can copy it line by line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.support.mount import isolated_env


def _example(help_text: str) -> list[str]:
    """The example's command lines, continuation lines joined."""
    lines = help_text.split("A vault of your own", 1)[1].splitlines()
    commands, current = [], ""
    for line in lines:
        if not line.startswith("  "):
            continue
        current += line.strip().rstrip("\\")
        if not line.endswith("\\"):
            commands.append(current)
            current = ""
    return commands


def test_the_help_example_seeds_a_vault_as_printed(emulator, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = subprocess.run(
        [sys.executable, "-m", "glacierfs.emulator", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    commands = _example(result.stdout)
    assert commands[0].startswith("glacierfs-emulator --port 9000")
    script = "set -e\n" + "\n".join(
        c.replace("http://127.0.0.1:9000", emulator.url) for c in commands[1:]
    )
    env = isolated_env({"XDG_CACHE_HOME": str(tmp_path / "xdg"), "HOME": str(tmp_path)})
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    ran = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "inventory job" in ran.stdout + ran.stderr
    with urllib.request.urlopen(f"{emulator.url}/_emulator/jobs") as answer:
        jobs = json.load(answer)
    assert [j["Action"] for j in jobs] == ["InventoryRetrieval"]
    with urllib.request.urlopen(f"{emulator.url}/_emulator/faults") as answer:
        assert [f["kind"] for f in json.load(answer)] == ["reset"]
