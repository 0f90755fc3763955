"""Local emulator of the Earth Engine operations REST API, with fault injection.

Serves ``projects.operations.{cancel,get,list}`` for v1, v1beta and v1alpha on
loopback, plus an admin API under ``/_emulator/`` (never faulted, no token):

- ``POST reset``: forget operations, faults, request log and stats; restore the start-up token.
- ``POST operations`` ``{"operations": [{"name", "state", "type", "description", "createTime",
  "ageSeconds", "batchEecuUsageSeconds", "priority", "progress", "errorMessage", "metadata",
  "finishAs", "cancelDelay"}], "generate": {"project", "count", "state", "type", "prefix",
  "start", "ageSeconds", "eecuSeconds"} | [...], "projects": [...]}`` -> ``{"added": n}``;
  an existing name is replaced in place. ``GET operations[?state=S]``.
- ``POST faults`` ``{"faults": [rule], "latencyMs", "unimplemented", "seed", "append"}``;
  ``GET faults``. A rule: ``{"kind": "status"|"reset"|"latency", "methods", "pathRegex",
  "httpStatus", "status", "message", "retryAfter", "latencyMs", "times", "probability"}``.
- ``GET requests[?since=T]``, ``GET stats``, ``POST token`` ``{"requireToken": "t" | null}``.

Standard library only, so tests, the demo and the benchmark can run it anywhere:

    python deploy/local/ee_emulator.py --port 0 --port-file /tmp/ee.port --seed seed.json

In-process: ``EmulatorServer(projects=["p"]).start()``, driven by ``EmulatorAdmin(url)``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import collections
import contextlib
import datetime as dt
import ipaddress
import json
import random
import re
import signal
import socket
import struct
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any, Final, Self, cast

API_VERSIONS: Final = frozenset({"v1", "v1beta", "v1alpha"})
STATES: Final = ("PENDING", "RUNNING", "CANCELLING", "SUCCEEDED", "CANCELLED", "FAILED")
ACTIVE_STATES: Final = frozenset({"PENDING", "RUNNING"})
DONE_STATES: Final = frozenset({"SUCCEEDED", "CANCELLED", "FAILED"})
ROUTES: Final = frozenset({"cancel", "get", "list"})
FAULT_KINDS: Final = frozenset({"status", "reset", "latency"})

DEFAULT_PAGE_SIZE: Final = 50
MAX_PAGE_SIZE: Final = 500
MAX_BODY_BYTES: Final = 16 * 1024 * 1024
REQUEST_LOG_SIZE: Final = 200_000
MAX_GENERATE: Final = 1_000_000

STATUS_BY_HTTP: Final[Mapping[int, str]] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    412: "FAILED_PRECONDITION",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

_API_PATH = re.compile(
    r"^/(?P<version>[^/]+)/projects/(?P<project>[^/]+)/operations"
    r"(?:/(?P<op>[^/]+?)(?P<cancel>:cancel)?)?$"
)
_NAME = re.compile(r"^projects/(?P<project>[^/]+)/operations/(?P<op>[^/:?#\s]+)$")

Headers = list[tuple[str, str]]
Response = tuple[int, bytes, Headers]


class BadRequestError(ValueError):
    """An admin request the emulator cannot apply (answered with 400)."""


def rfc3339(timestamp: float) -> str:
    """Format a Unix time the way the Earth Engine API does (UTC, microseconds, Z)."""
    moment = dt.datetime.fromtimestamp(timestamp, tz=dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def status_for(http_status: int) -> str:
    """The google.rpc.Code name conventionally sent with an HTTP status."""
    return STATUS_BY_HTTP.get(http_status, "UNKNOWN")


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def error_response(http_status: int, message: str, status: str | None = None) -> Response:
    """A Google API error body: ``{"error": {"code", "message", "status"}}``."""
    body = {
        "error": {
            "code": http_status,
            "message": message,
            "status": status or status_for(http_status),
        }
    }
    return http_status, _dumps(body), []


@dataclass(slots=True)
class Operation:
    """One long-running operation; CANCELLING resolves lazily when read."""

    name: str
    project: str
    state: str
    type: str
    description: str
    priority: int
    create_time: str
    update_time: str
    start_time: str | None
    end_time: str | None
    progress: float
    attempt: int
    eecu_seconds: float | None
    extra_metadata: dict[str, Any]
    error_message: str | None
    finish_as: str = "CANCELLED"
    cancel_delay: float | None = None
    settle_at: float | None = None
    cancelled_via_api: bool = False

    def settle(self, now: float) -> None:
        """Apply a due CANCELLING -> terminal transition."""
        if self.state == "CANCELLING" and self.settle_at is not None and now >= self.settle_at:
            self.state = self.finish_as
            self.end_time = self.update_time = rfc3339(self.settle_at)
            if self.state == "SUCCEEDED":
                self.progress = 1.0

    def to_json(self, version: str = "v1beta") -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "@type": f"type.googleapis.com/google.earthengine.{version}.OperationMetadata",
            "state": self.state,
            "description": self.description,
            "type": self.type,
            "priority": self.priority,
            "createTime": self.create_time,
            "updateTime": self.update_time,
        }
        if self.start_time is not None:
            metadata["startTime"] = self.start_time
        if self.end_time is not None:
            metadata["endTime"] = self.end_time
        metadata["progress"] = self.progress
        metadata["attempt"] = self.attempt
        if self.eecu_seconds is not None:
            metadata["batchEecuUsageSeconds"] = self.eecu_seconds
        metadata.update(self.extra_metadata)
        result: dict[str, Any] = {"name": self.name, "metadata": metadata}
        result["done"] = self.state in DONE_STATES
        if self.state == "CANCELLED":
            result["error"] = {"code": 1, "message": self.error_message or "Cancelled."}
        elif self.state == "FAILED":
            result["error"] = {"code": 13, "message": self.error_message or "Internal error."}
        elif self.state == "SUCCEEDED":
            result["response"] = {"@type": "type.googleapis.com/google.protobuf.Empty"}
        return result


@dataclass(slots=True)
class RequestRecord:
    """One API request as the emulator saw it; status None means no answer (reset, or in flight)."""

    method: str
    path: str
    route: str
    time: float
    authorization: str | None
    body_length: int
    status: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "route": self.route,
            "time": self.time,
            "status": self.status,
            "authorization": self.authorization,
            "bodyLength": self.body_length,
        }


@dataclass(slots=True)
class FaultRule:
    """One injected fault, matched by route and path regex."""

    kind: str
    methods: frozenset[str]
    path_regex: re.Pattern[str] | None
    http_status: int
    status: str
    message: str
    retry_after: float | None
    latency_ms: float
    times_left: int | None
    probability: float | None
    spec: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, raw: object) -> FaultRule:
        if not isinstance(raw, dict):
            raise BadRequestError("each fault rule must be an object")
        kind = raw.get("kind", "status")
        if kind not in FAULT_KINDS:
            raise BadRequestError(f"fault kind must be one of {sorted(FAULT_KINDS)}")
        methods = raw.get("methods", sorted(ROUTES))
        if (
            not isinstance(methods, list)
            or not methods
            or not all(isinstance(m, str) and m in ROUTES for m in methods)
        ):
            raise BadRequestError(f"fault methods must be a non-empty subset of {sorted(ROUTES)}")
        pattern = raw.get("pathRegex")
        try:
            path_regex = re.compile(pattern) if pattern is not None else None
        except (re.error, TypeError) as exc:
            raise BadRequestError(f"bad pathRegex: {exc}") from exc
        http_status = _int_field(raw, "httpStatus", 503, low=100, high=599)
        status = raw.get("status", status_for(http_status))
        message = raw.get("message", f"Injected fault: {status}.")
        if not isinstance(status, str) or not isinstance(message, str):
            raise BadRequestError("fault status and message must be strings")
        retry_after = raw.get("retryAfter")
        if retry_after is not None:
            retry_after = _float_field(raw, "retryAfter", 0.0, low=0.0)
        times = raw.get("times")
        if times is not None:
            times = _int_field(raw, "times", 0, low=0)
        probability = raw.get("probability")
        if probability is not None:
            probability = _float_field(raw, "probability", 1.0, low=0.0, high=1.0)
        return cls(
            kind=kind,
            methods=frozenset(methods),
            path_regex=path_regex,
            http_status=http_status,
            status=status,
            message=message,
            retry_after=retry_after,
            latency_ms=_float_field(raw, "latencyMs", 0.0, low=0.0),
            times_left=times,
            probability=probability,
            spec=dict(raw),
        )

    def matches(self, route: str, path: str) -> bool:
        if route not in self.methods or self.times_left == 0:
            return False
        return self.path_regex is None or self.path_regex.search(path) is not None

    def response(self) -> Response:
        status, body, headers = error_response(self.http_status, self.message, self.status)
        if self.retry_after is not None:
            headers.append(("Retry-After", f"{self.retry_after:g}"))
        return status, body, headers

    def to_json(self) -> dict[str, Any]:
        return {**self.spec, "remaining": self.times_left}


def _int_field(
    raw: Mapping[str, Any],
    key: str,
    default: int,
    *,
    low: int | None = None,
    high: int | None = None,
) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequestError(f"{key} must be an integer")
    if (low is not None and value < low) or (high is not None and value > high):
        raise BadRequestError(f"{key} out of range: {value}")
    return value


def _float_field(
    raw: Mapping[str, Any],
    key: str,
    default: float,
    *,
    low: float | None = None,
    high: float | None = None,
) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequestError(f"{key} must be a number")
    number = float(value)
    if (low is not None and number < low) or (high is not None and number > high):
        raise BadRequestError(f"{key} out of range: {value}")
    return number


def _str_field(raw: Mapping[str, Any], key: str, default: str) -> str:
    value = raw.get(key, default)
    if not isinstance(value, str):
        raise BadRequestError(f"{key} must be a string")
    return value


def _encode_page_token(project: str, offset: int) -> str:
    return base64.urlsafe_b64encode(f"{project}\n{offset}".encode()).decode().rstrip("=")


def _decode_page_token(token: str, project: str, size: int) -> int | None:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        token_project, offset_text = raw.split("\n")
        offset = int(offset_text)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    if token_project != project or not 0 < offset <= size:
        return None
    return offset


class EmulatorState:
    """Operations, faults, request log and counters; every method is thread-safe."""

    def __init__(
        self,
        *,
        projects: Iterable[str] | None = None,
        cancel_delay: float = 0.2,
        require_token: str | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._base_projects = frozenset(projects or ())
        self._base_token = require_token
        self.cancel_delay = cancel_delay
        self._require_token = require_token
        self._projects: set[str] = set(self._base_projects)
        self._ops: dict[str, Operation] = {}
        self._by_project: dict[str, list[str]] = {}
        self._rules: list[FaultRule] = []
        self._latency_ms = 0.0
        self._unimplemented = False
        self._seed = 0
        self._rng = random.Random(0)
        self._log: collections.deque[RequestRecord] = collections.deque(maxlen=REQUEST_LOG_SIZE)
        self._window: collections.deque[float] = collections.deque()
        self._reset_counters()

    def _reset_counters(self) -> None:
        self._total = 0
        self._by_route: collections.Counter[str] = collections.Counter()
        self._by_status: collections.Counter[str] = collections.Counter()
        self._in_flight = 0
        self._max_in_flight = 0
        self._max_per_second = 0
        self._connections = 0
        self._window.clear()
        self._log.clear()

    # -- admin -----------------------------------------------------------------

    def reset(self) -> None:
        """Forget operations, faults, the request log and stats; restore the start-up token."""
        with self._lock:
            self._projects = set(self._base_projects)
            self._ops.clear()
            self._by_project.clear()
            self._rules = []
            self._latency_ms = 0.0
            self._unimplemented = False
            self._seed = 0
            self._rng = random.Random(0)
            self._require_token = self._base_token
            self._reset_counters()

    @property
    def require_token(self) -> str | None:
        return self._require_token

    def set_require_token(self, token: str | None) -> None:
        with self._lock:
            self._require_token = token

    def add_operations(self, payload: Mapping[str, Any]) -> int:
        """Apply ``{"operations": [...], "generate": {...} | [...], "projects": [...]}``."""
        now = time.time()
        specs = payload.get("operations") or []
        generate = payload.get("generate") or []
        projects = payload.get("projects") or []
        if not isinstance(specs, list):
            raise BadRequestError("operations must be a list")
        if isinstance(generate, dict):
            generate = [generate]
        if not isinstance(generate, list):
            raise BadRequestError("generate must be an object or a list of objects")
        if not isinstance(projects, list) or not all(isinstance(p, str) for p in projects):
            raise BadRequestError("projects must be a list of strings")
        built = [self._build(spec, now) for spec in specs]
        for spec in generate:
            built.extend(self._generate(spec, now))
        with self._lock:
            self._projects.update(projects)
            for op in built:
                if op.name not in self._ops:
                    self._by_project.setdefault(op.project, []).append(op.name)
                self._ops[op.name] = op
                self._projects.add(op.project)
        return len(built)

    def load_seed(self, payload: Mapping[str, Any]) -> int:
        """Apply a seed file: operations/generate/projects plus optional "faults"."""
        added = self.add_operations(payload)
        faults = payload.get("faults")
        if faults is not None:
            if not isinstance(faults, dict):
                raise BadRequestError("faults must be an object")
            self.set_faults(faults)
        return added

    def _build(self, spec: object, now: float) -> Operation:
        if not isinstance(spec, dict):
            raise BadRequestError("each operation must be an object")
        name = spec.get("name")
        match = _NAME.match(name) if isinstance(name, str) else None
        if match is None or not isinstance(name, str):
            raise BadRequestError(f"bad operation name: {name!r}")
        age = _float_field(spec, "ageSeconds", 0.0, low=0.0)
        eecu = spec.get("batchEecuUsageSeconds")
        if eecu is not None:
            eecu = _float_field(spec, "batchEecuUsageSeconds", 0.0, low=0.0)
        extra = spec.get("metadata") or {}
        if not isinstance(extra, dict):
            raise BadRequestError("metadata must be an object")
        cancel_delay = spec.get("cancelDelay")
        if cancel_delay is not None:
            cancel_delay = _float_field(spec, "cancelDelay", 0.0, low=0.0)
        error_message = spec.get("errorMessage")
        if error_message is not None and not isinstance(error_message, str):
            raise BadRequestError("errorMessage must be a string")
        return self._new_operation(
            name=name,
            project=match["project"],
            state=_str_field(spec, "state", "RUNNING"),
            op_type=_str_field(spec, "type", "EXPORT_IMAGE"),
            description=_str_field(spec, "description", match["op"]),
            priority=_int_field(spec, "priority", 100),
            create_time=spec.get("createTime"),
            start_time=spec.get("startTime"),
            end_time=spec.get("endTime"),
            progress=spec.get("progress"),
            attempt=_int_field(spec, "attempt", 1, low=0),
            eecu_seconds=eecu,
            extra=extra,
            error_message=error_message,
            finish_as=_str_field(spec, "finishAs", "CANCELLED"),
            cancel_delay=cancel_delay,
            created=now - age,
            now=now,
        )

    def _generate(self, spec: object, now: float) -> list[Operation]:
        if not isinstance(spec, dict):
            raise BadRequestError("generate must be an object or a list of objects")
        project = spec.get("project")
        if not isinstance(project, str) or not project or "/" in project:
            raise BadRequestError("generate.project must be a project ID")
        count = _int_field(spec, "count", 0, low=0, high=MAX_GENERATE)
        start = _int_field(spec, "start", 0, low=0)
        prefix = _str_field(spec, "prefix", "OP")
        state = _str_field(spec, "state", "RUNNING")
        op_type = _str_field(spec, "type", "EXPORT_IMAGE")
        age = _float_field(spec, "ageSeconds", 0.0, low=0.0)
        eecu = _float_field(spec, "eecuSeconds", 0.0, low=0.0)
        description = _str_field(spec, "description", "")
        width = max(4, len(str(start + count - 1)))
        ops = []
        for index in range(start, start + count):
            op_id = f"{prefix}{index:0{width}d}"
            if _NAME.match(f"projects/{project}/operations/{op_id}") is None:
                raise BadRequestError(f"bad generated operation id: {op_id!r}")
            ops.append(
                self._new_operation(
                    name=f"projects/{project}/operations/{op_id}",
                    project=project,
                    state=state,
                    op_type=op_type,
                    description=f"{description or op_type.lower()} {index}",
                    priority=100,
                    create_time=None,
                    start_time=None,
                    end_time=None,
                    progress=None,
                    attempt=1,
                    eecu_seconds=eecu,
                    extra={},
                    error_message=None,
                    finish_as="CANCELLED",
                    cancel_delay=None,
                    created=now - age,
                    now=now,
                )
            )
        return ops

    def _new_operation(
        self,
        *,
        name: str,
        project: str,
        state: str,
        op_type: str,
        description: str,
        priority: int,
        create_time: object,
        start_time: object,
        end_time: object,
        progress: object,
        attempt: int,
        eecu_seconds: float | None,
        extra: dict[str, Any],
        error_message: str | None,
        finish_as: str,
        cancel_delay: float | None,
        created: float,
        now: float,
    ) -> Operation:
        if state not in STATES:
            raise BadRequestError(f"state must be one of {list(STATES)}")
        if finish_as not in DONE_STATES:
            raise BadRequestError(f"finishAs must be one of {sorted(DONE_STATES)}")
        for key, value in (
            ("createTime", create_time),
            ("startTime", start_time),
            ("endTime", end_time),
        ):
            if value is not None and not isinstance(value, str):
                raise BadRequestError(f"{key} must be an RFC 3339 string")
        if progress is not None and (
            isinstance(progress, bool) or not isinstance(progress, int | float)
        ):
            raise BadRequestError("progress must be a number")
        created_text = cast(str | None, create_time) or rfc3339(created)
        done = state in DONE_STATES
        op = Operation(
            name=name,
            project=project,
            state=state,
            type=op_type,
            description=description,
            priority=priority,
            create_time=created_text,
            update_time=rfc3339(now),
            start_time=cast(str | None, start_time)
            or (None if state == "PENDING" else created_text),
            end_time=cast(str | None, end_time) or (rfc3339(now) if done else None),
            progress=float(progress)
            if progress is not None
            else (1.0 if state == "SUCCEEDED" else 0.0),
            attempt=attempt,
            eecu_seconds=eecu_seconds,
            extra_metadata=extra,
            error_message=error_message,
            finish_as=finish_as,
            cancel_delay=cancel_delay,
        )
        if state == "CANCELLING":
            op.settle_at = now + (cancel_delay if cancel_delay is not None else self.cancel_delay)
        return op

    def operations(self, state: str | None = None) -> list[dict[str, Any]]:
        """Every operation (current state), in creation order, optionally of one state."""
        now = time.time()
        with self._lock:
            result = []
            for op in self._ops.values():
                op.settle(now)
                if state is None or op.state == state:
                    result.append(op.to_json())
            return result

    def operation(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            op = self._ops.get(name)
            if op is None:
                return None
            op.settle(time.time())
            return op.to_json()

    def set_faults(self, payload: Mapping[str, Any]) -> None:
        """Replace (or with "append": true, extend) the fault configuration."""
        raw_rules = payload.get("faults", [])
        if not isinstance(raw_rules, list):
            raise BadRequestError("faults must be a list")
        rules = [FaultRule.from_json(raw) for raw in raw_rules]
        append = payload.get("append") is True
        with self._lock:
            latency = _float_field(
                payload, "latencyMs", self._latency_ms if append else 0.0, low=0.0
            )
            unimplemented = payload.get("unimplemented", self._unimplemented if append else False)
            if not isinstance(unimplemented, bool):
                raise BadRequestError("unimplemented must be a boolean")
            if "seed" in payload or not append:
                self._seed = _int_field(payload, "seed", 0)
                self._rng = random.Random(self._seed)
            self._rules = [*self._rules, *rules] if append else rules
            self._latency_ms = latency
            self._unimplemented = unimplemented

    def faults(self) -> dict[str, Any]:
        with self._lock:
            return {
                "faults": [rule.to_json() for rule in self._rules],
                "latencyMs": self._latency_ms,
                "unimplemented": self._unimplemented,
                "seed": self._seed,
            }

    def requests(self, since: float | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [r.to_json() for r in self._log if since is None or r.time >= since]

    def stats(self) -> dict[str, Any]:
        now = time.time()
        with self._lock:
            cancelled = 0
            for op in self._ops.values():
                if op.cancelled_via_api:
                    op.settle(now)
                    cancelled += op.state in ("CANCELLING", "CANCELLED")
            return {
                "requests": self._total,
                "byRoute": dict(self._by_route),
                "byStatus": dict(self._by_status),
                "maxInFlight": self._max_in_flight,
                "inFlight": self._in_flight,
                "maxPerSecond": self._max_per_second,
                "connections": self._connections,
                "cancelled": cancelled,
                "operations": len(self._ops),
            }

    # -- used by the HTTP handler ----------------------------------------------

    def connection_opened(self) -> None:
        """Count a connection that carried API requests (admin calls are not counted)."""
        with self._lock:
            self._connections += 1

    def begin_request(
        self, method: str, path: str, route: str, authorization: str | None, body_length: int
    ) -> RequestRecord:
        now = time.time()
        record = RequestRecord(method, path, route, now, authorization, body_length)
        with self._lock:
            self._log.append(record)
            self._total += 1
            self._by_route[route] += 1
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            window = self._window
            window.append(now)
            while window[0] <= now - 1.0:
                window.popleft()
            self._max_per_second = max(self._max_per_second, len(window))
        return record

    def finish_request(self, record: RequestRecord, status: int | None) -> None:
        with self._lock:
            record.status = status
            self._by_status["reset" if status is None else str(status)] += 1
            self._in_flight -= 1

    def plan_faults(self, route: str, path: str) -> tuple[float, FaultRule | None]:
        """Seconds of injected latency, and the status/reset rule that answers, if any."""
        with self._lock:
            delay = self._latency_ms / 1000.0
            for rule in self._rules:
                if not rule.matches(route, path):
                    continue
                if rule.probability is not None and self._rng.random() >= rule.probability:
                    continue
                if rule.times_left is not None:
                    rule.times_left -= 1
                if rule.kind == "latency":
                    delay += rule.latency_ms / 1000.0
                else:
                    return delay, rule
            return delay, None

    def handle_api(
        self,
        route: str,
        match: re.Match[str] | None,
        query: str,
        body: bytes,
        authorization: str | None,
    ) -> Response:
        token = self._require_token
        if token is not None and authorization != f"Bearer {token}":
            status, payload, headers = error_response(
                401,
                "Request had invalid authentication credentials. Expected OAuth 2 access "
                "token, login cookie or other valid authentication credential.",
            )
            headers.append(("WWW-Authenticate", 'Bearer realm="https://accounts.google.com/"'))
            return status, payload, headers
        if match is None or route not in ROUTES:
            return error_response(404, "The requested URL was not found on this server.")
        version = match["version"]
        if version not in API_VERSIONS:
            return error_response(404, f"API version {version!r} not found.")
        project = urllib.parse.unquote(match["project"])
        if route == "cancel" and self._unimplemented:
            return error_response(501, "Operation cancellation is not supported.")
        if "/" in project:
            return error_response(404, "The requested URL was not found on this server.")
        with self._lock:
            if project not in self._projects:
                return error_response(
                    403,
                    f"Permission denied on project {project} (or it may not exist), "
                    "or the Earth Engine API is not enabled.",
                )
            if route == "list":
                return self._list(project, query, version)
            op_id = urllib.parse.unquote(match["op"])
            if route == "cancel" and body:
                return error_response(400, "The request body of cancel must be empty.")
            name = f"projects/{project}/operations/{op_id}"
            op = self._ops.get(name)
            if op is None:
                return error_response(404, f"Operation {name} not found.")
            now = time.time()
            op.settle(now)
            if route == "get":
                return 200, _dumps(op.to_json(version)), []
            return self._cancel(op, now)

    def _cancel(self, op: Operation, now: float) -> Response:
        if op.state in DONE_STATES:
            return error_response(
                400, f"Operation is already done (state {op.state}).", "FAILED_PRECONDITION"
            )
        if op.state in ACTIVE_STATES:
            op.state = "CANCELLING"
            op.update_time = rfc3339(now)
            op.cancelled_via_api = True
            op.settle_at = now + (
                op.cancel_delay if op.cancel_delay is not None else self.cancel_delay
            )
            op.settle(now)
        return 200, b"{}", []

    def _list(self, project: str, query: str, version: str) -> Response:
        params = urllib.parse.parse_qs(query, keep_blank_values=True)
        names = self._by_project.get(project, [])
        size_text = params.get("pageSize", [""])[0]
        try:
            page_size = int(size_text) if size_text else 0
        except ValueError:
            return error_response(400, f"Invalid pageSize: {size_text!r}.")
        if page_size < 0:
            return error_response(400, f"Invalid pageSize: {page_size}.")
        page_size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        token = params.get("pageToken", [""])[0]
        offset = 0
        if token:
            decoded = _decode_page_token(token, project, len(names))
            if decoded is None:
                return error_response(400, "Invalid pageToken.")
            offset = decoded
        now = time.time()
        page = []
        for name in names[offset : offset + page_size]:
            op = self._ops[name]
            op.settle(now)
            page.append(op.to_json(version))
        result: dict[str, Any] = {}
        if page:
            result["operations"] = page
        if offset + page_size < len(names):
            result["nextPageToken"] = _encode_page_token(project, offset + page_size)
        return 200, _dumps(result), []


def classify(method: str, path: str) -> tuple[str, re.Match[str] | None]:
    """The route ("cancel", "get", "list" or "other") of a request path without query."""
    match = _API_PATH.match(path)
    if match is None:
        return "other", None
    if match["cancel"]:
        return ("cancel" if method == "POST" else "other"), match
    if method != "GET":
        return "other", match
    return ("get" if match["op"] else "list"), match


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ee-emulator/1"
    disable_nagle_algorithm = True
    # Idle keep-alive connections are dropped after this long.
    timeout = 120

    def setup(self) -> None:
        super().setup()
        self._served_api = False
        self._server.track(self.connection, opened=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self._server.track(self.connection, opened=False)

    @property
    def _server(self) -> _EmulatorHTTPServer:
        return cast(_EmulatorHTTPServer, self.server)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request logging; the request log is queried through the admin API."""

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        self.close_connection = True
        status, body, headers = error_response(
            code, message or self.responses.get(code, ("Error",))[0]
        )
        with contextlib.suppress(OSError):
            self._send(status, body, headers)

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _send(self, status: int, body: bytes, headers: Headers) -> None:
        reason = self.responses.get(status, ("Unknown",))[0]
        lines = [
            f"HTTP/1.1 {status} {reason}",
            "Content-Type: application/json; charset=UTF-8",
            f"Content-Length: {len(body)}",
        ]
        lines.extend(f"{key}: {value}" for key, value in headers)
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head + body)

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length_text = self.headers.get("Content-Length")
        if not length_text:
            return b""
        try:
            length = int(length_text)
        except ValueError:
            return None
        if not 0 <= length <= MAX_BODY_BYTES:
            return None
        return self.rfile.read(length)

    def _read_chunked(self) -> bytes | None:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024).split(b";", 1)[0].strip()
            try:
                size = int(line, 16)
            except ValueError:
                return None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            total += size
            if total > MAX_BODY_BYTES:
                return None
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1024)

    def _abort(self) -> None:
        """Drop the connection with a TCP reset and no response."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # The makefile() reader holds a reference; the socket only really closes without it.
        self.rfile.close()
        self.connection.close()

    def _dispatch(self) -> None:
        path, _, query = self.path.partition("?")
        body = self._read_body()
        if body is None:
            self.close_connection = True
            self._send(*error_response(400, "Bad request body framing."))
            return
        try:
            if path.startswith("/_emulator/"):
                self._send(*self._admin(path, query, body))
            else:
                self._api(path, query, body)
        except OSError:
            self.close_connection = True

    def _api(self, path: str, query: str, body: bytes) -> None:
        state = self._server.state
        if not self._served_api:
            self._served_api = True
            state.connection_opened()
        route, match = classify(self.command, path)
        authorization = self.headers.get("Authorization")
        record = state.begin_request(self.command, self.path, route, authorization, len(body))
        # The record is finished before the answer goes out: a client that has its
        # response must find the status in the request log and stats.
        finished = False
        try:
            delay, rule = state.plan_faults(route, path)
            if delay > 0:
                time.sleep(delay)
            if rule is not None and rule.kind == "reset":
                finished = True
                state.finish_request(record, None)
                self._abort()
                return
            if rule is not None:
                response = rule.response()
            else:
                response = state.handle_api(route, match, query, body, authorization)
            finished = True
            state.finish_request(record, response[0])
            self._send(*response)
        finally:
            if not finished:
                state.finish_request(record, None)

    def _admin(self, path: str, query: str, body: bytes) -> Response:
        state = self._server.state
        params = urllib.parse.parse_qs(query)
        try:
            payload = json.loads(body) if body.strip() else {}
        except (ValueError, UnicodeDecodeError):
            return error_response(400, "Admin request body must be JSON.")
        if not isinstance(payload, dict):
            return error_response(400, "Admin request body must be a JSON object.")
        key = (self.command, path.rstrip("/"))
        try:
            if key == ("POST", "/_emulator/reset"):
                state.reset()
                return 200, b"{}", []
            if key == ("POST", "/_emulator/operations"):
                return 200, _dumps({"added": state.add_operations(payload)}), []
            if key == ("GET", "/_emulator/operations"):
                wanted = params.get("state", [None])[0]
                return 200, _dumps({"operations": state.operations(wanted)}), []
            if key == ("POST", "/_emulator/faults"):
                state.set_faults(payload)
                return 200, _dumps(state.faults()), []
            if key == ("GET", "/_emulator/faults"):
                return 200, _dumps(state.faults()), []
            if key == ("GET", "/_emulator/requests"):
                since_text = params.get("since", [None])[0]
                since = float(since_text) if since_text is not None else None
                return 200, _dumps({"requests": state.requests(since)}), []
            if key == ("GET", "/_emulator/stats"):
                return 200, _dumps(state.stats()), []
            if key == ("POST", "/_emulator/token"):
                token = payload.get("requireToken")
                if token is not None and not isinstance(token, str):
                    raise BadRequestError("requireToken must be a string or null")
                state.set_require_token(token)
                return 200, _dumps({"requireToken": token}), []
            if key == ("GET", "/_emulator/token"):
                return 200, _dumps({"requireToken": state.require_token}), []
        except (BadRequestError, ValueError) as exc:
            return error_response(400, str(exc))
        return error_response(404, f"No admin route {self.command} {path}.")


class _EmulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], state: EmulatorState) -> None:
        self.state = state
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def track(self, connection: socket.socket, *, opened: bool) -> None:
        with self._open_lock:
            if opened:
                self._open.add(connection)
            else:
                self._open.discard(connection)

    def close_open_connections(self) -> None:
        with self._open_lock:
            connections = list(self._open)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


def _loopback_host(host: str) -> str:
    if host == "localhost":
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"host must be an IPv4 loopback address, got {host!r}") from None
    if address.version != 4 or not address.is_loopback:
        raise ValueError(f"host must be an IPv4 loopback address, got {host!r}")
    return host


class ServedInThread:
    """An HTTP server served by a daemon thread: ``start()``, ``stop()``, or a ``with`` block."""

    def __init__(self, httpd: ThreadingHTTPServer, name: str) -> None:
        self._httpd = httpd
        self._name = name
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=self._name,
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        with contextlib.suppress(OSError):
            self._httpd.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class EmulatorServer(ServedInThread):
    """The emulator bound to a loopback port; ``start()`` serves it in a daemon thread."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        projects: Iterable[str] | None = None,
        cancel_delay: float = 0.2,
        require_token: str | None = None,
    ) -> None:
        self.state = EmulatorState(
            projects=projects, cancel_delay=cancel_delay, require_token=require_token
        )
        self._server = _EmulatorHTTPServer((_loopback_host(host), port), self.state)
        bound_host, bound_port = self._server.socket.getsockname()[:2]
        self.host_port = f"{bound_host}:{bound_port}"
        self.url = f"http://{self.host_port}"
        super().__init__(self._server, f"ee-emulator-{self.host_port}")

    def stop(self) -> None:
        super().stop()
        self._server.close_open_connections()


