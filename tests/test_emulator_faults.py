"""The emulator's injected faults and counters, each seen by a plain botocore client
exactly as set, on one job while a second job stays unaffected.

No timing is asserted: latency, bandwidth and stall are checked through the admin
request log, and the bytes through the counters.
"""

from __future__ import annotations

import http.client
import io
import json
from typing import Any

import pytest
from botocore.exceptions import BotoCoreError, ClientError
from botocore.utils import calculate_tree_hash
from urllib3.exceptions import ProtocolError

from glacierfs.emulator.transfer import Nic
from tests.support.emulator import Emulator
from tests.support.vault import retrieve

MIB = 1 << 20
VAULT = "faults"
SIZE = 3 * MIB + 11


class Two:
    """One seeded archive and two whole-archive jobs on it: ``hit`` and ``spared``."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator, self.client = emulator, emulator.client()
        self.client.create_vault(vaultName=VAULT)
        self.archive_id, self.checksum = emulator.seeded_archive(VAULT, SIZE, 5, "faulty")
        self.hit = retrieve(self.client, VAULT, self.archive_id)
        self.spared = retrieve(self.client, VAULT, self.archive_id)
        self.content = emulator.content(VAULT, self.archive_id)

    def get(self, job_id: str, byte_range: str | None = None) -> tuple[dict[str, Any], bytes]:
        kwargs = {"range": byte_range} if byte_range is not None else {}
        response = self.client.get_job_output(vaultName=VAULT, jobId=job_id, **kwargs)
        return response, response["body"].read()

    def describe(self, job_id: str) -> dict[str, Any]:
        return dict(self.client.describe_job(vaultName=VAULT, jobId=job_id))

    def spared_is_whole(self) -> None:
        response, body = self.get(self.spared)
        assert body == self.content and response["checksum"] == self.checksum


@pytest.fixture
def two(emulator: Emulator) -> Two:
    return Two(emulator)


def tree(data: bytes) -> str:
    return str(calculate_tree_hash(io.BytesIO(data)))


def refused(call: Any) -> tuple[int, str]:
    with pytest.raises(ClientError) as caught:
        call()
    response = caught.value.response
    assert response["Error"]["Message"]
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


ERRORS = [
    ("throttle", 400, "ThrottlingException"),
    ("error500", 500, "ServiceUnavailableException"),
    ("error503", 503, "ServiceUnavailableException"),
    ("timeout408", 408, "RequestTimeoutException"),
]


@pytest.mark.parametrize(("kind", "status", "code"), ERRORS)
def test_error_fault_answers_its_status_and_code_for_its_job_only(
    two: Two, kind: str, status: int, code: str
) -> None:
    two.emulator.fault(kind, job=two.hit)
    for _ in range(2):
        assert refused(lambda: two.get(two.hit)) == (status, code)
        assert refused(lambda: two.describe(two.hit)) == (status, code)
    two.spared_is_whole()
    assert two.describe(two.spared)["StatusCode"] == "Succeeded"


@pytest.mark.parametrize(("kind", "status", "code"), ERRORS)
def test_error_fault_with_count_2_lets_the_third_request_through(
    two: Two, kind: str, status: int, code: str
) -> None:
    two.emulator.fault(kind, job=two.hit, count=2)
    assert refused(lambda: two.get(two.hit)) == (status, code)
    assert refused(lambda: two.get(two.hit)) == (status, code)
    assert two.get(two.hit)[1] == two.content
    assert two.emulator.admin("GET", "faults") == []


def test_fault_at_rate_0_never_fires_and_at_rate_1_always_does(two: Two) -> None:
    never = two.emulator.fault("throttle", job=two.hit, rate=0)
    for _ in range(20):
        assert two.describe(two.hit)["JobId"] == two.hit
    two.emulator.admin("DELETE", f"faults/{never}")
    two.emulator.fault("throttle", job=two.hit, rate=1)
    for _ in range(20):
        assert refused(lambda: two.describe(two.hit)) == (400, "ThrottlingException")
    assert two.describe(two.spared)["JobId"] == two.spared


def read_until_cut(two: Two, job_id: str) -> tuple[int, BaseException]:
    """Bytes received before the body failed, and how it failed."""
    received = 0
    with pytest.raises((BotoCoreError, ProtocolError, http.client.IncompleteRead)) as caught:
        response = two.client.get_job_output(vaultName=VAULT, jobId=job_id)
        assert int(response["ResponseMetadata"]["HTTPHeaders"]["content-length"]) == SIZE
        for chunk in response["body"].iter_chunks(64 * 1024):
            received += len(chunk)
    return received, caught.value


def test_reset_fault_breaks_the_connection_part_way_through_the_body(two: Two) -> None:
    two.emulator.fault("reset", job=two.hit, count=1, at=MIB)
    received, _ = read_until_cut(two, two.hit)
    assert received <= MIB < SIZE
    two.spared_is_whole()
    assert two.get(two.hit)[1] == two.content  # count=1: spent


def test_short_fault_ends_the_body_cleanly_short_of_its_content_length(two: Two) -> None:
    two.emulator.fault("short", job=two.hit, at=MIB + 5)
    received, _ = read_until_cut(two, two.hit)
    assert received == MIB + 5
    two.spared_is_whole()


def test_flip_fault_changes_exactly_one_byte_under_the_correct_checksum(two: Two) -> None:
    at = MIB + 12345
    two.emulator.fault("flip", job=two.hit, at=at)
    response, body = two.get(two.hit)
    assert len(body) == SIZE
    assert [i for i in range(SIZE) if body[i] != two.content[i]] == [at]
    assert response["checksum"] == two.checksum
    assert tree(body) != response["checksum"]
    two.spared_is_whole()


def test_stall_fault_still_delivers_the_whole_body(two: Two) -> None:
    two.emulator.fault("stall", job=two.hit, at=MIB, ms=50)
    response, body = two.get(two.hit)
    assert body == two.content and tree(body) == response["checksum"]
    log = two.emulator.requests()
    assert [e["faults"] for e in log if e["operation"] == "GetJobOutput"] == [["stall"]]


def test_bad_content_range_fault_answers_a_range_not_the_one_asked(two: Two) -> None:
    two.emulator.fault("bad-content-range", job=two.hit)
    asked = f"bytes 0-{MIB - 1}/{SIZE}"
    response, _ = two.get(two.hit, f"bytes=0-{MIB - 1}")
    assert response["status"] == 206 and response["contentRange"] != asked
    response, body = two.get(two.spared, f"bytes=0-{MIB - 1}")
    assert response["contentRange"] == asked and body == two.content[:MIB]


def test_drop_checksum_fault_sends_the_right_bytes_without_their_due_checksum(two: Two) -> None:
    two.emulator.fault("drop-checksum", job=two.hit, count=2)
    whole, body = two.get(two.hit)
    assert body == two.content and "checksum" not in whole
    leaf, body = two.get(two.hit, f"bytes={MIB}-{2 * MIB - 1}")
    assert body == two.content[MIB : 2 * MIB] and "checksum" not in leaf
    assert "x-amz-sha256-tree-hash" not in leaf["ResponseMetadata"]["HTTPHeaders"]
    assert two.get(two.hit)[0]["checksum"] == two.checksum  # count=2: spent
    two.spared_is_whole()


def test_drop_checksum_fault_touches_only_get_job_output(two: Two) -> None:
    two.emulator.fault("drop-checksum")
    assert two.describe(two.hit)["SHA256TreeHash"] == two.checksum
    assert "checksum" not in two.get(two.spared)[0]


@pytest.mark.parametrize(
    ("kind", "spec"), [("latency", {"ms": 20}), ("bandwidth", {"bps": 1 << 28})]
)
def test_network_shape_fault_is_applied_to_its_job_only(
    two: Two, kind: str, spec: dict[str, Any]
) -> None:
    two.emulator.fault(kind, job=two.hit, **spec)
    assert two.get(two.hit)[1] == two.content
    two.spared_is_whole()
    log = [e for e in two.emulator.requests() if e["operation"] == "GetJobOutput"]
    assert [(e["job"], e["faults"]) for e in log] == [(two.hit, [kind]), (two.spared, [])]


def test_bad_json_fault_cuts_the_describe_job_body_short(two: Two) -> None:
    """botocore's rest-json parser does not raise on a body that is not JSON: it gives a
    record with none of the job's fields, which a client must notice by itself."""
    bodies: list[bytes] = []

    def keep_body(response_dict: dict[str, Any], **kwargs: Any) -> None:
        bodies.append(response_dict["body"])

    two.client.meta.events.register("before-parse.glacier.DescribeJob", keep_body)
    two.emulator.fault("bad-json", job=two.hit, operation="DescribeJob")
    record = two.describe(two.hit)
    assert record["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert not {"JobId", "StatusCode", "Completed"} & record.keys()
    with pytest.raises(ValueError):
        json.loads(bodies[-1])
    assert two.describe(two.spared)["JobId"] == two.spared
    assert json.loads(bodies[-1])["JobId"] == two.spared
    assert two.get(two.hit)[1] == two.content  # only DescribeJob answers JSON


def test_faults_are_listed_removed_one_by_one_and_cleared(two: Two) -> None:
    emulator = two.emulator
    first = emulator.fault("throttle", job=two.hit, count=3)
    second = emulator.fault("latency", ms=5, rate=0.5)
    listed = {f["id"]: f for f in emulator.admin("GET", "faults")}
    assert listed.keys() == {first, second}
    assert (listed[first]["kind"], listed[first]["job"], listed[first]["count"]) == (
        "throttle",
        two.hit,
        3,
    )
    assert (listed[second]["kind"], listed[second]["ms"], listed[second]["rate"]) == (
        "latency",
        5,
        0.5,
    )
    emulator.admin("DELETE", f"faults/{first}")
    assert [f["id"] for f in emulator.admin("GET", "faults")] == [second]
    assert two.describe(two.hit)["JobId"] == two.hit
    with pytest.raises(AssertionError, match="no fault"):
        emulator.admin("DELETE", f"faults/{first}")
    emulator.fault("error500")
    emulator.clear_faults()
    assert emulator.admin("GET", "faults") == []
    two.spared_is_whole()


def test_unknown_fault_kind_is_refused(emulator: Emulator) -> None:
    with pytest.raises(AssertionError, match="InvalidParameterValueException"):
        emulator.fault("meteor")


def test_counters_add_each_output_body_to_its_job_and_reset_zeroes_them(two: Two) -> None:
    two.emulator.reset_counters()
    assert two.get(two.hit, f"bytes={MIB}-{2 * MIB - 1}")[1] == two.content[MIB : 2 * MIB]
    counters = two.emulator.counters()
    assert counters["jobs"] == {two.hit: {"requests": 1, "bytes": MIB}}
    assert counters["operations"]["GetJobOutput"] == {"requests": 1, "bytes": MIB}
    two.get(two.hit)
    two.get(two.spared, "bytes=0-99")
    jobs = two.emulator.counters()["jobs"]
    assert jobs[two.hit] == {"requests": 2, "bytes": MIB + SIZE}
    assert jobs[two.spared] == {"requests": 1, "bytes": 100}
    two.emulator.reset_counters()
    counters = two.emulator.counters()
    assert (counters["requests"], counters["bytes"], counters["jobs"]) == (0, 0, {})
    assert two.emulator.requests() == []


def test_counters_count_the_faults_applied_per_kind(two: Two) -> None:
    """An error answer counts as its one fault: others that matched were not applied."""
    emulator = two.emulator
    emulator.fault("bandwidth", bps=1 << 30, count=1)
    emulator.reset_counters()
    assert refused(lambda: two.get("no-such-job")) == (404, "ResourceNotFoundException")
    assert emulator.counters()["faults"] == {}  # it struck an answer with no body
    emulator.fault("throttle", job=two.hit, operation="DescribeJob", count=2)
    emulator.fault("flip", job=two.hit, count=1)
    emulator.fault("latency", job=two.hit, operation="GetJobOutput", ms=1, count=1)
    emulator.fault("error500", job=two.spared, operation="GetJobOutput", count=1)
    emulator.fault("stall", job=two.spared, ms=1, count=1)
    emulator.reset_counters()
    for _ in range(2):
        assert refused(lambda: two.describe(two.hit)) == (400, "ThrottlingException")
    assert two.describe(two.hit)["JobId"] == two.hit
    assert two.get(two.hit)[1] != two.content
    assert two.get(two.hit)[1] == two.content
    assert refused(lambda: two.get(two.spared)) == (500, "ServiceUnavailableException")
    two.spared_is_whole()
    struck = {"throttle": 2, "flip": 1, "latency": 1, "error500": 1}
    assert emulator.counters()["faults"] == struck
    emulator.reset_counters()
    assert emulator.counters()["faults"] == {}


def test_counters_count_only_the_bytes_a_cut_body_sent(two: Two) -> None:
    two.emulator.fault("short", job=two.hit, at=1000)
    two.emulator.reset_counters()
    read_until_cut(two, two.hit)
    assert two.emulator.counters()["jobs"][two.hit] == {"requests": 1, "bytes": 1000}


def test_the_total_cap_gives_each_piece_its_turn_on_one_wire() -> None:
    now = [100.0]
    nic = Nic(1000, clock=lambda: now[0])  # 1,000 bytes/s for every connection together
    assert nic.turn(500) == 100.5
    assert nic.turn(500) == 101.0  # another connection's piece asked at once: after it
    now[0] = 105.0  # the wire idle meanwhile: no credit saved up
    assert nic.turn(100) == 105.1
