"""The cancel engine: one message in, one outcome per operation out, redelivery when needed.

It turns a parsed request into a list of operation names (given, or selected from listings),
cancels them concurrently within the instance's quota, streams each outcome to the publisher,
and decides between acking (return) and redelivery (raise ``Redeliver``).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, as_completed
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any, Final

from lib.config import Config
from lib.earthengine import ApiResult, EarthEngine, operation_state
from lib.logs import Log, log
from lib.messages import Ignored, Invalid, Message, Request, parse
from lib.outcomes import Outcome, Trigger
from lib.publisher import Batch, Publisher, PublishError
from lib.retry import Retrier
from lib.selection import ACTIVE, CANCELLED_STATES, Selection, parse_time

DONE_STATES: Final = frozenset({"SUCCEEDED", "CANCELLED", "FAILED"})
_VERIFY_INTERVAL: Final = 0.5


class Redeliver(Exception):
    """Raised so that Pub/Sub redelivers the message: some operations failed transiently."""


@dataclass(frozen=True)
class _Pending:
    """An operation whose last attempt failed transiently after the retry deadline."""

    operation: str | None
    result: ApiResult
    what: str


@dataclass
class Report:
    """What one message came to, for logs, the CLI and tests."""

    kind: str = "request"
    outcomes: list[Outcome] = field(default_factory=list)
    ignored: str | None = None

    @property
    def errors(self) -> int:
        """How many outcomes are not OK."""
        return sum(1 for outcome in self.outcomes if not outcome.ok)


class Delivered:
    """Operations of recent messages whose outcomes were confirmed by this instance.

    A redelivered message then skips them, so consumers see fewer duplicates. It is a
    per-instance courtesy: another instance has no such memory, and consumers still
    de-duplicate on (sourceMessageId, operation).
    """

    def __init__(self, capacity: int = 2048) -> None:
        self._capacity = capacity
        self._seen: OrderedDict[str, frozenset[str]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, message_id: str) -> frozenset[str]:
        """The operations already settled for ``message_id``."""
        with self._lock:
            return self._seen.get(message_id, frozenset())

    def add(self, message_id: str, operations: Iterable[str]) -> None:
        """Remember more settled operations of ``message_id``."""
        with self._lock:
            self._seen[message_id] = self._seen.get(message_id, frozenset()) | frozenset(operations)
            self._seen.move_to_end(message_id)
            while len(self._seen) > self._capacity:
                self._seen.popitem(last=False)


@dataclass
class Engine:
    """Everything one instance needs to handle messages; shared by concurrent invocations."""

    config: Config
    ee: EarthEngine
    publisher: Publisher
    retrier: Retrier
    executor: Executor | None = None
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    logger: Log = log
    delivered: Delivered = field(default_factory=Delivered)

    def handle(self, message: Message) -> Report:
        """Handle one message. Returns to ack; raises ``Redeliver`` or ``PublishError`` to retry."""
        parsed = parse(message, self.config)
        if isinstance(parsed, Ignored):
            # Below the threshold: no Earth Engine call and nothing published (SPEC §3.1).
            self.logger("INFO", parsed.reason, messageId=message.message_id, budget=parsed.budget)
            return Report(kind="budget", ignored=parsed.reason)
        try:
            if isinstance(parsed, Invalid):
                return self._refuse(message, parsed)
            return _Run(self, message, parsed).run()
        except PublishError as exc:
            # Raise to retry: outcomes that were not confirmed must come back with the message.
            self.logger(
                "ERROR",
                f"outcomes not published; message left for redelivery: {exc}",
                messageId=message.message_id,
            )
            raise

    def _refuse(self, message: Message, invalid: Invalid) -> Report:
        trigger = Trigger(invalid.kind, message.message_id, message.publish_time)
        outcome = Outcome(None, invalid.status, invalid.message, trigger)
        batch = self.publisher.batch()
        batch.send(outcome)
        batch.confirm()
        self.logger(
            "WARNING",
            f"request refused: {invalid.message}",
            messageId=message.message_id,
            status=invalid.status,
            trigger=invalid.kind,
        )
        return Report(kind=invalid.kind, outcomes=[outcome])


class _Run:
    """The handling of one valid request."""

    def __init__(self, engine: Engine, message: Message, request: Request) -> None:
        self.engine = engine
        self.config = engine.config
        self.message = message
        self.request = request
        self.trigger = Trigger(
            request.kind, message.message_id, message.publish_time, request.budget
        )
        self.report = Report(kind=request.kind)
        self.batch: Batch = engine.publisher.batch()
        self.pending: list[_Pending] = []
        self.retry_until: float | None = None
        self.accepted: dict[str, Outcome] = {}

    def run(self) -> Report:
        settled = self.engine.delivered.get(self.message.message_id)
        for refusal in self.request.denied:
            if refusal.operation not in settled:
                self._emit(
                    Outcome(refusal.operation, refusal.status, refusal.message, self.trigger)
                )
        if self.request.selection is not None:
            names = self._select(self.request.selection, settled)
        else:
            names = [name for name in self.request.names if name not in settled]
        if names:
            self._cancel_all(names)
        self._finish()
        return self.report

    # Selection -------------------------------------------------------------------------

    def _select(self, selection: Selection, settled: frozenset[str]) -> list[str]:
        now = datetime.fromtimestamp(self.engine.clock(), UTC)
        # Operations cancelled since the message was published may be this message's own work
        # from an earlier delivery whose outcomes were never confirmed: report them again.
        since = None if self.request.dry_run else parse_time(self.message.publish_time)
        chosen: dict[str, dict[str, Any]] = {}
        for project in selection.projects:
            for operation in self._list(project):
                name = operation.get("name")
                # Skipped: operations this instance already reported for this message.
                if (
                    isinstance(name, str)
                    and name not in settled
                    and selection.matches(operation, now, since)
                ):
                    chosen[name] = operation
        self.engine.logger(
            "INFO",
            f"selected {len(chosen)} operation(s)",
            messageId=self.message.message_id,
            trigger=self.request.kind,
            projects=list(selection.projects),
        )
        if len(chosen) > self.config.max_operations:
            self._emit(
                Outcome(
                    None,
                    "INVALID_ARGUMENT",
                    f"{len(chosen)} operations match, over MAX_OPERATIONS_PER_MESSAGE "
                    f"({self.config.max_operations}); none cancelled: narrow the selection",
                    self.trigger,
                    dry_run=self.request.dry_run,
                )
            )
            return []
        if self.request.dry_run:
            for name, operation in chosen.items():
                state = operation_state(operation)
                self._emit(self._dry_run_outcome(name, state))
            return []
        active = []
        for name, operation in chosen.items():
            state = operation_state(operation)
            if state in CANCELLED_STATES:
                # No call needed: the listing already says how the earlier cancel went.
                self._emit(
                    Outcome(
                        name,
                        "FAILED_PRECONDITION",
                        f"operation is already {state}: cancelled since this message was "
                        "published (by an earlier delivery of it, or another request)",
                        self.trigger,
                        state=state,
                    )
                )
            else:
                active.append(name)
        return active

    def _list(self, project: str) -> Iterator[dict[str, Any]]:
        token: str | None = None
        while True:
            result = self.engine.retrier.call(partial(self.engine.ee.list, project, token))
            if not result.ok:
                what = f"listing operations in project {project}"
                if result.transient:
                    self.pending.append(_Pending(None, result, what))
                else:
                    self._emit(self._error(None, result, prefix=f"{what} failed: "))
                return
            operations = result.body.get("operations", [])
            if isinstance(operations, list):
                yield from (op for op in operations if isinstance(op, dict))
            next_token = result.body.get("nextPageToken")
            if not isinstance(next_token, str) or not next_token:
                return
            token = next_token

    # Cancelling ------------------------------------------------------------------------

    def _cancel_all(self, names: list[str]) -> None:
        # Each operation may retry for RETRY_DEADLINE_SECONDS, but the message as a whole only
        # for that plus the time its calls need at EE_MAX_QPS: when Earth Engine is down, the
        # operations still queued get one attempt each instead of a full retry window each.
        self.retry_until = (
            self.engine.retrier.clock()
            + self.config.retry_deadline
            + len(names) / self.config.max_qps
        )
        work = self._dry_run_one if self.request.dry_run else self._cancel_one
        executor = self.engine.executor
        if len(names) == 1 or executor is None:
            for name in names:
                self._settle(work(name))
        else:
            futures = [executor.submit(work, name) for name in names]
            for future in as_completed(futures):
                self._settle(future.result())
        if self.accepted:
            self._verify_all()

    def _settle(self, result: Outcome | _Pending) -> None:
        if isinstance(result, _Pending):
            self.pending.append(result)
        elif self.config.verify_seconds > 0 and result.ok and not result.dry_run:
            self.accepted[result.operation or ""] = result  # reported once verified
        else:
            self._emit(result)

    def _cancel_one(self, name: str) -> Outcome | _Pending:
        ee, retrier = self.engine.ee, self.engine.retrier
        result = retrier.call(lambda: ee.cancel(name), self.retry_until)
        if result.transient:
            return _Pending(name, result, "cancelling")
        if result.ok:
            return Outcome(
                name,
                "OK",
                "cancellation requested",
                self.trigger,
                response=result.body,
                http_status=result.http_status,
            )
        state = None
        if result.status == "FAILED_PRECONDITION":
            # The operation may be done already (e.g. a redelivered cancel): say how it ended.
            got = retrier.call(lambda: ee.get(name), self.retry_until)
            state = operation_state(got.body) if got.ok else None
        return self._error(name, result, state=state)

    def _dry_run_one(self, name: str) -> Outcome | _Pending:
        result = self.engine.retrier.call(lambda: self.engine.ee.get(name), self.retry_until)
        if result.transient:
            return _Pending(name, result, "looking up")
        if not result.ok:
            return self._error(name, result)
        return self._dry_run_outcome(name, operation_state(result.body), result.http_status)

    def _dry_run_outcome(
        self, name: str, state: str | None, http_status: int | None = None
    ) -> Outcome:
        if state in DONE_STATES:
            status, text = "FAILED_PRECONDITION", f"dry run: operation is already {state}"
        else:
            status, text = "OK", f"dry run: would cancel this {state or 'unknown-state'} operation"
        return Outcome(
            name, status, text, self.trigger, dry_run=True, http_status=http_status, state=state
        )

    def _verify_all(self) -> None:
        """Poll the accepted cancels together for up to VERIFY_SECONDS, then report them.

        One GetOperation per unsettled operation per round, so a bulk cancel waits at most
        VERIFY_SECONDS in all rather than per operation.
        """
        engine, waiting = self.engine, dict(self.accepted)
        states: dict[str, str | None] = dict.fromkeys(waiting)
        clock = engine.retrier.clock
        stop_at = clock() + self.config.verify_seconds
        while waiting:
            for name, got in zip(waiting, self._map(engine.ee.get, list(waiting)), strict=True):
                if got.ok:
                    states[name] = operation_state(got.body)
            waiting = {n: o for n, o in waiting.items() if states[n] not in DONE_STATES}
            remaining = stop_at - clock()
            if not waiting or remaining <= 0:
                break
            engine.sleep(min(_VERIFY_INTERVAL, remaining))
        for name, outcome in self.accepted.items():
            state = states[name]
            message = _ok_message(state, self.config.verify_seconds)
            self._emit(replace(outcome, state=state, message=message))
        self.accepted = {}

    def _map(self, call: Callable[[str], ApiResult], names: list[str]) -> Iterator[ApiResult]:
        executor = self.engine.executor
        if executor is None or len(names) == 1:
            return map(call, names)
        return executor.map(call, names)

    # Results ---------------------------------------------------------------------------

    def _error(
        self, name: str | None, result: ApiResult, *, state: str | None = None, prefix: str = ""
    ) -> Outcome:
        message = prefix + (result.message or result.status)
        if state is not None and state not in message:
            message += f" (operation is {state})"
        return Outcome(
            name,
            result.status,
            message,
            self.trigger,
            dry_run=self.request.dry_run,
            http_status=result.http_status,
            state=state,
        )

    def _emit(self, outcome: Outcome) -> None:
        self.batch.send(outcome)
        self.report.outcomes.append(outcome)
        self.engine.logger(
            "INFO" if outcome.ok else "WARNING",
            f"{outcome.operation or 'request'}: {outcome.status}: {outcome.message}",
            messageId=self.message.message_id,
            operation=outcome.operation,
            status=outcome.status,
            state=outcome.state,
            trigger=self.request.kind,
            dryRun=outcome.dry_run or None,
        )

    def _finish(self) -> None:
        """Confirm the outcomes, then ack or ask for redelivery of what is still pending."""
        if self.pending and self._event_age() > self.config.max_event_age:
            # Too old to keep retrying: the last transient status becomes the final outcome.
            for pending in self.pending:
                self._emit(
                    self._error(
                        pending.operation,
                        pending.result,
                        prefix=f"gave up {pending.what} after MAX_EVENT_AGE_SECONDS: ",
                    )
                )
            self.pending = []
        self.batch.confirm()  # raises PublishError: the message is redelivered
        self.engine.delivered.add(
            self.message.message_id, (o.operation for o in self.report.outcomes if o.operation)
        )
        if self.pending:
            first = self.pending[0]
            self.engine.logger(
                "WARNING",
                f"{len(self.pending)} operation(s) failed transiently past "
                f"RETRY_DEADLINE_SECONDS; message left for redelivery",
                messageId=self.message.message_id,
                status=first.result.status,
                operation=first.operation,
                published=len(self.report.outcomes),
            )
            # Raise to retry: Pub/Sub redelivers the message and the pending ones are tried again.
            raise Redeliver(
                f"{len(self.pending)} operation(s) still failing transiently "
                f"({first.result.status}: {first.result.message})"
            )

    def _event_age(self) -> float:
        published = parse_time(self.message.publish_time)
        if published is None:
            return 0.0
        return self.engine.clock() - published.timestamp()


def _ok_message(state: str | None, verify_seconds: float) -> str:
    if state is None:
        return "cancellation requested"
    if state == "CANCELLED":
        return "cancelled"
    if state in ACTIVE or state == "CANCELLING":
        return f"cancellation requested; operation still {state} after {verify_seconds:g}s"
    return f"cancellation requested, but the operation ended {state}"
