"""The tree hash against botocore's reference, and the alignment predicates."""

from __future__ import annotations

import hashlib
import io
import random

import pytest
from botocore.utils import calculate_tree_hash
from hypothesis import given, settings
from hypothesis import strategies as st

from glacierfs.treehash import (
    MIB,
    combine,
    is_megabyte_aligned,
    is_tree_hash_aligned,
    leaf_digests,
    range_root,
    tree_hash,
)

EDGE_SIZES = [0, 1, MIB - 1, MIB, MIB + 1, 2 * MIB, 3 * MIB, 5 * MIB + 7, 7 * MIB]


def data_of(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def reference(data: bytes) -> str:
    return calculate_tree_hash(io.BytesIO(data))


@pytest.mark.parametrize("size", EDGE_SIZES)
def test_tree_hash_matches_botocore_at_edge_sizes(size: int) -> None:
    data = data_of(size, size)
    assert tree_hash(data) == reference(data)


@settings(max_examples=25, deadline=None)
@given(st.integers(min_value=0, max_value=9 * MIB), st.integers(0, 2**32))
def test_tree_hash_matches_botocore_for_random_sizes(size: int, seed: int) -> None:
    data = data_of(size, seed)
    assert tree_hash(data) == reference(data)


def test_empty_data_hashes_to_sha256_of_nothing() -> None:
    assert tree_hash(b"") == hashlib.sha256(b"").hexdigest()
    assert leaf_digests(b"") == []


def test_leaves_are_one_mib_and_the_last_is_short() -> None:
    data = data_of(2 * MIB + 10)
    digests = leaf_digests(data)
    assert digests == [hashlib.sha256(data[i : i + MIB]).digest() for i in (0, MIB, 2 * MIB)]


def _nodes(leaves: list[bytes]) -> set[bytes]:
    """Every node of the tree Glacier builds over ``leaves``."""
    level, nodes = list(leaves), set(leaves)
    while len(level) > 1:
        paired = [
            hashlib.sha256(level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
        nodes.update(level)
    return nodes


@settings(max_examples=30, deadline=None)
@given(st.integers(min_value=1, max_value=11), st.integers(0, MIB - 1))
def test_every_tree_hash_aligned_range_is_a_node_of_the_whole_tree(leaves: int, tail: int) -> None:
    size = (leaves - 1) * MIB + max(tail, 1)
    data = data_of(size, leaves)
    digests = leaf_digests(data)
    nodes = _nodes(digests)
    aligned = 0
    for start in range(0, size, MIB):
        for end in sorted({min(start + n * MIB, size) - 1 for n in range(1, leaves + 1)}):
            if end < start:
                continue
            if is_tree_hash_aligned(start, end, size):
                aligned += 1
                root = range_root(digests, start, end)
                assert root in nodes
                assert root.hex() == tree_hash(data[start : end + 1])
    assert aligned >= leaves


@pytest.mark.parametrize(
    ("start", "end", "size", "aligned"),
    [
        (0, MIB - 1, 4 * MIB, True),
        (MIB, 2 * MIB - 1, 4 * MIB, True),
        (0, 2 * MIB - 1, 4 * MIB, True),
        (MIB, 3 * MIB - 1, 4 * MIB, False),  # 2 MiB long but starts at 1 MiB
        (0, 3 * MIB - 1, 4 * MIB, False),  # 3 MiB is not a power of two
        (2 * MIB, 3 * MIB + 99, 3 * MIB + 100, True),  # the tail, from a multiple of 2 MiB
        (MIB, 3 * MIB + 99, 3 * MIB + 100, False),  # tail of 2.x MiB rounds to 4 MiB
        (0, 3 * MIB + 99, 3 * MIB + 100, True),  # the whole data
        (0, 99, 100, True),
        (0, 49, 100, False),  # not 1 MiB x 2^k and not to the end
        (3 * MIB, 3 * MIB + 99, 3 * MIB + 100, True),  # a short last leaf alone
    ],
)
def test_tree_hash_alignment_examples(start: int, end: int, size: int, aligned: bool) -> None:
    assert is_tree_hash_aligned(start, end, size) is aligned


def test_spec_examples_of_three_point_one_megabytes() -> None:
    size = int(3.1 * MIB)
    assert is_tree_hash_aligned(MIB, 2 * MIB - 1, size)  # "starts at 1 MB and ends at 2 MB"
    assert is_tree_hash_aligned(2 * MIB, size - 1, size)  # "starts at 2 MB ... to the end"


@pytest.mark.parametrize(
    ("start", "end", "size", "aligned"),
    [
        (0, MIB - 1, 3 * MIB, True),
        (MIB, 3 * MIB - 1, 3 * MIB, True),
        (MIB, 2 * MIB + 5, 2 * MIB + 6, True),  # ends at the end of the data
        (1, MIB, 3 * MIB, False),
        (0, MIB, 3 * MIB, False),
        (0, MIB - 2, 3 * MIB, False),
    ],
)
def test_megabyte_alignment_examples(start: int, end: int, size: int, aligned: bool) -> None:
    assert is_megabyte_aligned(start, end, size) is aligned


@pytest.mark.parametrize(("start", "end", "size"), [(-1, 5, 10), (5, 4, 10), (0, 10, 10)])
def test_ranges_outside_the_data_are_rejected(start: int, end: int, size: int) -> None:
    with pytest.raises(ValueError):
        is_tree_hash_aligned(start, end, size)
    with pytest.raises(ValueError):
        is_megabyte_aligned(start, end, size)


def test_range_root_refuses_partial_leaves() -> None:
    digests = leaf_digests(data_of(3 * MIB))
    with pytest.raises(ValueError):
        range_root(digests, 1, MIB - 1)
    with pytest.raises(ValueError):
        range_root(digests, 0, MIB + 5)  # ends inside a leaf that is not the last
    with pytest.raises(ValueError):
        range_root(digests, 0, 4 * MIB - 1)  # past the leaves given


def test_combine_of_one_digest_is_itself_and_of_none_is_the_empty_hash() -> None:
    digest = hashlib.sha256(b"x").digest()
    assert combine([digest]) == digest
    assert combine([]) == hashlib.sha256(b"").digest()
