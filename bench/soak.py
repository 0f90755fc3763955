"""Chaos soak: thousands of requests through real Pub/Sub push delivery, every outcome counted.

The Pub/Sub emulator pushes a trigger topic to ee-cancel served by functions-framework (as
Eventarc does in production), while the Earth Engine emulator answers a seeded share of calls
with 429 (Retry-After), 503, connection resets and latency spikes, and for one interval answers
everything with 503. Over-threshold budget notifications go to a second function instance whose
EE_PROJECTS is a project of their own, so they cannot touch the other requests' operations.
Mid-run drills: the function is killed (SIGKILL) and restarted on the same port; the results
topic is deleted and recreated. Then every request is accounted for:

- each valid request has a final (non-transient) outcome per operation, after de-duplication
  on (sourceMessageId, operation); each malformed one its INVALID_ARGUMENT outcome;
- a budget notification below the threshold produced none;
- no operation that nobody asked for was cancelled (decoys stay RUNNING or PENDING).

It prints lost, the duplicate rate, redeliveries (HTTP 500 answers in the function's log),
publish-to-outcome latency, and the function worker's peak RSS and growth, and exits non-zero
when anything was lost or wrongly cancelled. The design is in the README (Reliability).

    python bench/soak.py [--quick] [--json] [--log-dir DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Final

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

from bench.common import ACTIVE  # noqa: E402
from deploy.local.pubsub_emulator import free_port  # noqa: E402
from deploy.local.stack import FunctionProcess, Stack  # noqa: E402

OPS_PROJECT: Final = "soak-ops"  # names and bare IDs (the main function's default project)
SELECT_PROJECT: Final = "soak-select"  # operations seeded for selections, and decoys
BUDGET_PROJECT: Final = "soak-budget"  # the budget function's only project
TRANSIENT: Final = frozenset(
    {"UNAVAILABLE", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "INTERNAL", "ABORTED"}
)
BUDGET_ATTRIBUTES: Final = {
    "billingAccountId": "01D4EE-079462-DFD6EC",
    "budgetId": "soak-budget",
    "schemaVersion": "1.0",
}
# (data, attributes) of messages that must each get one INVALID_ARGUMENT outcome.
MALFORMED: Final[tuple[tuple[bytes, dict[str, str]], ...]] = (
    (b"{not json", {}),
    (b"[1, 2]", {}),
    (b"null", {}),
    (b'"soak"', {}),
    (b'{"foo": 1}', {}),
    (b'{"name": "projects/soak-ops/operations/a/b"}', {}),
    (b'{"name": "../etc/passwd"}', {}),
    (b'{"names": []}', {}),
    (b"has space", {}),
    (b"projects/soak-ops/operations/x?y", {}),
    (b'{"select": {"project": "soak-select", "descriptionRegex": "("}}', {}),
    (b'{"select": {"states": ["DONE"]}}', {}),
    (b"\xff\xfe", {}),
    (b"", {"note": "no operation attribute"}),
    (b'{"name": 5}', {}),
    (b'{"names": ["N00001", "bad name"]}', {}),
    (b"https://evil.example/x", {}),
    (b'{"name": "N00001", "dryRun": "yes"}', {}),
)
KINDS: Final = ("name", "names", "bare", "select", "malformed", "budget-below", "budget-over")
# Shares of the main stream (budget-over messages are the budget waves).
MIX: Final = {
    "name": 0.27,
    "names": 0.20,
    "bare": 0.13,
    "select": 0.15,
    "malformed": 0.15,
    "budget-below": 0.10,
}


@dataclass(frozen=True)
class SoakSettings:
    """One soak run; the defaults are the full run."""

    requests: int = 2000
    budget_waves: int = 20
    budget_ops_per_wave: int = 5
    decoys: int = 300
    publish_rate: float = 4.0  # requests per second on the main trigger topic
    fault_probability: float = 0.08  # each of 429, 503 and reset, per EE call
    latency_probability: float = 0.05
    latency_spike_ms: float = 800.0
    outage_seconds: float = 10.0  # every EE call answered 503
    restart_down_seconds: float = 2.0
    topic_outage_seconds: float = 5.0
    retry_deadline: float = 2.0  # RETRY_DEADLINE_SECONDS of both functions
    ack_deadline: int = 60
    # The push subscriptions' retry policy (min, max seconds); None: redeliver at once. With a
    # policy, the emulator (0.8.20) strands messages whose push met a refused connection.
    push_backoff: tuple[int, int] | None = None
    restart_at: float = 0.25  # drills, as fractions of the main stream published
    outage_at: float = 0.5
    topic_at: float = 0.75
    wave_timeout: float = 60.0
    quiet_seconds: float = 3.0
    timeout: float | None = None  # overall; None: the publishing time plus 10 minutes
    seed: int = 20240601
    log_dir: Path | None = None
    source: Path = ROOT / "main.py"  # the function under test

    @classmethod
    def quick(cls, **overrides: Any) -> SoakSettings:
        """A smaller run with every drill: 400 requests, a 5 s outage."""
        base = cls(
            requests=400,
            budget_waves=8,
            decoys=100,
            outage_seconds=5.0,
            topic_outage_seconds=3.0,
            wave_timeout=30.0,
        )
        return replace(base, **overrides)


@dataclass
class Planned:
    """One request message and what it must come to."""

    kind: str
    data: bytes
    attributes: dict[str, str]
    expected: frozenset[str] = frozenset()  # operations that need a final outcome
    message_id: str = ""
    published_at: float = 0.0


@dataclass
class Plan:
    """Everything to seed and publish."""

    main: list[Planned]
    waves: list[tuple[list[dict[str, Any]], Planned]]
    seeded: list[dict[str, Any]]
    decoys: list[dict[str, Any]]


@dataclass(frozen=True)
class Received:
    """One outcome as the collector pulled it."""

    at: float
    source: str
    operation: str | None
    status: str
    state: str | None
    publish_time: str


@dataclass
class SoakReport:
    """Every figure of a run; ``passed`` says whether nothing was lost or wrongly cancelled."""

    requests: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    operations: int = 0
    outcomes: int = 0
    unique: int = 0
    lost: int = 0
    lost_examples: list[str] = field(default_factory=list)
    lost_by_kind: dict[str, int] = field(default_factory=dict)
    malformed_missing: int = 0
    budget_below_outcomes: int = 0
    unexpected_outcomes: int = 0
    bad_statuses: int = 0
    bad_examples: list[str] = field(default_factory=list)
    non_final_outcomes: int = 0
    final_statuses: dict[str, int] = field(default_factory=dict)
    decoys: int = 0
    decoys_cancelled: int = 0
    unrequested_cancelled: int = 0
    requested_still_active: int = 0
    redeliveries: int = 0
    redeliver_500s: int = 0
    publish_error_500s: int = 0
    latency_p50: float = 0.0
    latency_p99: float = 0.0
    latency_max: float = 0.0
    peak_rss_mib: float = 0.0
    rss_growth_pct: float = 0.0
    rss_segment: str = ""
    rss_quarters_mib: list[float] = field(default_factory=list)
    ee_calls: int = 0
    ee_fault_pct: float = 0.0
    ee_faults: dict[str, int] = field(default_factory=dict)
    restart_down_seconds: float = 0.0
    topic_drill_publish_errors: int = 0
    outage_seconds: float = 0.0
    seconds: float = 0.0
    push: str = ""

    @property
    def duplicate_pct(self) -> float:
        """Outcomes received beyond one per (sourceMessageId, operation), in percent."""
        return 100.0 * (self.outcomes - self.unique) / self.unique if self.unique else 0.0

    @property
    def failures(self) -> list[str]:
        """Why the run failed; empty when it passed."""
        checks = {
            "lost": self.lost,
            "malformed without outcome": self.malformed_missing,
            "budget-below outcomes": self.budget_below_outcomes,
            "decoys cancelled": self.decoys_cancelled,
            "cancelled but not requested": self.unrequested_cancelled,
            "unexpected final statuses": self.bad_statuses,
        }
        return [f"{name} {value}" for name, value in checks.items() if value]

    @property
    def passed(self) -> bool:
        """Nothing lost, nothing wrongly cancelled, every malformed message answered."""
        return not self.failures

    def headline(self) -> str:
        """The one-line summary."""
        return (
            f"requests {self.requests}, operations {self.operations}, lost {self.lost}, "
            f"duplicates {self.duplicate_pct:.1f}%, redeliveries {self.redeliveries}, "
            f"publish→outcome p50 {self.latency_p50:.2f} s p99 {self.latency_p99:.1f} s, "
            f"peak RSS {self.peak_rss_mib:.0f} MB, "
            f"RSS growth first→last quarter {self.rss_growth_pct:+.1f}%"
        )

    def lines(self) -> list[str]:
        """The summary block."""
        kinds = ", ".join(f"{kind} {self.by_kind.get(kind, 0)}" for kind in KINDS)
        faults = ", ".join(f"{key} {value}" for key, value in sorted(self.ee_faults.items()))
        statuses = ", ".join(f"{k} {v}" for k, v in sorted(self.final_statuses.items()))
        return [
            self.headline(),
            f"  requests by kind: {kinds}",
            f"  outcomes {self.outcomes}, unique (sourceMessageId, operation) {self.unique}, "
            f"final statuses: {statuses}",
            f"  lost {self.lost} {self.lost_by_kind or ''}, malformed without outcome "
            f"{self.malformed_missing}, budget-below outcomes {self.budget_below_outcomes}, "
            f"unexpected outcomes {self.unexpected_outcomes}, non-final outcomes "
            f"{self.non_final_outcomes}",
            f"  decoys {self.decoys}, decoys cancelled {self.decoys_cancelled}, cancelled but "
            f"not requested {self.unrequested_cancelled}, requested but still active "
            f"{self.requested_still_active}",
            f"  redeliveries (function HTTP 500s) {self.redeliveries}: Redeliver "
            f"{self.redeliver_500s}, PublishError {self.publish_error_500s}",
            f"  publish→outcome max {self.latency_max:.1f} s; RSS growth measured on "
            f"{self.rss_segment}, mean by quarter "
            + ", ".join(f"{q:.1f}" for q in self.rss_quarters_mib)
            + " MB",
            f"  EE emulator: {self.ee_calls} calls, {self.ee_fault_pct:.1f}% answered with a "
            f"transient error outside the outage ({faults}), plus latency spikes",
            f"  drills: EE outage {self.outage_seconds:g} s, SIGKILL + restart (down "
            f"{self.restart_down_seconds:.1f} s), results topic deleted (publish failures "
            f"{self.topic_drill_publish_errors})",
            f"  push: {self.push}",
            f"  {self.seconds:.0f} s; "
            + ("PASS" if self.passed else "FAIL: " + "; ".join(self.failures)),
        ]

    def as_json(self) -> dict[str, Any]:
        """The figures as JSON-ready values."""
        return {
            **asdict(self),
            "duplicate_pct": self.duplicate_pct,
            "passed": self.passed,
            "failures": self.failures,
        }


# Planning ------------------------------------------------------------------------------


def _op(project: str, op_id: str, **fields: Any) -> dict[str, Any]:
    return {"name": f"projects/{project}/operations/{op_id}", "state": "RUNNING", **fields}


def build_plan(settings: SoakSettings) -> Plan:
    """The requests, the operations each one names or selects, the budget waves, the decoys."""
    rng = random.Random(settings.seed)
    total_main = settings.requests - settings.budget_waves
    counts = {kind: int(total_main * share) for kind, share in MIX.items()}
    counts["name"] += total_main - sum(counts.values())
    seeded: list[dict[str, Any]] = []
    main: list[Planned] = []
    serial = itertools.count()

    def names(n: int) -> list[str]:
        ops = [
            _op(OPS_PROJECT, f"N{next(serial):05d}", state=rng.choice(("RUNNING", "PENDING")))
            for _ in range(n)
        ]
        seeded.extend(ops)
        return [op["name"] for op in ops]

    for index in range(counts["name"]):
        [name] = names(1)
        shape = index % 4
        if shape == 0:
            main.append(Planned("name", _json({"name": name}), {}, frozenset([name])))
        elif shape == 1:
            main.append(Planned("name", _json({"operation": name}), {}, frozenset([name])))
        elif shape == 2:
            main.append(Planned("name", f"  {name}\n".encode(), {}, frozenset([name])))
        else:
            main.append(Planned("name", b"", {"operation": name}, frozenset([name])))
    for index in range(counts["names"]):
        chosen = names(rng.randint(2, 5))
        given = [n if rng.random() < 0.5 else n.rsplit("/", 1)[1] for n in chosen]
        key = "names" if index % 2 == 0 else "operations"
        main.append(Planned("names", _json({key: given}), {}, frozenset(chosen)))
    for index in range(counts["bare"]):
        [name] = names(1)
        bare = name.rsplit("/", 1)[1]
        data = bare.encode() if index % 2 == 0 else _json({"name": bare})
        main.append(Planned("bare", data, {}, frozenset([name])))
    for index in range(counts["select"]):
        by_type = index % 2 == 1
        ops = [
            _op(
                SELECT_PROJECT,
                f"S{index:04d}X{j}",
                state=rng.choice(("RUNNING", "PENDING")),
                description=f"soak-sel-{index} op {j}",
                type=f"SOAK_SEL_{index}" if by_type else "EXPORT_IMAGE",
            )
            for j in range(rng.randint(2, 6))
        ]
        seeded.extend(ops)
        selector: dict[str, Any] = {"project": SELECT_PROJECT}
        if by_type:
            selector["types"] = [f"SOAK_SEL_{index}"]
        else:
            selector["descriptionRegex"] = f"^soak-sel-{index} "
        main.append(
            Planned("select", _json({"select": selector}), {}, frozenset(o["name"] for o in ops))
        )
    for index in range(counts["malformed"]):
        data, attributes = MALFORMED[index % len(MALFORMED)]
        main.append(Planned("malformed", data, dict(attributes)))
    for _ in range(counts["budget-below"]):
        cost = round(rng.uniform(1.0, 95.0), 2)
        body = {
            "budgetDisplayName": "soak",
            "costAmount": cost,
            "budgetAmount": 100.0,
            "currencyCode": "USD",
            "costIntervalStart": "2024-06-01T07:00:00Z",
        }
        main.append(Planned("budget-below", _json(body), dict(BUDGET_ATTRIBUTES)))
    rng.shuffle(main)
    waves = []
    for wave in range(settings.budget_waves):
        ops = [_op(BUDGET_PROJECT, f"B{wave:03d}X{j}") for j in range(settings.budget_ops_per_wave)]
        body = {
            "budgetDisplayName": "soak",
            "costAmount": 120.0,
            "budgetAmount": 100.0,
            "alertThresholdExceeded": 1.0,
            "currencyCode": "USD",
        }
        planned = Planned(
            "budget-over", _json(body), dict(BUDGET_ATTRIBUTES), frozenset(o["name"] for o in ops)
        )
        waves.append((ops, planned))
    decoys = []
    for index in range(settings.decoys):
        project = OPS_PROJECT if index % 2 == 0 else SELECT_PROJECT
        decoys.append(
            _op(
                project,
                f"DECOY{index:04d}",
                state="RUNNING" if index % 3 else "PENDING",
                description=f"soak-sel-decoy {index}",
                type="EXPORT_TABLE",
            )
        )
    return Plan(main=main, waves=waves, seeded=seeded, decoys=decoys)


def _json(body: object) -> bytes:
    return json.dumps(body).encode()


# Moving parts --------------------------------------------------------------------------


class Collector:
    """Pulls outcomes from every subscription it is given, in a thread, and files them."""

    def __init__(self, subscriber: Any, subscription: str) -> None:
        self.subscriber = subscriber
        self.subscriptions = [subscription]
        self.received: list[Received] = []
        self.last_at = time.time()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-collector", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> Collector:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def add(self, subscription: str) -> None:
        """Also pull from ``subscription`` (the old one keeps its backlog until drained)."""
        with self._lock:
            self.subscriptions.append(subscription)

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                with self._lock:
                    subscriptions = list(self.subscriptions)
                if not sum(self._pull(subscription) for subscription in subscriptions):
                    self._stop.wait(0.05)
        except BaseException as exc:  # surfaced by run_soak
            self.error = exc

    def _pull(self, subscription: str) -> int:
        from google.api_core import exceptions

        try:
            response = self.subscriber.pull(
                request={"subscription": subscription, "max_messages": 1000}, timeout=2.0
            )
        except exceptions.DeadlineExceeded:
            return 0
        items = response.received_messages
        if not items:
            return 0
        now = time.time()
        batch = []
        for item in items:
            attributes = dict(item.message.attributes)
            try:
                data = json.loads(item.message.data)
            except ValueError:
                data = {}
            trigger = data.get("trigger") or {}
            batch.append(
                Received(
                    at=now,
                    source=attributes.get("sourceMessageId", ""),
                    operation=data.get("operation"),
                    status=str(data.get("status", "")),
                    state=data.get("state"),
                    publish_time=str(trigger.get("publishTime", "")),
                )
            )
        self.subscriber.acknowledge(
            request={"subscription": subscription, "ack_ids": [i.ack_id for i in items]}
        )
        with self._lock:
            self.received.extend(batch)
            self.last_at = now
        return len(items)


class RssSampler:
    """Samples the serving worker's RSS every ``period`` seconds, following restarts."""

    def __init__(self, pid: Callable[[], int | None], period: float = 0.1) -> None:
        self.pid = pid
        self.period = period
        self.samples: list[tuple[float, int, int]] = []  # (time, worker pid, rss bytes)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-rss", daemon=True)

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            pid = self.pid()
            if pid is not None:
                with contextlib.suppress(psutil.Error):
                    children = psutil.Process(pid).children(recursive=True)
                    if children:
                        worker = children[-1]
                        rss = int(worker.memory_info().rss)
                        self.samples.append((time.time(), worker.pid, rss))
            self._stop.wait(self.period)

    def figures(self) -> tuple[float, float, str, list[float]]:
        """Peak RSS (MiB); growth (%) from the first to the last quarter of the longest process
        lifetime sampled (a restart starts a fresh process); which one; its mean per quarter."""
        if not self.samples:
            return 0.0, 0.0, "no samples", []
        peak = max(rss for _, _, rss in self.samples) / 2**20
        by_pid: dict[int, list[tuple[float, int]]] = {}
        for at, pid, rss in self.samples:
            by_pid.setdefault(pid, []).append((at, rss))
        segment = max(by_pid.values(), key=lambda s: s[-1][0] - s[0][0])
        start, end = segment[0][0], segment[-1][0]
        span = max(end - start, 1e-9)
        quarters: list[list[int]] = [[], [], [], []]
        for at, rss in segment:
            quarters[min(3, int(4 * (at - start) / span))].append(rss)
        means = [statistics.mean(q) / 2**20 if q else 0.0 for q in quarters]
        growth = 100.0 * (means[3] / means[0] - 1.0) if means[0] and means[3] else 0.0
        share = 100.0 * span / max(1e-9, self.samples[-1][0] - self.samples[0][0])
        where = f"the longest-lived worker ({span:.0f} s, {share:.0f}% of the run)"
        return peak, growth, where, means


