"""Configuration: every environment variable the function reads, validated once at start-up.

Nothing else in the project reads ``os.environ``. A bad value raises ``ConfigError`` naming the
variable, so a misconfigured deployment fails at start-up instead of on the first message.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

RESULTS_TOPIC: Final = "RESULTS_TOPIC"
GOOGLE_CLOUD_PROJECT: Final = "GOOGLE_CLOUD_PROJECT"
EE_PROJECTS: Final = "EE_PROJECTS"
EE_API_URL: Final = "EE_API_URL"
EE_API_VERSION: Final = "EE_API_VERSION"
EE_EMULATOR_HOST: Final = "EE_EMULATOR_HOST"
BUDGET_THRESHOLD: Final = "BUDGET_THRESHOLD"
BUDGET_USE_FORECAST: Final = "BUDGET_USE_FORECAST"
CANCEL_CONCURRENCY: Final = "CANCEL_CONCURRENCY"
EE_MAX_QPS: Final = "EE_MAX_QPS"
RETRY_DEADLINE_SECONDS: Final = "RETRY_DEADLINE_SECONDS"
MAX_EVENT_AGE_SECONDS: Final = "MAX_EVENT_AGE_SECONDS"
MAX_OPERATIONS_PER_MESSAGE: Final = "MAX_OPERATIONS_PER_MESSAGE"
VERIFY_SECONDS: Final = "VERIFY_SECONDS"
DRY_RUN: Final = "DRY_RUN"

# Every setting of SPEC §2, in its order.
SETTINGS: Final = (
    RESULTS_TOPIC,
    GOOGLE_CLOUD_PROJECT,
    EE_PROJECTS,
    EE_API_URL,
    EE_API_VERSION,
    EE_EMULATOR_HOST,
    BUDGET_THRESHOLD,
    BUDGET_USE_FORECAST,
    CANCEL_CONCURRENCY,
    EE_MAX_QPS,
    RETRY_DEADLINE_SECONDS,
    MAX_EVENT_AGE_SECONDS,
    MAX_OPERATIONS_PER_MESSAGE,
    VERIFY_SECONDS,
    DRY_RUN,
)

# The runtime sets one of these; GOOGLE_CLOUD_PROJECT wins (SPEC §2).
PROJECT_FALLBACKS: Final = ("GCP_PROJECT", "GCLOUD_PROJECT")

DEFAULT_API_URL: Final = "https://earthengine.googleapis.com"
API_VERSIONS: Final = frozenset({"v1", "v1beta", "v1alpha"})
ANY_PROJECT: Final = "*"

PROJECT_ID = re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]")
_TOPIC = re.compile(r"projects/([^/]+)/topics/([A-Za-z][A-Za-z0-9\-_.~+%]{2,254})")
_TOPIC_ID = re.compile(r"[A-Za-z][A-Za-z0-9\-_.~+%]{2,254}")
_HOST_PORT = re.compile(r"(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})")
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off", ""})


class ConfigError(ValueError):
    """A configuration variable is missing or has a bad value; the message names it."""


def is_project_id(value: str) -> bool:
    """Whether ``value`` is a syntactically valid Cloud project ID."""
    return PROJECT_ID.fullmatch(value) is not None


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine: ``localhost`` or a loopback address."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Config:
    """The function's settings; see the README's Configuration table."""

    results_topic: str
    project: str
    ee_projects: tuple[str, ...]
    any_project: bool
    api_root: str
    api_version: str
    emulator: bool
    budget_threshold: float = 1.0
    budget_use_forecast: bool = False
    cancel_concurrency: int = 16
    max_qps: float = 50.0
    retry_deadline: float = 60.0
    max_event_age: float = 3600.0
    max_operations: int = 5000
    verify_seconds: float = 0.0
    dry_run: bool = False

    @property
    def default_project(self) -> str:
        """Where bare task IDs and selections without a project go."""
        return self.ee_projects[0]

    def admits(self, project: str) -> bool:
        """Whether operations of ``project`` may be touched."""
        return self.any_project or project in self.ee_projects

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Config:
        """Build and validate the configuration from environment variables."""
        project = _text(env, GOOGLE_CLOUD_PROJECT) or next(
            (env[name].strip() for name in PROJECT_FALLBACKS if env.get(name, "").strip()), ""
        )
        if project and not is_project_id(project):
            raise ConfigError(f"{GOOGLE_CLOUD_PROJECT}={project!r} is not a valid project ID")
        ee_projects, any_project = _ee_projects(env, project)
        api_root, emulator = _api_root(env)
        return cls(
            results_topic=_results_topic(env, project),
            project=project,
            ee_projects=ee_projects,
            any_project=any_project,
            api_root=api_root,
            api_version=_choice(env, EE_API_VERSION, "v1beta", API_VERSIONS),
            emulator=emulator,
            budget_threshold=_number(env, BUDGET_THRESHOLD, 1.0, low=0.0, low_open=True),
            budget_use_forecast=_flag(env, BUDGET_USE_FORECAST),
            cancel_concurrency=int(
                _number(env, CANCEL_CONCURRENCY, 16, low=1, high=256, whole=True)
            ),
            max_qps=_number(env, EE_MAX_QPS, 50.0, low=0.0, high=10_000, low_open=True),
            retry_deadline=_number(env, RETRY_DEADLINE_SECONDS, 60.0, low=0.0, high=3600),
            max_event_age=_number(env, MAX_EVENT_AGE_SECONDS, 3600.0, low=0.0, high=7 * 86400),
            max_operations=int(
                _number(env, MAX_OPERATIONS_PER_MESSAGE, 5000, low=1, high=100_000, whole=True)
            ),
            verify_seconds=_number(env, VERIFY_SECONDS, 0.0, low=0.0, high=600),
            dry_run=_flag(env, DRY_RUN),
        )


def _text(env: Mapping[str, str], name: str) -> str:
    return env.get(name, "").strip()


def _results_topic(env: Mapping[str, str], project: str) -> str:
    topic = _text(env, RESULTS_TOPIC)
    if not topic:
        raise ConfigError(f"{RESULTS_TOPIC} is required: projects/P/topics/T, or T")
    match = _TOPIC.fullmatch(topic)
    if match:
        if not is_project_id(match.group(1)):
            raise ConfigError(f"{RESULTS_TOPIC}={topic!r} names an invalid project")
        return topic
    if _TOPIC_ID.fullmatch(topic) and not topic.lower().startswith("goog"):
        if not project:
            raise ConfigError(
                f"{RESULTS_TOPIC}={topic!r} is a bare topic ID but {GOOGLE_CLOUD_PROJECT} is unset"
            )
        return f"projects/{project}/topics/{topic}"
    raise ConfigError(f"{RESULTS_TOPIC}={topic!r} is not projects/P/topics/T or a topic ID")


def _ee_projects(env: Mapping[str, str], project: str) -> tuple[tuple[str, ...], bool]:
    raw = _text(env, EE_PROJECTS)
    items = [item.strip() for item in raw.split(",")] if raw else []
    if any(not item for item in items):
        raise ConfigError(f"{EE_PROJECTS}={raw!r} has an empty entry")
    any_project = ANY_PROJECT in items
    concrete = [item for item in items if item != ANY_PROJECT]
    for item in concrete:
        if not is_project_id(item):
            raise ConfigError(f"{EE_PROJECTS} entry {item!r} is not a valid project ID")
    if not concrete and project:
        concrete = [project]
    if not concrete:
        raise ConfigError(
            f"{EE_PROJECTS} is empty and {GOOGLE_CLOUD_PROJECT} is unset: name at least one project"
        )
    return tuple(dict.fromkeys(concrete)), any_project


def _api_root(env: Mapping[str, str]) -> tuple[str, bool]:
    emulator_host = _text(env, EE_EMULATOR_HOST)
    if emulator_host:
        match = _HOST_PORT.fullmatch(emulator_host)
        if not match or not 0 < int(match.group(2)) < 65536:
            raise ConfigError(f"{EE_EMULATOR_HOST}={emulator_host!r} is not host:port")
        return f"http://{emulator_host}", True
    url = _text(env, EE_API_URL) or DEFAULT_API_URL
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError(f"{EE_API_URL}={url!r} must be an https:// URL")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ConfigError(f"{EE_API_URL}={url!r}: http:// is allowed only for loopback hosts")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigError(f"{EE_API_URL}={url!r} must not carry credentials, a query or fragment")
    return url.rstrip("/"), False


def _choice(env: Mapping[str, str], name: str, default: str, allowed: frozenset[str]) -> str:
    value = _text(env, name) or default
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} must be one of {', '.join(sorted(allowed))}")
    return value


def _flag(env: Mapping[str, str], name: str) -> bool:
    value = _text(env, name).lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name}={env[name]!r} must be true or false")


def _number(
    env: Mapping[str, str],
    name: str,
    default: float,
    *,
    low: float,
    high: float = float("inf"),
    low_open: bool = False,
    whole: bool = False,
) -> float:
    raw = _text(env, name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ConfigError(f"{name}={raw!r} is not a finite number")
    if whole and value != int(value):
        raise ConfigError(f"{name}={raw!r} must be a whole number")
    if value < low or (low_open and value == low) or value > high:
        bound = f"> {low:g}" if low_open else f">= {low:g}"
        upper = f" and <= {high:g}" if high != float("inf") else ""
        raise ConfigError(f"{name}={raw!r} must be {bound}{upper}")
    return value
