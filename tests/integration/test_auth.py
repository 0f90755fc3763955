"""The real credentials path: a generated service-account key and a loopback token server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from deploy.local.stack import Results, Stack
from deploy.local.token_server import TokenServer, make_service_account_key
from tests.integration.conftest import PROJECT

pytestmark = pytest.mark.integration

SCOPE = "https://www.googleapis.com/auth/earthengine"


@pytest.fixture
def token_server() -> Iterator[TokenServer]:
    server = TokenServer().start()
    yield server
    server.stop()


def test_bearer_token_scope_reuse_and_refresh_on_401(
    stack: Stack,
    results_topic: str,
    results: Results,
    token_server: TokenServer,
    ops: Callable[..., list[str]],
    tmp_path: Path,
) -> None:
    key = tmp_path / "key.json"
    make_service_account_key(key, token_server.url, project_id=PROJECT)
    env = stack.function_env(results_topic, GOOGLE_APPLICATION_CREDENTIALS=str(key))
    del env["EE_EMULATOR_HOST"]
    env["EE_API_URL"] = stack.ee.url  # loopback http is allowed for EE_API_URL
    function = stack.function(env)
    stack.admin.set_token("tok-1")
    first, second, third = ops(3)

    status, message_id = function.post_event(first)
    [outcome] = results.wait_for(message_id)
    assert status == 200 and outcome["status"] == "OK"
    _, message_id = function.post_event(second)
    assert results.wait_for(message_id)[0]["status"] == "OK"

    # One token for both messages, asked with the Earth Engine scope, sent as a bearer token.
    assert token_server.tokens_issued == ["tok-1"]
    assert token_server.requests[0]["scope"] == SCOPE
    cancels = [r for r in stack.admin.requests() if r["path"].endswith(":cancel")]
    assert {r["authorization"] for r in cancels[-2:]} == {"Bearer tok-1"}

    # The server stops accepting tok-1: the function refreshes once and succeeds.
    stack.admin.set_token("tok-2")
    _, message_id = function.post_event(third)
    assert results.wait_for(message_id)[0]["status"] == "OK"
    assert token_server.tokens_issued == ["tok-1", "tok-2"]
    last = [r for r in stack.admin.requests() if r["path"].endswith(":cancel")][-2:]
    assert [r["status"] for r in last] == [401, 200]
    log = Path(function.log_path or "").read_text()
    assert "tok-1" not in log and "tok-2" not in log and "PRIVATE KEY" not in log


def test_a_token_that_stays_refused_is_unauthenticated(
    stack: Stack, results_topic: str, results: Results, token_server: TokenServer, tmp_path: Path
) -> None:
    key = tmp_path / "key.json"
    make_service_account_key(key, token_server.url, project_id=PROJECT)
    env = stack.function_env(results_topic, GOOGLE_APPLICATION_CREDENTIALS=str(key))
    del env["EE_EMULATOR_HOST"]
    env["EE_API_URL"] = stack.ee.url
    function = stack.function(env)
    stack.admin.set_token("never-issued")
    status, message_id = function.post_event("ANYOP")
    [outcome] = results.wait_for(message_id)
    assert status == 200
    assert (outcome["status"], outcome["code"], outcome["httpStatus"]) == (
        "UNAUTHENTICATED",
        16,
        401,
    )
    assert len(token_server.tokens_issued) == 2  # the first token and exactly one refresh