class Soak:
    """The system under test, its drills, and the bookkeeping of one run."""

    def __init__(self, settings: SoakSettings, stack: Stack, log_dir: Path) -> None:
        self.settings = settings
        self.stack = stack
        self.log_dir = log_dir
        self.timeout = settings.timeout or settings.requests / settings.publish_rate + 600
        self.deadline = time.monotonic() + self.timeout
        self.plan = build_plan(settings)
        self.published = 0
        self.errors: list[BaseException] = []
        self.report = SoakReport(outage_seconds=settings.outage_seconds)
        self.outage_window = (0.0, 0.0)
        self.results_topic = ""
        self.collector: Collector
        self.main: FunctionProcess
        self.budget: FunctionProcess
        self.push: dict[str, tuple[str, str]] = {}  # name -> (subscription, endpoint)
        self.timeline: list[tuple[float, str]] = []
        self.lost: list[tuple[Planned, str]] = []
        self.stopping = threading.Event()

    def mark(self, event: str) -> None:
        self.timeline.append((time.time(), event))

    # Setting up ----------------------------------------------------------------------

    def base_faults(self) -> list[dict[str, Any]]:
        p = self.settings.fault_probability
        return [
            {
                "kind": "latency",
                "probability": self.settings.latency_probability,
                "latencyMs": self.settings.latency_spike_ms,
            },
            {"kind": "status", "httpStatus": 429, "retryAfter": 1, "probability": p},
            {"kind": "status", "httpStatus": 503, "probability": p},
            {"kind": "reset", "probability": p},
        ]

    def function_env(self, projects: str) -> dict[str, str]:
        return self.stack.function_env(
            self.results_topic,
            EE_PROJECTS=projects,
            RETRY_DEADLINE_SECONDS=f"{self.settings.retry_deadline:g}",
        )

    def start_function(self, env: Mapping[str, str], name: str, port: int) -> FunctionProcess:
        function = FunctionProcess(
            env, port=port, source=self.settings.source, log_path=self.log_dir / f"{name}.log"
        ).start()
        self.stack.functions.append(function)  # the stack stops it
        return function

    def push_subscription(self, topic: str, name: str, endpoint: str) -> None:
        path = f"projects/{self.stack.project}/subscriptions/{name}"
        self.stack.subscriber.create_subscription(
            request={
                "name": path,
                "topic": topic,
                "ack_deadline_seconds": self.settings.ack_deadline,
                "push_config": {"push_endpoint": endpoint},
                **self.retry_policy(),
            }
        )
        self.push[name] = (path, endpoint)

    def retry_policy(self) -> dict[str, Any]:
        if self.settings.push_backoff is None:
            return {}
        low, high = self.settings.push_backoff
        return {
            "retry_policy": {
                "minimum_backoff": {"seconds": low},
                "maximum_backoff": {"seconds": high},
            }
        }

    def set_up(self) -> tuple[str, str]:
        admin = self.stack.admin
        admin.add_operations(operations=self.plan.seeded + self.plan.decoys)
        self.results_topic = self.stack.topic("soak-results")
        self.collector = Collector(
            self.stack.subscriber, self.stack.subscription(self.results_topic, "soak-collector-1")
        ).start()
        self.main = self.start_function(
            self.function_env(f"{OPS_PROJECT},{SELECT_PROJECT}"), "function-main", free_port()
        )
        self.budget = self.start_function(
            self.function_env(BUDGET_PROJECT), "function-budget", free_port()
        )
        main_topic = self.stack.topic("soak-requests")
        budget_topic = self.stack.topic("soak-budget-requests")
        self.push_subscription(main_topic, "soak-push-main", self.main.url)
        self.push_subscription(budget_topic, "soak-push-budget", self.budget.url)
        admin.set_faults(self.base_faults(), seed=self.settings.seed)
        return main_topic, budget_topic

    # Traffic -------------------------------------------------------------------------

    def check_time(self) -> None:
        if self.stopping.is_set():
            raise RuntimeError("soak stopping")
        if time.monotonic() > self.deadline:
            raise TimeoutError(f"soak exceeded its {self.timeout:g} s timeout")

    def publish(self, topic: str, planned: Planned) -> None:
        planned.published_at = time.time()
        future = self.stack.publisher.publish(topic, planned.data, **planned.attributes)
        planned.message_id = future.result(timeout=30)

    def publish_main(self, topic: str) -> None:
        interval = 1.0 / self.settings.publish_rate
        began = time.monotonic()
        for index, planned in enumerate(self.plan.main):
            self.check_time()
            delay = began + index * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.publish(topic, planned)
            self.published = index + 1

    def run_waves(self, topic: str) -> None:
        total = len(self.plan.main)
        for wave, (ops, planned) in enumerate(self.plan.waves):
            while self.published < total * wave / len(self.plan.waves):
                self.check_time()
                time.sleep(0.1)
            self.stack.admin.add_operations(operations=ops)
            self.publish(topic, planned)
            give_up = time.monotonic() + self.settings.wave_timeout
            # The next wave waits for this one, so each notification covers its own wave.
            while time.monotonic() < give_up and not self.complete(planned):
                time.sleep(0.1)

    def complete(self, planned: Planned) -> bool:
        done = {
            r.operation
            for r in self.collector.snapshot()
            if r.source == planned.message_id and r.status not in TRANSIENT
        }
        return planned.expected <= done

    def thread(self, target: Callable[..., None], *args: Any) -> threading.Thread:
        def run() -> None:
            try:
                target(*args)
            except BaseException as exc:
                self.errors.append(exc)

        worker = threading.Thread(target=run, name=f"soak-{target.__name__}", daemon=True)
        worker.start()
        return worker

    def wait_published(self, fraction: float) -> None:
        while self.published < fraction * len(self.plan.main) and not self.errors:
            self.check_time()
            time.sleep(0.1)

    # Drills --------------------------------------------------------------------------

    def restart_drill(self) -> None:
        """SIGKILL the function's processes mid-run; start it again on the same port."""
        old = self.main
        began = time.monotonic()
        old.kill()  # the arbiter and its worker, as one process group
        self.mark("function killed")
        time.sleep(self.settings.restart_down_seconds)
        self.main = self.start_function(old.env, "function-main", old.port)
        self.mark("function restarted")
        self.report.restart_down_seconds = time.monotonic() - began

    def outage_drill(self) -> None:
        """Every Earth Engine call answers 503 for a while: messages pile up as redeliveries."""
        admin = self.stack.admin
        began = time.time()
        admin.set_faults([{"kind": "status", "httpStatus": 503}])
        self.mark("EE outage begins")
        time.sleep(self.settings.outage_seconds)
        admin.set_faults(self.base_faults(), seed=self.settings.seed + 1)
        self.mark("EE outage ends")
        self.outage_window = (began, time.time())

    def topic_drill(self) -> None:
        """Delete the results topic, let the functions fail to publish, then recreate it.

        Deleting a topic detaches its subscriptions, and a new subscription only receives what
        is published after it exists. So push delivery is paused and the functions left idle
        before the topic and the new collector subscription are created: nothing can be
        published in between. The detached subscription keeps its backlog and is drained.
        """
        publisher = self.stack.publisher
        before = self.publish_errors()
        publisher.delete_topic(request={"topic": self.results_topic})
        self.mark("results topic deleted")
        time.sleep(self.settings.topic_outage_seconds)
        self.pause_push()
        publisher.create_topic(request={"name": self.results_topic})
        self.mark("results topic recreated")
        self.collector.add(self.stack.subscription(self.results_topic, "soak-collector-2"))
        self.mark("collector subscription created")
        self.resume_push()
        self.report.topic_drill_publish_errors = self.publish_errors() - before

    def pause_push(self) -> None:
        for path, _ in self.push.values():
            self.stack.subscriber.modify_push_config(
                request={"subscription": path, "push_config": {}}
            )
        self.mark("push paused")
        # A push the emulator had already started still arrives: wait until both are idle.
        idle_since = time.monotonic()
        give_up = idle_since + 30 + 5 * self.settings.retry_deadline
        time.sleep(0.3)
        while time.monotonic() - idle_since < 1.0:
            self.check_time()
            if time.monotonic() > give_up:
                raise RuntimeError("the functions did not go idle with push delivery paused")
            if self.in_flight(self.main) or self.in_flight(self.budget):
                idle_since = time.monotonic()
            time.sleep(0.05)
        self.mark("functions idle")

    def resume_push(self) -> None:
        for path, endpoint in self.push.values():
            self.stack.subscriber.modify_push_config(
                request={"subscription": path, "push_config": {"push_endpoint": endpoint}}
            )
        self.mark("push resumed")

    @staticmethod
    def in_flight(function: FunctionProcess) -> int:
        """Open client connections to the function's port (a push being handled)."""
        count = 0
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(function.pid)
            for process in (root, *root.children(recursive=True)):
                count += sum(
                    1
                    for c in process.net_connections(kind="tcp")
                    if c.laddr and c.laddr.port == function.port and c.status != psutil.CONN_LISTEN
                )
        return count

    def main_pid(self) -> int | None:
        """The running main function's PID (None while it is down)."""
        return self.main.pid if self.main.process is not None else None

    # Logs ----------------------------------------------------------------------------

    def log_lines(self) -> list[str]:
        lines: list[str] = []
        for name in ("function-main", "function-budget"):
            path = self.log_dir / f"{name}.log"
            if path.exists():
                lines.extend(path.read_text(errors="replace").splitlines())
        return lines

    def publish_errors(self) -> int:
        return sum(1 for line in self.log_lines() if "PublishError:" in line)

    # The run -------------------------------------------------------------------------

    def run(self) -> SoakReport:
        began = time.monotonic()
        main_topic, budget_topic = self.set_up()
        self.mark("set up")
        sampler = RssSampler(self.main_pid).start()
        try:
            publisher = self.thread(self.publish_main, main_topic)
            waves = self.thread(self.run_waves, budget_topic)
            drills = [
                (self.settings.restart_at, self.restart_drill),
                (self.settings.outage_at, self.outage_drill),
                (self.settings.topic_at, self.topic_drill),
            ]
            for fraction, drill in sorted(drills, key=lambda d: d[0]):
                self.wait_published(fraction)
                self.raise_errors()
                drill()
            for worker in (publisher, waves):
                while worker.is_alive():
                    self.check_time()
                    worker.join(timeout=0.5)
            self.raise_errors()
            self.settle()
        finally:
            self.stopping.set()
            sampler.stop()
            self.collector.stop()
        self.account(sampler)
        self.report.seconds = time.monotonic() - began
        self.write_diagnostics()
        return self.report

    def write_diagnostics(self) -> None:
        """With a log directory: the timeline, the lost outcomes and every figure, as JSON."""
        if self.settings.log_dir is None:
            return
        began = self.timeline[0][0] if self.timeline else 0.0
        body = {
            "report": self.report.as_json(),
            "timeline": [(round(at - began, 3), event) for at, event in self.timeline],
            "lost": [
                {
                    "kind": planned.kind,
                    "messageId": planned.message_id,
                    "publishedAt": round(planned.published_at - began, 3),
                    "operation": operation,
                }
                for planned, operation in self.lost
            ],
        }
        path = self.settings.log_dir / "soak.json"
        path.write_text(json.dumps(body, indent=2, default=str))

    def raise_errors(self) -> None:
        if self.collector.error is not None:
            self.errors.append(self.collector.error)
        if self.errors:
            raise self.errors[0]

    def needed(self) -> set[tuple[str, str | None]]:
        needed: set[tuple[str, str | None]] = set()
        for planned in self.all_planned():
            if planned.kind == "malformed":
                needed.add((planned.message_id, None))
            needed.update((planned.message_id, op) for op in planned.expected)
        return needed

    def settle(self) -> None:
        """Wait until every needed outcome arrived, then for a quiet spell (late duplicates).

        Gives up once nothing has arrived for longer than the push retry backoff allows.
        """
        needed = self.needed()
        backoff = self.settings.push_backoff[1] if self.settings.push_backoff else 1
        give_up_after = 2.5 * backoff + 3 * self.settings.retry_deadline + 10
        while True:
            self.check_time()
            self.raise_errors()
            got = {
                (r.source, r.operation)
                for r in self.collector.snapshot()
                if r.status not in TRANSIENT
            }
            idle = time.time() - self.collector.last_at
            if needed <= got and idle >= self.settings.quiet_seconds:
                return
            if idle > give_up_after:
                return
            time.sleep(0.2)

    def all_planned(self) -> list[Planned]:
        return [*self.plan.main, *(planned for _, planned in self.plan.waves)]

    # Accounting ----------------------------------------------------------------------

    def account(self, sampler: RssSampler) -> None:
        report = self.report
        planned_all = [p for p in self.all_planned() if p.message_id]
        received = self.collector.snapshot()
        by_source: dict[str, list[Received]] = {}
        for item in received:
            by_source.setdefault(item.source, []).append(item)
        report.requests = len(planned_all)
        report.by_kind = dict(Counter(p.kind for p in planned_all))
        report.outcomes = len(received)
        report.unique = len({(r.source, r.operation) for r in received})
        report.non_final_outcomes = sum(1 for r in received if r.status in TRANSIENT)
        report.final_statuses = dict(
            Counter(r.status for r in received if r.status not in TRANSIENT)
        )
        known = {p.message_id: p for p in planned_all}
        report.unexpected_outcomes = sum(
            1
            for r in received
            if r.source not in known
            or (known[r.source].kind != "malformed" and r.operation not in known[r.source].expected)
        )
        latencies: list[float] = []
        lost_by_kind: Counter[str] = Counter()
        requested: set[str] = set()
        for planned in planned_all:
            outcomes = [
                r for r in by_source.get(planned.message_id, []) if r.status not in TRANSIENT
            ]
            if planned.kind == "budget-below":
                report.budget_below_outcomes += len(by_source.get(planned.message_id, []))
                continue
            if planned.kind == "malformed":
                answer = [
                    r for r in outcomes if r.operation is None and r.status == "INVALID_ARGUMENT"
                ]
                if answer:
                    latencies.append(min(r.at for r in answer) - _publish_time(answer[0], planned))
                else:
                    report.malformed_missing += 1
                continue
            requested |= planned.expected
            report.operations += len(planned.expected)
            for operation in sorted(planned.expected):
                finals = [r for r in outcomes if r.operation == operation]
                if not finals:
                    lost_by_kind[planned.kind] += 1
                    self.lost.append((planned, operation))
                    if len(report.lost_examples) < 5:
                        report.lost_examples.append(
                            f"{planned.kind} {planned.message_id} {operation}"
                        )
                    continue
                first = min(finals, key=lambda r: r.at)
                latencies.append(first.at - _publish_time(first, planned))
                wrong = [r for r in finals if not _acceptable(r)]
                if wrong:
                    report.bad_statuses += 1
                    if len(report.bad_examples) < 5:
                        report.bad_examples.append(
                            f"{planned.message_id} {operation} {wrong[0].status} {wrong[0].state}"
                        )
        report.lost = sum(lost_by_kind.values())
        report.lost_by_kind = dict(lost_by_kind)
        if latencies:
            ordered = sorted(latencies)
            report.latency_p50 = statistics.median(ordered)
            report.latency_p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
            report.latency_max = ordered[-1]
        self.account_emulator(requested)
        lines = self.log_lines()
        report.redeliver_500s = sum(1 for line in lines if line.startswith("lib.cancel.Redeliver"))
        report.publish_error_500s = sum(
            1 for line in lines if line.startswith("lib.publisher.PublishError")
        )
        report.redeliveries = sum(1 for line in lines if "Exception on / [POST]" in line)
        (
            report.peak_rss_mib,
            report.rss_growth_pct,
            report.rss_segment,
            report.rss_quarters_mib,
        ) = sampler.figures()
        policy = (
            "no retry policy: a failed push is redelivered after 1 s"
            if self.settings.push_backoff is None
            else "retry policy {}-{} s: 1 s, then growing backoff".format(
                *self.settings.push_backoff
            )
        )
        report.push = (
            f"{len(self.push)} push subscriptions, ack deadline {self.settings.ack_deadline} s, "
            f"{policy}; the emulator pushes at most 2 messages at a time per subscription"
        )

    def account_emulator(self, requested: set[str]) -> None:
        report = self.report
        states = {op["name"]: op["metadata"]["state"] for op in self.stack.admin.operations()}
        cancelled = {name for name, state in states.items() if state in {"CANCELLING", "CANCELLED"}}
        decoys = {op["name"] for op in self.plan.decoys}
        report.decoys = len(decoys)
        report.decoys_cancelled = sum(1 for name in decoys if states.get(name) not in ACTIVE)
        report.unrequested_cancelled = len(cancelled - requested)
        report.requested_still_active = sum(1 for name in requested if states.get(name) in ACTIVE)
        start, end = self.outage_window
        calls = [r for r in self.stack.admin.requests() if not start <= r["time"] <= end]
        faults = Counter(
            "reset" if r["status"] is None else str(r["status"])
            for r in calls
            if r["status"] in (None, 429, 503)
        )
        report.ee_calls = len(calls)
        report.ee_faults = dict(faults)
        report.ee_fault_pct = 100.0 * sum(faults.values()) / len(calls) if calls else 0.0


