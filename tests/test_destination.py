"""Delivery's writers on their own: files placed atomically under a directory, never over
another file or through a symlink; a command per archive with its bytes on stdin."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from glacierfs.retrieve.destination import DeliveryFailed, Destination, scratch
from glacierfs.retrieve.execsink import ExecSink, backoff, fill
from glacierfs.retrieve.selection import Archive
from glacierfs.treehash import MIB, leaf_digests, tree_hash

MTIME = 1_562_241_600.0  # 2019-07-04 12:00 UTC


def archive(path: str, data: bytes, archive_id: str = "3f2a9c1b7d") -> Archive:
    return Archive(archive_id, len(data), tree_hash(data), 0.0, "", path)


def leaves(data: bytes) -> list[bytes]:
    return [data[i : i + MIB] for i in range(0, len(data), MIB)] or []


def test_an_archive_is_placed_at_its_path_with_its_mtime_and_no_temporary_left(
    tmp_path: Path,
) -> None:
    data = os.urandom(MIB + 17)
    destination = Destination(tmp_path / "out")
    placed = destination.whole(archive("a/b/c.bin", data), leaves(data), MTIME)
    destination.close()
    assert placed.path == "a/b/c.bin" and placed.written and not placed.renamed
    target = tmp_path / "out" / "a" / "b" / "c.bin"
    assert target.read_bytes() == data and target.stat().st_mtime == MTIME
    assert os.listdir(target.parent) == ["c.bin"]


def test_an_identical_file_is_the_delivery_and_another_is_never_overwritten(
    tmp_path: Path,
) -> None:
    data = os.urandom(3000)
    (tmp_path / "same.txt").write_bytes(data)
    (tmp_path / "other.txt").write_bytes(b"the user's own file")
    destination = Destination(tmp_path)
    same = destination.whole(archive("same.txt", data), leaves(data), MTIME)
    other = destination.whole(archive("other.txt", data), leaves(data), MTIME)
    again = destination.whole(archive("other.txt", data), leaves(data), MTIME)
    destination.close()
    assert not same.written and (tmp_path / "same.txt").stat().st_mtime != MTIME
    assert (tmp_path / "other.txt").read_bytes() == b"the user's own file"
    assert other.renamed and other.path == "other~3f2a9c1b.txt"
    assert (tmp_path / other.path).read_bytes() == data
    assert again.path == other.path and not again.written  # a second run writes nothing


def test_a_symlink_on_the_way_is_refused_not_followed(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a").symlink_to(elsewhere)
    (tmp_path / "out" / "x.txt").symlink_to(elsewhere / "x.txt")
    destination = Destination(tmp_path / "out")
    with pytest.raises(DeliveryFailed, match="a directory on the way"):
        destination.whole(archive("a/file.txt", b"data"), [b"data"], MTIME)
    placed = destination.whole(archive("x.txt", b"data"), [b"data"], MTIME)
    destination.close()
    assert os.listdir(elsewhere) == [] and placed.renamed


def test_a_leaf_that_fails_its_check_leaves_nothing_behind(tmp_path: Path) -> None:
    def bad() -> list[bytes]:
        raise DeliveryFailed("leaf 0 read back wrong")

    destination = Destination(tmp_path)
    with pytest.raises(DeliveryFailed):
        destination.whole(archive("f.bin", b"x" * 10), iter(bad, None), MTIME)
    destination.close()
    assert os.listdir(tmp_path) == []


def test_pieces_go_into_the_part_file_which_takes_the_name_once_whole(tmp_path: Path) -> None:
    data = os.urandom(3 * MIB + 5)
    big = archive("big.img", data)
    destination = Destination(tmp_path)
    fd = destination.open_part(big, resume=False)
    os.pwrite(fd, data[2 * MIB :], 2 * MIB)
    os.close(fd)
    fd = destination.open_part(big, resume=True)  # as a restarted run would
    os.pwrite(fd, data[: 2 * MIB], 0)
    placed = destination.finish_part(big, fd, MTIME)
    os.close(fd)
    destination.close()
    assert (tmp_path / placed.path).read_bytes() == data
    assert not (tmp_path / scratch(big, "part")).exists()
    assert len(leaf_digests(data)) == big.leaves


def test_a_command_gets_the_bytes_and_the_path_never_as_an_option(tmp_path: Path) -> None:
    assert fill("{}", "-rf") == "./-rf" and fill("s3://b/{}", "-x") == "s3://b/-x"
    assert fill("--flag", "a") == "--flag"
    script = (
        "import os, sys; open(sys.argv[1] + '.arg', 'w').write(sys.argv[2]);"
        " open(sys.argv[1] + '.env', 'w').write(os.environ['GLACIERFS_PATH']);"
        " open(sys.argv[1] + '.bytes', 'wb').write(sys.stdin.buffer.read())"
    )
    sink = ExecSink([sys.executable, "-c", script, str(tmp_path / "got"), "{}"])
    outcome = sink.run("-dir/a b.txt", [b"hello ", b"world"])
    assert outcome.ok, outcome.why
    assert (tmp_path / "got.arg").read_text() == "./-dir/a b.txt"
    assert (tmp_path / "got.env").read_text() == "-dir/a b.txt"
    assert (tmp_path / "got.bytes").read_bytes() == b"hello world"


def test_a_command_that_fails_is_not_delivered_and_waits_longer_each_time() -> None:
    failing = ExecSink([sys.executable, "-c", "import sys; sys.stdin.read(); sys.exit(4)"])
    outcome = failing.run("a.txt", [b"x"])
    assert not outcome.ok and "status 4" in outcome.why
    lazy = ExecSink([sys.executable, "-c", "pass"])  # exits 0 having read nothing
    assert not lazy.run("a.txt", [os.urandom(4 * MIB)]).ok
    assert backoff(1) < backoff(2) < backoff(3) and backoff(50) == backoff(60)
