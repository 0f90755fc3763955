"""Tests of the local Earth Engine emulator and the loopback OAuth token server."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import pytest
import requests
from google.auth.transport.requests import AuthorizedSession
from google.oauth2 import service_account

from deploy.local.ee_emulator import EmulatorAdmin, EmulatorAdminError, EmulatorServer
from deploy.local.token_server import TokenServer, make_service_account_key

ROOT = Path(__file__).resolve().parents[2]
EE_SCOPE = "https://www.googleapis.com/auth/earthengine"
OP = "projects/p/operations/OP1"
CANCEL_DELAY = 0.1
TIMEOUT = 5


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    server = EmulatorServer(projects=["p", "empty-project"], cancel_delay=CANCEL_DELAY).start()
    yield server
    server.stop()


@pytest.fixture
def admin(emulator: EmulatorServer) -> EmulatorAdmin:
    admin = EmulatorAdmin(emulator.url)
    admin.add_operations(
        [
            {"name": OP, "state": "RUNNING", "description": "export 1"},
            {"name": "projects/p/operations/PEND", "state": "PENDING"},
            {"name": "projects/p/operations/DONE", "state": "SUCCEEDED"},
            {"name": "projects/p/operations/BAD", "state": "FAILED", "errorMessage": "boom"},
            {"name": "projects/p/operations/FINISHES", "finishAs": "SUCCEEDED"},
        ]
    )
    return admin


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def url(emulator: EmulatorServer, name: str = OP, version: str = "v1beta", suffix: str = "") -> str:
    return f"{emulator.url}/{version}/{name}{suffix}"


def cancel(http: requests.Session, emulator: EmulatorServer, name: str = OP) -> requests.Response:
    return http.post(url(emulator, name, suffix=":cancel"), timeout=TIMEOUT)


def get(http: requests.Session, emulator: EmulatorServer, name: str = OP) -> requests.Response:
    return http.get(url(emulator, name), timeout=TIMEOUT)


def error_status(response: requests.Response) -> str:
    assert response.headers["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == response.status_code
    assert error["message"]
    return str(error["status"])


# -- routes and versions ---------------------------------------------------------


@pytest.mark.parametrize("version", ["v1", "v1beta", "v1alpha"])
def test_every_route_answers_in_every_version(version, emulator, admin, http):
    got = http.get(url(emulator, OP, version), timeout=TIMEOUT)
    listed = http.get(f"{emulator.url}/{version}/projects/p/operations", timeout=TIMEOUT)
    cancelled = http.post(url(emulator, OP, version, ":cancel"), timeout=TIMEOUT)

    assert got.status_code == 200
    assert got.json()["name"] == OP
    assert got.json()["metadata"]["@type"].endswith(f".{version}.OperationMetadata")
    assert got.json()["metadata"]["description"] == "export 1"
    assert listed.status_code == 200
    assert listed.json()["operations"][0]["name"] == OP
    assert "nextPageToken" not in listed.json()
    assert cancelled.status_code == 200
    assert cancelled.json() == {}


@pytest.mark.parametrize("version", ["v2", "v1beta2", "V1"])
def test_unknown_version_is_not_found(version, emulator, admin, http):
    for response in (
        http.get(url(emulator, OP, version), timeout=TIMEOUT),
        http.post(url(emulator, OP, version, ":cancel"), timeout=TIMEOUT),
    ):
        assert response.status_code == 404
        assert error_status(response) == "NOT_FOUND"
    assert admin.operations("RUNNING")[0]["name"] == OP


def test_wrong_method_and_unknown_paths_are_not_found(emulator, admin, http):
    responses = [
        http.delete(url(emulator), timeout=TIMEOUT),
        http.get(url(emulator, suffix=":cancel"), timeout=TIMEOUT),
        http.put(url(emulator, suffix=":cancel"), timeout=TIMEOUT),
        http.get(f"{emulator.url}/", timeout=TIMEOUT),
        http.get(f"{emulator.url}/v1beta/projects/p", timeout=TIMEOUT),
        http.post(url(emulator, suffix=":delete"), timeout=TIMEOUT),
    ]
    assert [r.status_code for r in responses] == [404] * len(responses)
    assert {error_status(r) for r in responses} == {"NOT_FOUND"}


def test_odd_raw_paths_never_crash_the_server(emulator, admin):
    odd = [
        ("POST", "/v1beta/projects/p/operations/..%2F..%2FOP1:cancel"),
        ("POST", "/v1beta/projects/p/operations/../operations/OP1:cancel"),
        ("GET", "/v1beta/projects/p%2Foperations%2FOP1/operations/OP1"),
        ("GET", "/v1beta/projects/p/operations/OP1%3Acancel"),
        ("GET", "/v1beta/projects/p/operations/%ZZ"),
        ("GET", "/v1beta/projects/p/operations?pageSize=%FF%FE"),
        ("GET", "//v1beta//projects/p/operations/OP1"),
        ("POST", "/v1beta/projects/p/operations/OP1:cancel:cancel"),
    ]
    connection = HTTPConnection("127.0.0.1", int(emulator.host_port.split(":")[1]))
    statuses = []
    for method, path in odd:
        connection.request(method, path)
        response = connection.getresponse()
        body = json.loads(response.read())
        statuses.append(response.status)
        assert response.status in (400, 403, 404)
        assert body["error"]["code"] == response.status
    connection.close()

    assert statuses[0] == 404
    assert admin.operations("RUNNING")[0]["name"] == OP


def test_query_on_cancel_is_ignored(emulator, admin, http):
    response = http.post(url(emulator, suffix=":cancel?alt=json"), timeout=TIMEOUT)
    assert response.status_code == 200
    assert get(http, emulator).json()["metadata"]["state"] == "CANCELLING"


def test_malformed_http_gets_a_json_error_and_the_server_survives(emulator, admin, http):
    host, port = emulator.host_port.split(":")
    with socket.create_connection((host, int(port)), timeout=TIMEOUT) as raw:
        raw.sendall(b"POST /v1beta/projects/p/operations/OP1:cancel HTTP/1.1\r\n")
        raw.sendall(b"Host: x\r\nContent-Length: banana\r\n\r\n")
        reply = raw.recv(65536)
    assert reply.startswith(b"HTTP/1.1 400")
    assert b'"INVALID_ARGUMENT"' in reply
    assert get(http, emulator).status_code == 200


# -- state transitions -------------------------------------------------------------


def test_cancel_goes_cancelling_then_cancelled(emulator, admin, http):
    assert cancel(http, emulator).json() == {}
    cancelling = get(http, emulator).json()
    assert cancelling["metadata"]["state"] == "CANCELLING"
    assert cancelling["done"] is False
    assert "error" not in cancelling
    assert cancel(http, emulator).status_code == 200

    time.sleep(CANCEL_DELAY + 0.05)
    cancelled = get(http, emulator).json()

    assert cancelled["metadata"]["state"] == "CANCELLED"
    assert cancelled["done"] is True
    assert cancelled["error"]["code"] == 1
    assert "endTime" in cancelled["metadata"]
    again = cancel(http, emulator)
    assert again.status_code == 400
    assert error_status(again) == "FAILED_PRECONDITION"
    assert "CANCELLED" in again.json()["error"]["message"]


def test_pending_operations_cancel_too(emulator, admin, http):
    assert cancel(http, emulator, "projects/p/operations/PEND").status_code == 200
    assert get(http, emulator, "projects/p/operations/PEND").json()["metadata"]["state"] == (
        "CANCELLING"
    )


def test_an_operation_can_finish_anyway_after_cancel(emulator, admin, http):
    name = "projects/p/operations/FINISHES"
    assert cancel(http, emulator, name).status_code == 200
    time.sleep(CANCEL_DELAY + 0.05)
    op = get(http, emulator, name).json()
    assert op["metadata"]["state"] == "SUCCEEDED"
    assert op["response"]["@type"].endswith("google.protobuf.Empty")


@pytest.mark.parametrize("name,state", [("DONE", "SUCCEEDED"), ("BAD", "FAILED")])
def test_cancel_of_a_done_operation_is_failed_precondition(name, state, emulator, admin, http):
    response = cancel(http, emulator, f"projects/p/operations/{name}")

    assert response.status_code == 400
    assert error_status(response) == "FAILED_PRECONDITION"
    assert f"state {state}" in response.json()["error"]["message"]
    assert get(http, emulator, f"projects/p/operations/{name}").json()["done"] is True


def test_done_operations_carry_error_or_response(emulator, admin, http):
    failed = get(http, emulator, "projects/p/operations/BAD").json()
    succeeded = get(http, emulator, "projects/p/operations/DONE").json()
    assert failed["error"] == {"code": 13, "message": "boom"}
    assert succeeded["response"] == {"@type": "type.googleapis.com/google.protobuf.Empty"}
    assert "endTime" in succeeded["metadata"]


def test_unknown_operation_is_not_found(emulator, admin, http):
    for response in (
        cancel(http, emulator, "projects/p/operations/NOPE"),
        get(http, emulator, "projects/p/operations/NOPE"),
    ):
        assert response.status_code == 404
        assert error_status(response) == "NOT_FOUND"


def test_unknown_project_is_permission_denied(emulator, admin, http):
    for response in (
        cancel(http, emulator, "projects/stranger/operations/OP1"),
        get(http, emulator, "projects/stranger/operations/OP1"),
        http.get(f"{emulator.url}/v1beta/projects/stranger/operations", timeout=TIMEOUT),
    ):
        assert response.status_code == 403
        assert error_status(response) == "PERMISSION_DENIED"


def test_cancel_with_a_body_is_invalid_and_changes_nothing(emulator, admin, http):
    response = http.post(url(emulator, suffix=":cancel"), data=b"{}", timeout=TIMEOUT)

    assert response.status_code == 400
    assert error_status(response) == "INVALID_ARGUMENT"
    assert get(http, emulator).json()["metadata"]["state"] == "RUNNING"


def test_chunked_body_is_read_and_rejected(emulator, admin, http):
    response = http.post(url(emulator, suffix=":cancel"), data=iter([b"x", b"yz"]), timeout=TIMEOUT)
    assert response.status_code == 400
    assert get(http, emulator).status_code == 200


# -- list paging -------------------------------------------------------------------


def test_paging_1234_operations_with_page_size_500(emulator, http):
    admin = EmulatorAdmin(emulator.url)
    assert admin.add_operations(generate={"project": "p", "count": 1234, "prefix": "G"}) == 1234
    pages: list[list[str]] = []
    token = ""
    while True:
        params = {"pageSize": "500", **({"pageToken": token} if token else {})}
        body = http.get(
            f"{emulator.url}/v1/projects/p/operations", params=params, timeout=TIMEOUT
        ).json()
        pages.append([op["name"] for op in body["operations"]])
        token = body.get("nextPageToken", "")
        if not token:
            break

    names = [name for page in pages for name in page]
    assert [len(page) for page in pages] == [500, 500, 234]
    assert names == [f"projects/p/operations/G{i:04d}" for i in range(1234)]


def test_page_size_defaults_and_clamps(emulator, http):
    EmulatorAdmin(emulator.url).add_operations(generate={"project": "p", "count": 600})
    list_url = f"{emulator.url}/v1beta/projects/p/operations"

    default = http.get(list_url, timeout=TIMEOUT).json()
    clamped = http.get(list_url, params={"pageSize": "10000"}, timeout=TIMEOUT).json()

    assert len(default["operations"]) == 50
    assert len(clamped["operations"]) == 500
    assert "nextPageToken" in clamped


@pytest.mark.parametrize(
    "params", [{"pageSize": "ten"}, {"pageSize": "-1"}, {"pageToken": "bogus"}, {"pageToken": "x"}]
)
def test_bad_paging_arguments_are_invalid(params, emulator, admin, http):
    response = http.get(f"{emulator.url}/v1beta/projects/p/operations", params=params, timeout=5)
    assert response.status_code == 400
    assert error_status(response) == "INVALID_ARGUMENT"


def test_page_token_belongs_to_its_project(emulator, http):
    admin = EmulatorAdmin(emulator.url)
    admin.add_operations(generate=[{"project": "p", "count": 3}, {"project": "q", "count": 3}])
    first = http.get(
        f"{emulator.url}/v1beta/projects/p/operations", params={"pageSize": 1}, timeout=TIMEOUT
    ).json()
    reused = http.get(
        f"{emulator.url}/v1beta/projects/q/operations",
        params={"pageToken": first["nextPageToken"]},
        timeout=TIMEOUT,
    )
    assert reused.status_code == 400


def test_empty_project_lists_nothing(emulator, http):
    body = http.get(f"{emulator.url}/v1beta/projects/empty-project/operations", timeout=5).json()
    assert body.get("operations", []) == []
    assert "nextPageToken" not in body


# -- faults ------------------------------------------------------------------------


def test_429_fault_sends_retry_after_only_to_matching_methods(emulator, admin, http):
    admin.set_faults([{"methods": ["cancel"], "httpStatus": 429, "retryAfter": 1}])

    throttled = cancel(http, emulator)
    got = get(http, emulator)

    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "1"
    assert error_status(throttled) == "RESOURCE_EXHAUSTED"
    assert got.status_code == 200
    assert got.json()["metadata"]["state"] == "RUNNING"


def test_503_fault_spent_after_times(emulator, admin, http):
    admin.set_faults([{"httpStatus": 503, "times": 2}])

    statuses = [cancel(http, emulator).status_code for _ in range(3)]

    assert statuses == [503, 503, 200]
    assert admin.stats()["byStatus"] == {"503": 2, "200": 1}


def test_fault_status_names_follow_the_http_status(emulator, admin, http):
    expected = {500: "INTERNAL", 502: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED", 501: "UNIMPLEMENTED"}
    for code, status in expected.items():
        admin.set_faults([{"httpStatus": code, "times": 1}])
        response = get(http, emulator)
        assert response.status_code == code
        assert error_status(response) == status


def test_path_regex_limits_a_fault(emulator, admin, http):
    admin.set_faults([{"pathRegex": "PEND", "httpStatus": 500}])
    assert get(http, emulator).status_code == 200
    assert get(http, emulator, "projects/p/operations/PEND").status_code == 500


def test_reset_fault_drops_the_connection(emulator, admin, http):
    assert get(http, emulator).status_code == 200
    admin.set_faults([{"kind": "reset", "methods": ["cancel"], "times": 1}])

    with pytest.raises(requests.exceptions.ConnectionError):
        cancel(http, emulator)

    assert cancel(http, emulator).status_code == 200
    assert [r["status"] for r in admin.requests()] == [200, None, 200]
    assert admin.stats()["byStatus"]["reset"] == 1


def test_latency_fault_delays_then_answers_normally(emulator, admin, http):
    admin.set_faults([{"kind": "latency", "latencyMs": 300, "methods": ["get"]}])
    started = time.monotonic()
    response = get(http, emulator)
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert 0.3 <= elapsed < 2


def test_global_latency_applies_to_every_api_request(emulator, admin, http):
    admin.set_faults(latency_ms=200)
    started = time.monotonic()
    assert cancel(http, emulator).status_code == 200
    admin.stats()
    assert time.monotonic() - started >= 0.2


def test_probability_faults_are_seeded_and_repeatable(emulator, admin, http):
    def run() -> list[int]:
        admin.set_faults([{"httpStatus": 503, "probability": 0.3}], seed=7)
        return [get(http, emulator).status_code for _ in range(100)]

    first, second = run(), run()

    assert first == second
    assert 10 <= first.count(503) <= 60
    assert set(first) == {200, 503}


def test_unimplemented_mode_fails_cancel_only(emulator, admin, http):
    admin.set_faults(unimplemented=True)

    response = cancel(http, emulator)

    assert response.status_code == 501
    assert error_status(response) == "UNIMPLEMENTED"
    assert get(http, emulator).json()["metadata"]["state"] == "RUNNING"


def test_faults_can_be_appended_and_read_back(emulator, admin):
    admin.set_faults([{"httpStatus": 429, "times": 3}])
    admin.set_faults([{"kind": "reset", "probability": 0.5}], append=True)
    config = json.loads(requests.get(f"{emulator.url}/_emulator/faults", timeout=5).text)
    assert [rule["remaining"] for rule in config["faults"]] == [3, None]
    assert [rule.get("kind", "status") for rule in config["faults"]] == ["status", "reset"]


@pytest.mark.parametrize(
    "rule",
    [
        {"kind": "explode"},
        {"methods": ["delete"]},
        {"pathRegex": "("},
        {"probability": 2},
        {"httpStatus": "429"},
    ],
)
def test_bad_fault_rules_are_rejected(rule, emulator, admin):
    with pytest.raises(EmulatorAdminError, match="HTTP 400"):
        admin.set_faults([rule])


# -- authentication ------------------------------------------------------------------


def test_require_token_answers_401_until_the_right_token(emulator, admin, http):
    admin.set_token("tok-a")
    missing = get(http, emulator)
    wrong = http.get(url(emulator), headers={"Authorization": "Bearer nope"}, timeout=TIMEOUT)
    right = http.get(url(emulator), headers={"Authorization": "Bearer tok-a"}, timeout=TIMEOUT)
    admin.set_token("tok-b")
    rotated = http.get(url(emulator), headers={"Authorization": "Bearer tok-a"}, timeout=TIMEOUT)

    assert missing.status_code == 401
    assert error_status(missing) == "UNAUTHENTICATED"
    assert "WWW-Authenticate" in missing.headers
    assert wrong.status_code == 401
    assert right.status_code == 200
    assert rotated.status_code == 401
    assert [r["authorization"] for r in admin.requests()] == [
        None,
        "Bearer nope",
        "Bearer tok-a",
        "Bearer tok-a",
    ]


def test_require_token_from_the_constructor():
    with EmulatorServer(projects=["p"], require_token="secret") as server:
        response = requests.get(f"{server.url}/v1beta/projects/p/operations", timeout=TIMEOUT)
        assert response.status_code == 401
        assert EmulatorAdmin(server.url).stats()["requests"] == 1


# -- admin, request log, stats ---------------------------------------------------------


def test_request_log_records_each_api_request(emulator, admin, http):
    before = time.time()
    cancel(http, emulator)
    http.post(url(emulator, suffix=":cancel"), data=b"abc", timeout=TIMEOUT)
    after = time.time()

    log = admin.requests()

    assert [(r["method"], r["path"], r["status"], r["bodyLength"]) for r in log] == [
        ("POST", f"/v1beta/{OP}:cancel", 200, 0),
        ("POST", f"/v1beta/{OP}:cancel", 400, 3),
    ]
    assert all(before <= r["time"] <= after for r in log)
    assert admin.requests(since=after + 1) == []
    assert len(admin.requests(since=log[1]["time"])) == 1


def test_stats_count_routes_statuses_and_cancellations(emulator, admin, http):
    cancel(http, emulator)
    cancel(http, emulator, "projects/p/operations/PEND")
    cancel(http, emulator, "projects/p/operations/DONE")
    get(http, emulator)
    http.get(f"{emulator.url}/v1beta/projects/p/operations", timeout=TIMEOUT)

    stats = admin.stats()

    assert stats["requests"] == 5
    assert stats["byRoute"] == {"cancel": 3, "get": 1, "list": 1}
    assert stats["byStatus"] == {"200": 4, "400": 1}
    assert stats["cancelled"] == 2
    assert stats["maxInFlight"] == 1


def test_max_per_second_is_a_sliding_window(emulator, admin, http):
    for _ in range(5):
        get(http, emulator)
    time.sleep(1.05)
    for _ in range(3):
        get(http, emulator)
    assert admin.stats()["maxPerSecond"] == 5


def test_concurrent_requests_overlap_under_latency(emulator, admin):
    admin.set_faults(latency_ms=100)
    local = threading.local()

    def one(_: int) -> int:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        return int(local.session.get(url(emulator), timeout=TIMEOUT).status_code)

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=40) as pool:
        statuses = list(pool.map(one, range(200)))
    elapsed = time.monotonic() - started
    stats = admin.stats()

    assert statuses == [200] * 200
    assert elapsed < 2.5, "200 requests of 100 ms over 40 connections must overlap"
    assert 20 <= stats["maxInFlight"] <= 40
    assert stats["maxPerSecond"] >= 100


def test_a_session_reuses_one_connection(emulator, admin, http):
    for _ in range(20):
        assert get(http, emulator).status_code == 200
    assert admin.stats()["connections"] == 1


def test_admin_filters_generates_and_resets(emulator, admin, http):
    added = admin.add_operations(
        generate=[
            {"project": "p2", "count": 3, "state": "PENDING", "prefix": "A"},
            {"project": "p2", "count": 2, "state": "SUCCEEDED", "ageSeconds": 3600},
        ]
    )
    assert added == 5
    assert [op["name"] for op in admin.operations("PENDING")] == [
        "projects/p/operations/PEND",
        "projects/p2/operations/A0000",
        "projects/p2/operations/A0001",
        "projects/p2/operations/A0002",
    ]
    assert get(http, emulator, "projects/p2/operations/A0001").status_code == 200
    cancel(http, emulator)

    admin.reset()

    assert admin.operations() == []
    assert admin.requests() == []
    assert admin.stats()["requests"] == 0
    assert get(http, emulator, "projects/p2/operations/A0001").status_code == 403


@pytest.mark.parametrize(
    "operation",
    [
        {"name": "p/operations/X"},
        {"name": "projects/p/operations/a/b"},
        {"name": OP, "state": "DONE"},
        {"name": OP, "batchEecuUsageSeconds": "lots"},
    ],
)
def test_admin_rejects_bad_operations(operation, emulator, admin):
    with pytest.raises(EmulatorAdminError, match="HTTP 400"):
        admin.add_operations([operation])


def test_seeded_fields_appear_in_the_operation(emulator, http):
    EmulatorAdmin(emulator.url).add_operations(
        [
            {
                "name": "projects/p/operations/S",
                "type": "INGEST_IMAGE",
                "createTime": "2026-12-04T10:00:00Z",
                "batchEecuUsageSeconds": 3.5,
                "priority": 7,
            }
        ]
    )
    metadata = get(http, emulator, "projects/p/operations/S").json()["metadata"]
    assert metadata["type"] == "INGEST_IMAGE"
    assert metadata["createTime"] == "2026-12-04T10:00:00Z"
    assert metadata["batchEecuUsageSeconds"] == 3.5
    assert metadata["priority"] == 7
    assert metadata["state"] == "RUNNING"


def test_in_process_state_access(emulator, admin):
    assert emulator.state.operation(OP) is not None
    assert emulator.state.operation("projects/p/operations/NOPE") is None
    assert emulator.host_port.startswith("127.0.0.1:")


def test_stop_closes_kept_alive_connections(http):
    server = EmulatorServer(projects=["p"]).start()
    list_url = f"{server.url}/v1beta/projects/p/operations"
    assert http.get(list_url, timeout=TIMEOUT).status_code == 200

    server.stop()

    with pytest.raises(requests.exceptions.ConnectionError):
        http.get(list_url, timeout=TIMEOUT)


def test_only_loopback_binds():
    with pytest.raises(ValueError, match="loopback"):
        EmulatorServer("0.0.0.0")


# -- the command line ------------------------------------------------------------------


def test_cli_serves_a_seed_and_stops_on_sigterm(tmp_path: Path):
    seed = tmp_path / "seed.json"
    seed.write_text(
        json.dumps(
            {
                "projects": ["lonely"],
                "generate": {"project": "p", "count": 3},
                "faults": {"faults": [{"methods": ["cancel"], "httpStatus": 429, "times": 1}]},
            }
        )
    )
    port_file = tmp_path / "port"
    process = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "deploy" / "local" / "ee_emulator.py"),
            "--port",
            "0",
            "--port-file",
            str(port_file),
            "--seed",
            str(seed),
            "--cancel-delay",
            "0",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 10
        while not port_file.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        host_port = port_file.read_text()
        base = f"http://{host_port}/v1beta/projects/p/operations/OP0001"
        first = requests.post(base + ":cancel", timeout=TIMEOUT)
        second = requests.post(base + ":cancel", timeout=TIMEOUT)
        state = requests.get(base, timeout=TIMEOUT).json()["metadata"]["state"]
        lonely = requests.get(f"http://{host_port}/v1/projects/lonely/operations", timeout=5)
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, _ = process.communicate(timeout=10)

    assert (first.status_code, second.status_code) == (429, 200)
    assert state == "CANCELLED"
    assert lonely.status_code == 200
    assert process.returncode == 0
    assert stdout.strip() == f"ee-emulator listening on {host_port}"
    assert host_port.startswith("127.0.0.1:")


# -- the token server with google-auth -----------------------------------------------------


def test_google_auth_service_account_round_trip(tmp_path: Path, emulator, admin):
    with TokenServer() as tokens:
        key_file = tmp_path / "key.json"
        info: dict[str, Any] = make_service_account_key(key_file, tokens.url)
        credentials = service_account.Credentials.from_service_account_file(
            str(key_file), scopes=[EE_SCOPE]
        )
        admin.set_token("tok-1")
        session = AuthorizedSession(credentials)

        cancelled = session.post(url(emulator, suffix=":cancel"), timeout=TIMEOUT)
        admin.set_token("tok-2")
        refreshed = session.get(url(emulator), timeout=TIMEOUT)

        assert cancelled.status_code == 200
        assert cancelled.json() == {}
        assert refreshed.status_code == 200
        assert refreshed.json()["metadata"]["state"] == "CANCELLING"
        assert tokens.tokens_issued == ["tok-1", "tok-2"]
        first = tokens.requests[0]
        assert first["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
        assert first["scope"] == EE_SCOPE
        assert first["iss"] == info["client_email"]
        # google-auth always addresses the assertion to Google's endpoint, whatever token_uri says.
        assert first["aud"] == "https://oauth2.googleapis.com/token"
        assert [(r["status"], r["authorization"]) for r in admin.requests()] == [
            (200, "Bearer tok-1"),
            (401, "Bearer tok-1"),
            (200, "Bearer tok-2"),
        ]
        session.close()


def test_token_server_rejects_other_grants():
    with TokenServer() as tokens:
        wrong_grant = requests.post(tokens.url, data={"grant_type": "password"}, timeout=5)
        bad_jwt = requests.post(
            tokens.url,
            data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": "x"},
            timeout=5,
        )
        assert wrong_grant.status_code == 400
        assert wrong_grant.json()["error"] == "unsupported_grant_type"
        assert bad_jwt.status_code == 400
        assert tokens.tokens_issued == []
