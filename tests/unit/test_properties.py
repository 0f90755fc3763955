"""Properties: no message can make a URL outside the API root, or an unhandled exception."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lib.cancel import Engine
from lib.earthengine import RestEarthEngine
from lib.events import message_from_event
from lib.logs import Log
from lib.messages import Message
from lib.ratelimit import Gate
from lib.retry import Retrier
from tests.unit.fakes import FakeClock, FakePublisher, config

CONFIG = config(EE_PROJECTS="ee-project,*", EE_API_URL="https://ee.example.com")
ROOT = "https://ee.example.com/v1beta/"
ALLOWED = re.compile(
    r"https://ee\.example\.com/v1beta/projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/operations"
    r"(/[A-Za-z0-9_-]{1,128}(:cancel)?|\?pageSize=500(&pageToken=[^&#]*)?)"
)


class RecordingSession(requests.Session):
    """A session that records each prepared URL and answers like Earth Engine, offline."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        assert request.url is not None
        self.urls.append(request.url)
        response = requests.Response()
        response.status_code = 200
        listed = {"name": "projects/ee-project/operations/L1", "metadata": {"state": "RUNNING"}}
        response._content = json.dumps({"operations": [listed]}).encode()
        response.url = request.url
        return response


class Null:
    def write(self, text: str) -> None:
        pass

    def flush(self) -> None:
        pass


def engine(session: RecordingSession) -> Engine:
    clock = FakeClock()
    return Engine(
        config=CONFIG,
        ee=RestEarthEngine(CONFIG, session, Gate(1e6, 4)),
        publisher=FakePublisher(),
        retrier=Retrier(1, clock=clock, sleep=clock.sleep),
        clock=clock,
        sleep=clock.sleep,
        logger=Log(Null()),  # type: ignore[arg-type]
    )


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
names = st.one_of(
    st.text(max_size=60),
    st.builds(
        lambda p, i: f"projects/{p}/operations/{i}", st.text(max_size=35), st.text(max_size=40)
    ),
    st.sampled_from(
        ["A1", "projects/ee-project/operations/A1", "projects/x/../operations/A1", "%2e%2e"]
    ),
)
requests_bodies = st.one_of(
    json_values,
    st.fixed_dictionaries({"name": names}),
    st.fixed_dictionaries({"names": st.lists(names, max_size=4)}, optional={"dryRun": json_values}),
    st.fixed_dictionaries(
        {
            "select": st.dictionaries(
                st.sampled_from(
                    [
                        "project",
                        "states",
                        "types",
                        "descriptionRegex",
                        "olderThanSeconds",
                        "minEecuSeconds",
                        "x",
                    ]
                ),
                json_values,
                max_size=4,
            )
        }
    ),
    st.fixed_dictionaries({"costAmount": json_values, "budgetAmount": json_values}),
)


def _check(session: RecordingSession) -> None:
    for url in session.urls:
        assert url.startswith(ROOT), url
        assert ALLOWED.fullmatch(url), url


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(requests_bodies)
def test_json_messages_reach_only_api_urls(body: Any) -> None:
    session = RecordingSession()
    data = base64.b64encode(json.dumps(body).encode()).decode()
    report = engine(session).handle(Message(data, {}, "m", "2027-01-15T08:00:00Z"))
    assert report.ignored or report.outcomes
    _check(session)


@settings(max_examples=300)
@given(
    st.binary(max_size=200),
    st.dictionaries(st.sampled_from(["operation", "name", "x"]), st.text(max_size=30)),
)
def test_raw_bytes_and_attributes_reach_only_api_urls(
    raw: bytes, attributes: dict[str, str]
) -> None:
    session = RecordingSession()
    message = Message(base64.b64encode(raw).decode(), attributes, "m", "t")
    report = engine(session).handle(message)
    assert report.outcomes
    _check(session)


@settings(max_examples=200)
@given(json_values, st.text(max_size=10), st.text(max_size=10))
def test_any_event_envelope_becomes_a_message(data: Any, event_id: str, time: str) -> None:
    message = message_from_event(data, event_id, time)
    assert isinstance(message.data, str) and isinstance(message.message_id, str)
    session = RecordingSession()
    report = engine(session).handle(message)
    assert report.outcomes or report.ignored
    _check(session)
