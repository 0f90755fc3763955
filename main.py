"""ee-cancel: a Pub/Sub-triggered Cloud Function that cancels Earth Engine operations.

The edge only: turn the CloudEvent into a message, hand it to the engine, return to ack or
raise to have Pub/Sub redeliver. Run ``python main.py --help`` for the operator commands.
"""

from __future__ import annotations

import os
import sys

import functions_framework
from cloudevents.http import CloudEvent

from lib.events import message_from_event
from lib.instance import Instance

if __name__ != "__main__":
    # Read and validate the configuration at start-up: a bad value fails the deployment.
    INSTANCE = Instance.from_env(os.environ)


@functions_framework.cloud_event
def cancel_operations(cloud_event: CloudEvent) -> None:
    """Cancel the operations a Pub/Sub message asks for and publish one outcome each.

    Returning acks the message. ``Redeliver`` (transient Earth Engine trouble) and
    ``PublishError`` propagate, so functions-framework answers 500 and Pub/Sub redelivers.
    """
    message = message_from_event(cloud_event.data, cloud_event["id"], cloud_event.get("time") or "")
    INSTANCE.engine.handle(message)


if __name__ == "__main__":
    from lib.cli import main

    sys.exit(main())
