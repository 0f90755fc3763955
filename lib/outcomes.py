"""Outcomes: what the function says about each operation, and their one JSON form (SPEC §4)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from lib.rpc import code_of


@dataclass(frozen=True)
class Trigger:
    """Which message caused an outcome; the same for every outcome of one message."""

    kind: str
    message_id: str
    publish_time: str
    budget: Mapping[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        """The ``trigger`` object of an outcome."""
        body: dict[str, Any] = {
            "kind": self.kind,
            "messageId": self.message_id,
            "publishTime": self.publish_time,
        }
        if self.budget is not None:
            body["budget"] = dict(self.budget)
        return body


@dataclass(frozen=True)
class Outcome:
    """The result for one operation (or for a whole refused request, with ``operation`` None)."""

    operation: str | None
    status: str
    message: str
    trigger: Trigger
    dry_run: bool = False
    response: Mapping[str, Any] | None = None
    http_status: int | None = None
    state: str | None = None
    completed_at: str = field(default_factory=lambda: now_rfc3339())

    @property
    def ok(self) -> bool:
        """Whether the operation was handled as asked."""
        return self.status == "OK"

    def as_json(self) -> dict[str, Any]:
        """The outcome's data, as published."""
        body: dict[str, Any] = {
            "operation": self.operation,
            "status": self.status,
            "code": code_of(self.status),
            "message": self.message or self.status,
        }
        if self.ok:
            body["response"] = dict(self.response or {})
        if self.http_status is not None:
            body["httpStatus"] = self.http_status
        if self.state is not None:
            body["state"] = self.state
        body["dryRun"] = self.dry_run
        body["trigger"] = self.trigger.as_json()
        body["completedAt"] = self.completed_at
        return body

    def data(self) -> bytes:
        """The published message data: compact UTF-8 JSON."""
        return json.dumps(self.as_json(), separators=(",", ":"), ensure_ascii=False).encode()

    def attributes(self) -> dict[str, str]:
        """The published message attributes, for subscription filters."""
        return {
            "status": self.status,
            "operation": self.operation or "",
            "trigger": self.trigger.kind,
            "sourceMessageId": self.trigger.message_id,
        }


def now_rfc3339() -> str:
    """The current UTC time in RFC 3339 with milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
