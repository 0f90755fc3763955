"""CloudEvent → Pub/Sub message: the only place that knows the event's envelope.

Eventarc delivers ``google.cloud.pubsub.topic.v1.messagePublished`` with data
``{"message": {"data", "attributes", "messageId", "publishTime"}, "subscription"}``;
functions-framework converts a raw push body to the same shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lib.messages import Message


def message_from_event(data: object, event_id: str, event_time: str) -> Message:
    """The Pub/Sub message inside an event; a malformed envelope yields data that is invalid.

    Nothing here raises: an envelope we cannot read still gets an INVALID_ARGUMENT outcome,
    identified by the CloudEvent's own id and time.
    """
    envelope = data.get("message") if isinstance(data, Mapping) else None
    if not isinstance(envelope, Mapping):
        return Message("!", {}, event_id, event_time)
    raw = envelope.get("data", "")
    attributes = envelope.get("attributes") or {}
    message_id = _text(envelope.get("messageId")) or _text(envelope.get("message_id")) or event_id
    publish_time = (
        _text(envelope.get("publishTime")) or _text(envelope.get("publish_time")) or event_time
    )
    if not isinstance(raw, str) or not _string_map(attributes):
        return Message("!", {}, message_id, publish_time)
    return Message(raw, attributes, message_id, publish_time)


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _string_map(value: Any) -> bool:
    return isinstance(value, Mapping) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )
