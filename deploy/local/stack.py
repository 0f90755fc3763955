"""The whole system on loopback: Pub/Sub emulator, EE emulator, and the function process.

Used by the integration tests, the demo and the benchmarks. Everything it starts, it stops:
the Pub/Sub emulator's process group and each function process it launched, by process ID.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from deploy.local.ee_emulator import EmulatorAdmin, EmulatorServer
from deploy.local.pubsub_emulator import PubSubEmulator, free_port, wait_for_port
from lib.outcomes import now_rfc3339

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "demo-project"


class FunctionProcess:
    """``functions-framework`` serving ``main.cancel_operations`` on a loopback port."""

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        port: int | None = None,
        source: Path = ROOT / "main.py",
        target: str = "cancel_operations",
        log_path: Path | None = None,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.env = dict(env)
        self.source = source
        self.target = target
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> FunctionProcess:
        """Start serving and wait until the port accepts connections."""
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        log = self.log_path.open("ab") if self.log_path else subprocess.DEVNULL
        command = [
            sys.executable,
            "-m",
            "functions_framework",
            f"--target={self.target}",
            f"--source={self.source}",
            "--signature-type=cloudevent",
            "--host=127.0.0.1",
            f"--port={self.port}",
        ]
        self.process = subprocess.Popen(
            command,
            cwd=self.source.parent,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # gunicorn's arbiter and worker, stopped as one group
        )
        if self.log_path:
            log.close()  # type: ignore[union-attr]
        try:
            wait_for_port(self.process, self.port, timeout, "function")
        except RuntimeError:
            self.stop()
            raise
        return self

    @property
    def pid(self) -> int:
        """The process ID of the running function."""
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        """Stop the function's process group (SIGTERM, then SIGKILL)."""
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """Kill the function's process group at once: a crash of arbiter and worker alike."""
        self._signal(signal.SIGKILL)

    def _signal(self, first: signal.Signals) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, first)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def post_event(
        self,
        data: bytes | str | Mapping[str, Any] | list[Any] | None,
        attributes: Mapping[str, str] | None = None,
        *,
        message_id: str | None = None,
        publish_time: str | None = None,
        timeout: float = 120.0,
    ) -> tuple[int, str]:
        """POST a binary-mode Pub/Sub CloudEvent, as Eventarc does; returns (status, id)."""
        message_id = message_id or uuid.uuid4().hex
        publish_time = publish_time or now_rfc3339()
        body = {
            "message": {
                "data": encode_data(data),
                "attributes": dict(attributes or {}),
                "messageId": message_id,
                "publishTime": publish_time,
            },
            "subscription": f"projects/{PROJECT}/subscriptions/eventarc-sub",
        }
        request = urllib.request.Request(
            self.url,
            data=json.dumps(body).encode(),
            method="POST",
            headers={
                "Content-Type": "application/json",
                "ce-id": message_id,
                "ce-specversion": "1.0",
                "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
                "ce-source": f"//pubsub.googleapis.com/projects/{PROJECT}/topics/requests",
                "ce-time": publish_time,
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, message_id
        except urllib.error.HTTPError as exc:
            return exc.code, message_id


def encode_data(data: bytes | str | Mapping[str, Any] | list[Any] | None) -> str:
    """Message data as Pub/Sub carries it: base64 of the bytes (JSON for objects)."""
    if isinstance(data, bytes):
        raw = data
    elif isinstance(data, str):
        raw = data.encode()
    elif data is None:
        raw = b""
    else:
        raw = json.dumps(data).encode()
    return base64.b64encode(raw).decode()


def to_bytes(data: bytes | str | Mapping[str, Any] | list[Any] | None) -> bytes:
    """Message data as bytes, for a publisher client."""
    return base64.b64decode(encode_data(data))


@dataclass
class Results:
    """Outcomes pulled from a subscription on the results topic, grouped by source message."""

    subscription: str
    subscriber: Any
    by_source: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    attributes: dict[str, list[dict[str, str]]] = field(default_factory=dict)

    def pull_once(self, max_messages: int = 1000, timeout: float = 2.0) -> int:
        """Pull one batch, ack it and file it; returns how many arrived."""
        from google.api_core import exceptions

        try:
            response = self.subscriber.pull(
                request={"subscription": self.subscription, "max_messages": max_messages},
                timeout=timeout,
            )
        except exceptions.DeadlineExceeded:
            return 0
        received = response.received_messages
        if not received:
            return 0
        for item in received:
            attributes = dict(item.message.attributes)
            source = attributes.get("sourceMessageId", "")
            self.by_source.setdefault(source, []).append(json.loads(item.message.data))
            self.attributes.setdefault(source, []).append(attributes)
        self.subscriber.acknowledge(
            request={"subscription": self.subscription, "ack_ids": [r.ack_id for r in received]}
        )
        return len(received)

    def wait_for(self, source: str, count: int = 1, timeout: float = 30.0) -> list[dict[str, Any]]:
        """The outcomes of message ``source`` once at least ``count`` have arrived."""
        deadline = time.monotonic() + timeout
        while len(self.by_source.get(source, [])) < count:
            if time.monotonic() > deadline:
                got = len(self.by_source.get(source, []))
                raise TimeoutError(f"{got} of {count} outcome(s) of {source} after {timeout}s")
            self.pull_once(timeout=1.0)
        return self.by_source[source]

    def quiet(self, seconds: float = 1.0) -> None:
        """Keep pulling until nothing has arrived for ``seconds``."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.pull_once(timeout=0.5):
                deadline = time.monotonic() + seconds


class Stack:
    """Pub/Sub emulator + EE emulator + topics; functions are started on demand."""

    def __init__(
        self,
        *,
        project: str = PROJECT,
        ee_projects: Iterable[str] = (PROJECT,),
        log_dir: Path | None = None,
    ) -> None:
        self.project = project
        self.ee_projects = tuple(ee_projects)
        self.log_dir = log_dir
        self.pubsub = PubSubEmulator(
            log_path=(log_dir / "pubsub-emulator.log") if log_dir else None
        )
        self.ee = EmulatorServer(projects=self.ee_projects, cancel_delay=0.2)
        self.admin: EmulatorAdmin
        self.functions: list[FunctionProcess] = []
        self.publisher: Any = None
        self.subscriber: Any = None

    def start(self) -> Stack:
        """Start both emulators and make the Pub/Sub clients."""
        self.pubsub.start()
        os.environ["PUBSUB_EMULATOR_HOST"] = self.pubsub.host_port
        self.ee.start()
        self.admin = EmulatorAdmin(self.ee.url)
        from google.cloud import pubsub_v1

        self.publisher = pubsub_v1.PublisherClient()
        self.subscriber = pubsub_v1.SubscriberClient()
        return self

    def stop(self) -> None:
        """Stop every function process, then both emulators."""
        for function in self.functions:
            function.stop()
        self.functions.clear()
        if self.subscriber is not None:
            self.subscriber.close()
        self.ee.stop()
        self.pubsub.stop()

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def topic(self, name: str) -> str:
        """Create a topic (if missing) and return its path."""
        from google.api_core import exceptions

        path = f"projects/{self.project}/topics/{name}"
        with contextlib.suppress(exceptions.AlreadyExists):
            self.publisher.create_topic(request={"name": path})
        return path

    def subscription(
        self, topic: str, name: str, *, push_endpoint: str | None = None, ack_deadline: int = 60
    ) -> str:
        """Create a pull (or push) subscription on ``topic`` and return its path."""
        from google.api_core import exceptions

        path = f"projects/{self.project}/subscriptions/{name}"
        request: dict[str, Any] = {
            "name": path,
            "topic": topic,
            "ack_deadline_seconds": ack_deadline,
        }
        if push_endpoint:
            request["push_config"] = {"push_endpoint": push_endpoint}
        with contextlib.suppress(exceptions.AlreadyExists):
            self.subscriber.create_subscription(request=request)
        return path

    def results(self, topic: str, name: str | None = None) -> Results:
        """A fresh pull subscription on the results topic and its collector."""
        return Results(
            self.subscription(topic, name or f"results-{uuid.uuid4().hex[:8]}"), self.subscriber
        )

    def function_env(self, results_topic: str, **overrides: str) -> dict[str, str]:
        """The function's environment against this stack."""
        env = {
            "RESULTS_TOPIC": results_topic,
            "GOOGLE_CLOUD_PROJECT": self.project,
            "EE_PROJECTS": ",".join(self.ee_projects),
            "EE_EMULATOR_HOST": self.ee.host_port,
            "PUBSUB_EMULATOR_HOST": self.pubsub.host_port,
            "RETRY_DEADLINE_SECONDS": "5",
        }
        env.update(overrides)
        return env

    def function(self, env: Mapping[str, str], **kwargs: Any) -> FunctionProcess:
        """Start a function process with ``env``; the stack stops it."""
        log_path = None
        if self.log_dir:
            log_path = self.log_dir / f"function-{len(self.functions)}.log"
        function = FunctionProcess(env, log_path=log_path, **kwargs).start()
        self.functions.append(function)
        return function

    def publish(
        self,
        topic: str,
        data: bytes | str | Mapping[str, Any] | list[Any] | None,
        **attributes: str,
    ) -> str:
        """Publish a request and return its message ID."""
        future = self.publisher.publish(topic, to_bytes(data), **attributes)
        message_id: str = future.result(timeout=30)
        return message_id