def _acceptable(outcome: Received) -> bool:
    """OK, or FAILED_PRECONDITION from re-cancelling an operation an earlier delivery cancelled
    (its state unknown when the follow-up GetOperation failed too)."""
    if outcome.status == "FAILED_PRECONDITION":
        return outcome.state in {"CANCELLED", "CANCELLING", None}
    return outcome.status == "OK"


def _publish_time(outcome: Received, planned: Planned) -> float:
    """The outcome's trigger.publishTime, or the time this script published the request."""
    with contextlib.suppress(ValueError):
        return datetime.fromisoformat(outcome.publish_time.replace("Z", "+00:00")).timestamp()
    return planned.published_at


@contextlib.contextmanager
def _log_dir(path: Path | None) -> Iterator[Path]:
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="ee-cancel-soak-") as temporary:
        yield Path(temporary)


def run_soak(settings: SoakSettings) -> SoakReport:
    """Run one soak on loopback; everything started is stopped on the way out."""
    projects = (OPS_PROJECT, SELECT_PROJECT, BUDGET_PROJECT)
    with (
        _log_dir(settings.log_dir) as log_dir,
        Stack(ee_projects=projects, log_dir=log_dir) as stack,
    ):
        return Soak(settings, stack, log_dir).run()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Chaos soak through Pub/Sub push delivery.")
    parser.add_argument("--quick", action="store_true", help="a smaller run (400 requests)")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    parser.add_argument("--log-dir", type=Path, help="keep emulator and function logs here")
    parser.add_argument("--requests", type=int, help="override the number of requests")
    parser.add_argument("--seed", type=int, help="override the fault and plan seed")
    parser.add_argument("--source", type=Path, help="main.py of the function to test")
    args = parser.parse_args(argv)
    overrides: dict[str, Any] = {"log_dir": args.log_dir}
    if args.requests is not None:
        overrides["requests"] = args.requests
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.source is not None:
        overrides["source"] = args.source.resolve()
    settings = (
        SoakSettings.quick(**overrides) if args.quick else replace(SoakSettings(), **overrides)
    )
    report = run_soak(settings)
    print()
    print("== soak: chaos through Pub/Sub push ==")
    for line in report.lines():
        print(line)
    if report.lost_examples:
        print("  lost, e.g.: " + "; ".join(report.lost_examples))
    if report.bad_examples:
        print("  unexpected final statuses, e.g.: " + "; ".join(report.bad_examples))
    if args.json:
        print(json.dumps(report.as_json(), indent=2, sort_keys=True, default=str))
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
