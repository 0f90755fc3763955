"""The Earth Engine operations REST API, behind a small interface.

``RestEarthEngine`` is the only code that speaks HTTP to Earth Engine. It maps every answer to
an ``ApiResult`` in google.rpc terms at this boundary, so callers never look at HTTP details.
"""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass
from typing import Any, Final, Protocol

import requests

from lib.config import PROJECT_ID, Config
from lib.names import is_operation_name
from lib.ratelimit import Gate
from lib.rpc import is_transient, status_from_http

SCOPES: Final = ("https://www.googleapis.com/auth/earthengine",)
PAGE_SIZE: Final = 500
# (connect, read) seconds: a cancel is a quick call; a hung socket must not eat the deadline.
TIMEOUT: Final = (5.0, 30.0)
_MAX_RETRY_AFTER: Final = 3600.0


@dataclass(frozen=True)
class ApiResult:
    """One Earth Engine answer, or the failure to get one (``http_status`` None)."""

    status: str
    http_status: int | None
    body: dict[str, Any]
    message: str = ""
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        """Whether the call succeeded."""
        return self.status == "OK"

    @property
    def transient(self) -> bool:
        """Whether repeating the call may succeed."""
        return not self.ok and is_transient(self.status, self.http_status)


class EarthEngine(Protocol):
    """What the cancel engine needs from Earth Engine."""

    def cancel(self, name: str) -> ApiResult:
        """Operations.CancelOperation on a validated full name."""
        ...

    def get(self, name: str) -> ApiResult:
        """Operations.GetOperation on a validated full name."""
        ...

    def list(self, project: str, page_token: str | None = None) -> ApiResult:
        """One page of Operations.ListOperations in ``project``."""
        ...


class RestEarthEngine:
    """Earth Engine over HTTPS with one reused session, behind the instance's quota gate."""

    def __init__(self, config: Config, session: requests.Session, gate: Gate) -> None:
        self._base = f"{config.api_root}/{config.api_version}/"
        self._session = session
        self._gate = gate

    def cancel(self, name: str) -> ApiResult:
        """POST ``{name}:cancel`` with an empty body."""
        return self._call("POST", self._url(name) + ":cancel")

    def get(self, name: str) -> ApiResult:
        """GET ``{name}``."""
        return self._call("GET", self._url(name))

    def list(self, project: str, page_token: str | None = None) -> ApiResult:
        """GET ``projects/{project}/operations`` (500 a page)."""
        params: dict[str, str | int] = {"pageSize": PAGE_SIZE}
        if page_token:
            params["pageToken"] = page_token
        if not PROJECT_ID.fullmatch(project):
            raise ValueError(f"refusing to build a URL from project {project!r}")
        return self._call("GET", f"{self._base}projects/{project}/operations", params)

    def _url(self, name: str) -> str:
        # Names are validated when a message is parsed; this second check keeps the URL safe
        # even if a future caller forgets.
        if not is_operation_name(name):
            raise ValueError(f"refusing to build a URL from {name!r}")
        return self._base + name

    def _call(self, method: str, url: str, params: dict[str, str | int] | None = None) -> ApiResult:
        try:
            with self._gate.admit():
                response = self._session.request(method, url, params=params, timeout=TIMEOUT)
                body = _json_body(response)
        except requests.Timeout as exc:
            return ApiResult("DEADLINE_EXCEEDED", None, {}, f"Earth Engine timed out: {exc}")
        except requests.RequestException as exc:
            return ApiResult("UNAVAILABLE", None, {}, f"could not reach Earth Engine: {exc}")
        if response.status_code < 300:
            return ApiResult("OK", response.status_code, body if isinstance(body, dict) else {})
        status, message = status_from_http(response.status_code, body)
        return ApiResult(
            status,
            response.status_code,
            body if isinstance(body, dict) else {},
            message,
            _retry_after(response.headers.get("Retry-After")),
        )


def open_session(config: Config) -> requests.Session:
    """The instance's HTTP session: authorized with ADC, or plain HTTP for the emulator.

    The connection pool holds one connection per concurrent call, so none is reopened. On a
    401 the session refreshes the token once and repeats the call (SPEC §5).
    """
    session: requests.Session
    if config.emulator:
        session = requests.Session()
        session.trust_env = False  # a proxy from the environment must not see loopback calls
    else:
        import google.auth
        from google.auth.transport.requests import AuthorizedSession

        credentials, _ = google.auth.default(scopes=list(SCOPES))
        session = AuthorizedSession(credentials, max_refresh_attempts=1)  # type: ignore[no-untyped-call]
    adapter = requests.adapters.HTTPAdapter(
        pool_connections=2, pool_maxsize=config.cancel_concurrency, max_retries=0
    )
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def _json_body(response: requests.Response) -> object:
    if not response.content:
        return {}
    try:
        return response.json()
    except ValueError:
        return None


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), _MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return min(max(0.0, when.timestamp() - time.time()), _MAX_RETRY_AFTER)


def operation_state(body: dict[str, Any]) -> str | None:
    """The ``metadata.state`` of an Operation body, if it has one."""
    metadata = body.get("metadata")
    state = metadata.get("state") if isinstance(metadata, dict) else None
    if isinstance(state, str):
        return state
    if body.get("done") is True:
        error = body.get("error")
        if isinstance(error, dict):
            return "CANCELLED" if error.get("code") == 1 else "FAILED"
        return "SUCCEEDED"
    return None
