"""In-memory fakes of the engine's interfaces: Earth Engine, the publisher, time."""

from __future__ import annotations

import builtins
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from lib.config import Config
from lib.earthengine import ApiResult
from lib.outcomes import Outcome
from lib.publisher import PublishError

ACTIVE = {"PENDING", "RUNNING"}


def error(http: int, status: str, message: str = "", retry_after: float | None = None) -> ApiResult:
    return ApiResult(
        status, http, {"error": {"code": http, "status": status}}, message or status, retry_after
    )


class FakeEarthEngine:
    """Operations in a dict; ``script[name]`` lists results to give before the real answer."""

    def __init__(self, operations: Iterable[dict[str, Any]] = (), page_size: int = 2) -> None:
        self.operations: dict[str, dict[str, Any]] = {op["name"]: op for op in operations}
        self.script: dict[str, list[ApiResult]] = {}
        self.list_script: dict[str, list[ApiResult]] = {}
        self.calls: list[tuple[str, str]] = []
        self.page_size = page_size
        self.now = "2027-01-15T08:00:05Z"  # when cancels take effect: just after NOW_ISO
        self._lock = threading.Lock()

    def add(self, name: str, state: str = "RUNNING", **metadata: Any) -> None:
        self.operations[name] = {
            "name": name,
            "metadata": {"state": state, **metadata},
            "done": state in {"SUCCEEDED", "CANCELLED", "FAILED"},
        }

    def cancel(self, name: str) -> ApiResult:
        with self._lock:
            self.calls.append(("cancel", name))
            if self.script.get(name):
                return self.script[name].pop(0)
            op = self.operations.get(name)
            if op is None:
                return error(404, "NOT_FOUND", f"{name} not found")
            state = op["metadata"]["state"]
            if state in ACTIVE:
                op["metadata"]["updateTime"] = self.now
                op["metadata"]["state"] = "CANCELLED"
                op["done"] = True
                op["error"] = {"code": 1}
                return ApiResult("OK", 200, {})
            if state == "CANCELLING":
                return ApiResult("OK", 200, {})
            return error(400, "FAILED_PRECONDITION", f"already {state}")

    def get(self, name: str) -> ApiResult:
        with self._lock:
            self.calls.append(("get", name))
            op = self.operations.get(name)
            if op is None:
                return error(404, "NOT_FOUND")
            return ApiResult("OK", 200, op)

    def list(self, project: str, page_token: str | None = None) -> ApiResult:
        with self._lock:
            self.calls.append(("list", project))
            if self.list_script.get(project):
                return self.list_script[project].pop(0)
            ops = [op for n, op in self.operations.items() if n.startswith(f"projects/{project}/")]
            start = int(page_token or 0)
            page = ops[start : start + self.page_size]
            body: dict[str, Any] = {"operations": page}
            if start + self.page_size < len(ops):
                body["nextPageToken"] = str(start + self.page_size)
            return ApiResult("OK", 200, body)

    def cancels(self) -> builtins.list[str]:
        return [name for verb, name in self.calls if verb == "cancel"]


@dataclass
class FakeBatch:
    owner: FakePublisher
    sent: list[Outcome] = field(default_factory=list)

    def send(self, outcome: Outcome) -> None:
        self.sent.append(outcome)

    def confirm(self) -> int:
        if self.owner.fail:
            raise PublishError("results topic unavailable")
        self.owner.published.extend(self.sent)
        count = len(self.sent)
        self.sent = []
        return count


@dataclass
class FakePublisher:
    published: list[Outcome] = field(default_factory=list)
    fail: bool = False

    def batch(self) -> FakeBatch:
        return FakeBatch(self)


class FakeClock:
    """Wall/monotonic clock that only moves when something sleeps."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def config(**overrides: Any) -> Config:
    env = {
        "RESULTS_TOPIC": "projects/my-project/topics/results",
        "GOOGLE_CLOUD_PROJECT": "my-project",
        "EE_PROJECTS": "ee-project,ee-other",
    }
    env.update({k: str(v) for k, v in overrides.items()})
    return Config.from_env(env)
