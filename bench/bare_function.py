"""The baseline: a bare Pub/Sub-triggered function that only publishes one message.

Same framework, same client library and the same results topic as ee-cancel, and nothing
else, so ``cold_start.py`` and ``per_message.py`` can tell ee-cancel's own cost from the
platform's. The client is created lazily on the first message and reused, as Google's samples do.
"""

from __future__ import annotations

import os
from typing import Any

import functions_framework
from cloudevents.http import CloudEvent
from google.cloud import pubsub_v1

_publisher: Any = None


def _client() -> Any:
    global _publisher
    if _publisher is None:
        _publisher = pubsub_v1.PublisherClient()
    return _publisher


@functions_framework.cloud_event
def publish_only(cloud_event: CloudEvent) -> None:
    """Publish one message to ``RESULTS_TOPIC`` and wait until Pub/Sub confirms it."""
    future = _client().publish(
        os.environ["RESULTS_TOPIC"],
        b'{"status":"OK"}',
        status="OK",
        sourceMessageId=cloud_event["id"],
    )
    future.result(timeout=60)