class EmulatorAdminError(RuntimeError):
    """The admin API answered with an error."""


class EmulatorAdmin:
    """A dependency-free client of the emulator's ``/_emulator/`` admin API."""

    def __init__(self, base_url: str) -> None:
        if not base_url.startswith("http://"):
            raise ValueError(f"emulator URL must be http://..., got {base_url!r}")
        self.base_url = base_url.rstrip("/")

    def _call(self, method: str, path: str, payload: Mapping[str, Any] | None = None) -> Any:
        data = _dumps(payload) if payload is not None else None
        request = urllib.request.Request(
            self.base_url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise EmulatorAdminError(f"{method} {path}: HTTP {exc.code}: {detail}") from None

    def reset(self) -> None:
        self._call("POST", "/_emulator/reset", {})

    def add_operations(
        self,
        operations: list[dict[str, Any]] | None = None,
        generate: dict[str, Any] | list[dict[str, Any]] | None = None,
    ) -> int:
        payload: dict[str, Any] = {}
        if operations is not None:
            payload["operations"] = operations
        if generate is not None:
            payload["generate"] = generate
        return int(self._call("POST", "/_emulator/operations", payload)["added"])

    def operations(self, state: str | None = None) -> list[dict[str, Any]]:
        query = f"?state={urllib.parse.quote(state)}" if state else ""
        return cast(
            list[dict[str, Any]], self._call("GET", f"/_emulator/operations{query}")["operations"]
        )

    def set_faults(
        self,
        faults: list[dict[str, Any]] | None = None,
        *,
        latency_ms: float = 0,
        unimplemented: bool = False,
        seed: int = 0,
        append: bool = False,
    ) -> None:
        payload: dict[str, Any] = {"faults": faults or [], "seed": seed, "append": append}
        # When appending, leave the current latency and mode alone unless asked to change them.
        if not append or latency_ms:
            payload["latencyMs"] = latency_ms
        if not append or unimplemented:
            payload["unimplemented"] = unimplemented
        self._call("POST", "/_emulator/faults", payload)

    def requests(self, since: float | None = None) -> list[dict[str, Any]]:
        query = f"?since={since!r}" if since is not None else ""
        return cast(
            list[dict[str, Any]], self._call("GET", f"/_emulator/requests{query}")["requests"]
        )

    def stats(self) -> dict[str, Any]:
        return cast(dict[str, Any], self._call("GET", "/_emulator/stats"))

    def set_token(self, token: str | None) -> None:
        self._call("POST", "/_emulator/token", {"requireToken": token})


def _write_port_file(path: Path, host_port: str) -> None:
    # Write then rename, so a reader polling for the file never sees it half written.
    partial = path.with_name(path.name + ".partial")
    partial.write_text(host_port)
    partial.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Local Earth Engine operations emulator.")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=0, help="port (0 picks a free one)")
    parser.add_argument("--seed", type=Path, help="JSON file of operations, projects and faults")
    parser.add_argument("--project", action="append", default=[], help="known project (repeatable)")
    parser.add_argument("--cancel-delay", type=float, default=0.2, help="seconds CANCELLING lasts")
    parser.add_argument("--require-token", help="bearer token every API request must carry")
    parser.add_argument("--port-file", type=Path, help="write HOST:PORT here once listening")
    args = parser.parse_args(argv)

    server = EmulatorServer(
        args.host,
        args.port,
        projects=args.project,
        cancel_delay=args.cancel_delay,
        require_token=args.require_token,
    )
    if args.seed is not None:
        try:
            server.state.load_seed(json.loads(args.seed.read_text()))
        except (OSError, ValueError) as exc:
            print(f"ee-emulator: cannot load seed {args.seed}: {exc}", file=sys.stderr)
            server.stop()
            return 2

    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.start()
    print(f"ee-emulator listening on {server.host_port}", flush=True)
    if args.port_file is not None:
        _write_port_file(args.port_file, server.host_port)
    while not stopping.wait(0.5):
        pass
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
