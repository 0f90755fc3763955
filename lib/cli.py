"""The operator command line: ``python main.py list | cancel | publish | results``.

``cancel`` runs the function's own engine in-process with the operator's Application Default
Credentials, so a request given here is parsed, selected, retried and reported exactly as the
function would; its outcomes are printed instead of published. ``publish`` sends a request
(or a synthetic budget alert) to the trigger topic, and ``results`` reads outcomes back from a
subscription on the results topic.

Exit codes: 0 when everything asked for succeeded, 1 when an outcome is not OK or a Pub/Sub
call failed, 2 for usage, configuration and credential errors.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, Final, TextIO

import click

from lib.cancel import Engine, Redeliver
from lib.config import (
    EE_EMULATOR_HOST,
    EE_PROJECTS,
    GOOGLE_CLOUD_PROJECT,
    RESULTS_TOPIC,
    Config,
    ConfigError,
    is_project_id,
)
from lib.earthengine import RestEarthEngine, open_session, operation_state
from lib.errors import Rejected
from lib.logs import Log
from lib.messages import Message
from lib.names import excerpt, resolve
from lib.outcomes import Outcome, now_rfc3339
from lib.publisher import Batch
from lib.ratelimit import Gate
from lib.retry import Retrier
from lib.rpc import CODES
from lib.selection import ACTIVE, STATES, parse_selection, parse_time

USAGE_ERROR: Final = 2
FAILURE: Final = 1
PUBSUB_EMULATOR_HOST: Final = "PUBSUB_EMULATOR_HOST"

# The CLI never publishes outcomes, but Config insists on a results topic.
_UNUSED_TOPIC: Final = "projects/ee-cancel-cli/topics/unused"
_PLACEHOLDER_PROJECT: Final = "ee-cancel-cli"
# From this many names on, a cancel counts as bulk work and shows a counter on a terminal.
_BULK: Final = 10
_PULL_BATCH: Final = 100
_PULL_TIMEOUT: Final = 2.0
_FOLLOW_PAUSE: Final = 0.2
_ACK_CHUNK: Final = 500
_PUBLISH_TIMEOUT: Final = 60.0
_DESCRIPTION_WIDTH: Final = 40
_PROG: Final = "python main.py"


class CliError(click.ClickException):
    """A failure, reported as ``Error: <message>`` on stderr; exit code 1."""

    exit_code = FAILURE


class SetupError(CliError):
    """A configuration or credentials problem the operator must fix first; exit code 2."""

    exit_code = USAGE_ERROR


@dataclass(frozen=True)
class _Options:
    verbose: bool


# Environment ---------------------------------------------------------------------------------


def _config(projects: Sequence[str] = ()) -> Config:
    """The function's configuration from the environment, for a CLI run.

    ``projects`` (from ``--project``) go first in EE_PROJECTS: bare IDs and selections then
    resolve there, and the operator may name them without editing the environment.
    """
    env = dict(os.environ)
    env[RESULTS_TOPIC] = _UNUSED_TOPIC
    if projects:
        listed = [item.strip() for item in env.get(EE_PROJECTS, "").split(",") if item.strip()]
        env[EE_PROJECTS] = ",".join(dict.fromkeys([*projects, *listed]))
    try:
        return Config.from_env(env)
    except ConfigError as exc:
        raise SetupError(f"bad configuration: {exc}") from None


def _syntax_config(project: str | None) -> Config:
    """A configuration that admits any project: names are checked for form only."""
    return Config.from_env(
        {RESULTS_TOPIC: _UNUSED_TOPIC, EE_PROJECTS: f"{project or _PLACEHOLDER_PROJECT},*"}
    )


def _resource_path(value: str, collection: str, option: str) -> str:
    """``projects/P/<collection>/ID``, or a bare ID completed with GOOGLE_CLOUD_PROJECT."""
    parts = value.split("/")
    if len(parts) == 4 and parts[0] == "projects" and parts[2] == collection:
        if not is_project_id(parts[1]) or not parts[3]:
            raise click.BadParameter(
                f"{value!r} is not projects/PROJECT/{collection}/ID", param_hint=option
            )
        return value
    if "/" in value or not value:
        raise click.BadParameter(
            f"{value!r} is not projects/PROJECT/{collection}/ID or an ID", param_hint=option
        )
    project = os.environ.get(GOOGLE_CLOUD_PROJECT, "").strip()
    if not project:
        raise click.BadParameter(
            f"{value!r} is a bare ID but {GOOGLE_CLOUD_PROJECT} is unset; "
            f"give projects/PROJECT/{collection}/{value}",
            param_hint=option,
        )
    return f"projects/{project}/{collection}/{value}"


def _check_project(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    values = value if isinstance(value, tuple) else (value,)
    for item in values:
        if item is not None and not is_project_id(item):
            raise click.BadParameter(f"{item!r} is not a valid Cloud project ID")
    return value


@contextmanager
def _credentials(emulator_variable: str, what: str) -> Iterator[None]:
    """Turn a missing or unusable Application Default Credentials into a clear exit 2."""
    from google.auth import exceptions

    try:
        yield
    except exceptions.DefaultCredentialsError as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SetupError(
            "no Application Default Credentials found: run "
            "`gcloud auth application-default login` (or set GOOGLE_APPLICATION_CREDENTIALS "
            f"to a key file). To use a local {what} emulator instead, set "
            f"{emulator_variable}=host:port.\n  ({detail})"
        ) from None
    except exceptions.GoogleAuthError as exc:
        raise SetupError(
            f"could not authenticate with Application Default Credentials ({exc}); "
            "run `gcloud auth application-default login` again"
        ) from None


def _logger(ctx: click.Context) -> Log:
    """The engine's structured log: on stderr with --verbose, else nowhere."""
    options = ctx.find_object(_Options)
    if options is not None and options.verbose:
        return Log(sys.stderr)
    return _Silent()


class _Silent(Log):
    """A log that drops every entry: the CLI prints outcomes itself."""

    def __call__(self, severity: str, message: str, **fields: Any) -> None:
        """Drop the entry."""


def _stderr_is_tty() -> bool:
    return sys.stderr.isatty()


# Printing outcomes ---------------------------------------------------------------------------


class _Progress:
    """A one-line counter on stderr, erased while an outcome line is printed."""

    def __init__(self, total: int | None, enabled: bool) -> None:
        self._total = total
        self._enabled = enabled
        self._count = 0
        self._shown = False
        self._stream: TextIO = sys.stderr

    def hide(self) -> None:
        """Erase the counter line, if it is on screen."""
        if self._shown:
            self._stream.write("\r\x1b[K")
            self._stream.flush()
            self._shown = False

    def step(self) -> None:
        """Count one more outcome and redraw."""
        self._count += 1
        if not self._enabled:
            return
        of = f"/{self._total} operation(s)" if self._total else " outcome(s)"
        self._stream.write(f"\r{self._count}{of} ...")
        self._stream.flush()
        self._shown = True


def outcome_line(outcome: Outcome) -> str:
    """One readable line: status, operation, message and state."""
    line = f"{outcome.status:<19} {outcome.operation or '(request)'}  {outcome.message}"
    return line + (f"  state={outcome.state}" if outcome.state else "")


class EchoPublisher:
    """A Publisher that prints each outcome as the engine sends it (nothing to confirm)."""

    def __init__(self, *, as_json: bool, progress: _Progress) -> None:
        self._as_json = as_json
        self._progress = progress
        self._lock = threading.Lock()

    def batch(self) -> Batch:
        """A new batch; printing is immediate, so every batch shares this printer."""
        return _EchoBatch(self)

    def show(self, outcome: Outcome) -> None:
        """Print one outcome on stdout."""
        text = outcome.data().decode() if self._as_json else outcome_line(outcome)
        with self._lock:
            self._progress.hide()
            click.echo(text)
            self._progress.step()


class _EchoBatch:
    def __init__(self, printer: EchoPublisher) -> None:
        self._printer = printer
        self._sent = 0

    def send(self, outcome: Outcome) -> None:
        self._printer.show(outcome)
        self._sent += 1

    def confirm(self) -> int:
        return self._sent


# Commands ------------------------------------------------------------------------------------


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="""\b
Environment: the function's variables (see the README), of which the CLI reads
  GOOGLE_CLOUD_PROJECT, EE_PROJECTS, EE_API_URL, EE_API_VERSION, EE_EMULATOR_HOST,
  CANCEL_CONCURRENCY, EE_MAX_QPS, RETRY_DEADLINE_SECONDS, VERIFY_SECONDS, DRY_RUN,
  MAX_OPERATIONS_PER_MESSAGE, and PUBSUB_EMULATOR_HOST for publish/results.
Credentials: Application Default Credentials
  (gcloud auth application-default login).
Exit codes: 0 all OK, 1 an outcome not OK or a Pub/Sub failure,
  2 usage, configuration or credential error.

\b
Run 'python main.py COMMAND --help' for examples.""",
)
@click.option("-v", "--verbose", is_flag=True, help="Log the engine's decisions to stderr (JSON).")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """Operate ee-cancel: list, cancel and watch Earth Engine operations."""
    ctx.obj = _Options(verbose=verbose)


@cli.command(
    "list",
    epilog="""\b
Examples:
  python main.py list
  python main.py list --project my-ee-project --state RUNNING
  python main.py list --state SUCCEEDED --state FAILED --json | jq .name""",
)
@click.option(
    "--project",
    "projects",
    multiple=True,
    callback=_check_project,
    metavar="PROJECT",
    help="Project to list (repeatable). Default: EE_PROJECTS, else GOOGLE_CLOUD_PROJECT.",
)
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice(sorted(STATES), case_sensitive=False),
    help="State to show (repeatable). Default: PENDING and RUNNING.",
)
@click.option("--json", "as_json", is_flag=True, help="One operation JSON object per line.")
def list_operations(projects: tuple[str, ...], states: tuple[str, ...], as_json: bool) -> None:
    """List active operations as a table.

    Columns: name, state, type, description, age (from createTime) and EECU-seconds.
    Every page of every project is read; the count goes to stderr.
    """
    config = _config(projects)
    wanted = frozenset(states) or ACTIVE
    with _credentials(EE_EMULATOR_HOST, "Earth Engine"):
        session = open_session(config)
    failures: list[str] = []
    found: list[dict[str, Any]] = []
    with session, _credentials(EE_EMULATOR_HOST, "Earth Engine"):
        ee = RestEarthEngine(config, session, Gate(config.max_qps, config.cancel_concurrency))
        retrier = Retrier(deadline=config.retry_deadline)
        for project in projects or config.ee_projects:
            token: str | None = None
            while True:
                result = retrier.call(partial(ee.list, project, token))
                if not result.ok:
                    failures.append(f"listing {project} failed: {result.status}: {result.message}")
                    break
                page = result.body.get("operations", [])
                found.extend(
                    op
                    for op in (page if isinstance(page, list) else [])
                    if isinstance(op, dict) and operation_state(op) in wanted
                )
                next_token = result.body.get("nextPageToken")
                if not isinstance(next_token, str) or not next_token:
                    break
                token = next_token
    if as_json:
        for op in found:
            click.echo(json.dumps(op, separators=(",", ":"), ensure_ascii=False))
    elif found:
        click.echo(operations_table(found, datetime.now(UTC)))
    shown = "/".join(sorted(wanted))
    click.echo(f"{len(found)} {shown} operation(s)", err=True)
    if failures:
        raise CliError("; ".join(failures))


def operations_table(operations: Sequence[Mapping[str, Any]], now: datetime) -> str:
    """Operations as an aligned text table."""
    header = ("NAME", "STATE", "TYPE", "DESCRIPTION", "AGE", "EECU-S")
    rows = [header, *(_row(op, now) for op in operations)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


def _row(op: Mapping[str, Any], now: datetime) -> tuple[str, ...]:
    metadata = op.get("metadata")
    meta: Mapping[str, Any] = metadata if isinstance(metadata, Mapping) else {}
    description = str(meta.get("description", ""))
    if len(description) > _DESCRIPTION_WIDTH:
        description = description[: _DESCRIPTION_WIDTH - 3] + "..."
    created = parse_time(meta.get("createTime"))
    eecu = meta.get("batchEecuUsageSeconds")
    return (
        str(op.get("name", "?")),
        operation_state(dict(op)) or "?",
        str(meta.get("type", "-")),
        description.replace("\n", " ") or "-",
        human_age((now - created).total_seconds()) if created else "-",
        f"{eecu:.1f}" if isinstance(eecu, int | float) and not isinstance(eecu, bool) else "-",
    )


def human_age(seconds: float) -> str:
    """An age like ``45s``, ``12m05s``, ``3h12m`` or ``2d04h``."""
    whole = max(0, int(seconds))
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


@cli.command(
    epilog="""\b
Examples:
  python main.py cancel 7HOBVHMMGK3FLMVBPI3RYDAR
  python main.py cancel projects/my-ee-project/operations/ABC projects/my-ee-project/operations/DEF
  python main.py cancel --select '{"types": ["EXPORT_IMAGE"], "olderThanSeconds": 7200}'
  python main.py cancel --select '{}' --project my-ee-project --dry-run
  VERIFY_SECONDS=10 python main.py cancel ABC      # wait for the cancellation to take effect

\b
The request is handled by the function's own engine (same validation, quota,
retries and outcomes); outcomes are printed, not published. Exit code 1 if any
outcome is not OK (e.g. NOT_FOUND), or if Earth Engine kept failing transiently
past RETRY_DEADLINE_SECONDS.""",
)
@click.argument("names", nargs=-1, metavar="[NAME|ID]...")
@click.option(
    "--select",
    "select",
    metavar="JSON",
    help='Cancel the active operations matching a selection, e.g. \'{"types": ["EXPORT_IMAGE"]}\'.',
)
@click.option(
    "--project",
    callback=_check_project,
    metavar="PROJECT",
    help="Project for bare IDs and for the selection (goes first in EE_PROJECTS).",
)
@click.option("--dry-run", is_flag=True, help="Report what would be cancelled; cancel nothing.")
@click.option("--json", "as_json", is_flag=True, help="One outcome JSON object per line.")
@click.pass_context
def cancel(
    ctx: click.Context,
    names: tuple[str, ...],
    select: str | None,
    project: str | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Cancel operations now, with Application Default Credentials.

    Give operation names (projects/P/operations/ID) or bare task IDs, or a --select.
    """
    if bool(names) == (select is not None):
        raise click.UsageError("give operation names or --select, not both and not neither")
    config = _config((project,) if project else ())
    request: dict[str, Any]
    if select is not None:
        selection = _selection_json(select, project)
        try:
            parse_selection(selection, config)
        except Rejected as exc:
            raise click.BadParameter(exc.message, param_hint="--select") from None
        request = {"select": selection}
    else:
        request = {"names": [_resolve(name, config) for name in names]}
    if dry_run:
        request["dryRun"] = True

    progress = _Progress(
        total=None if select is not None else len(request["names"]),
        enabled=_stderr_is_tty() and (select is not None or len(names) >= _BULK),
    )
    printer = EchoPublisher(as_json=as_json, progress=progress)
    message = Message(
        data=base64.b64encode(json.dumps(request).encode()).decode(),
        attributes={},
        message_id=f"cli-{uuid.uuid4()}",
        publish_time=now_rfc3339(),
    )
    with _credentials(EE_EMULATOR_HOST, "Earth Engine"):
        session = open_session(config)
    executor = ThreadPoolExecutor(
        max_workers=config.cancel_concurrency, thread_name_prefix="ee-cancel-cli"
    )
    engine = Engine(
        config=config,
        ee=RestEarthEngine(config, session, Gate(config.max_qps, config.cancel_concurrency)),
        publisher=printer,
        retrier=Retrier(deadline=config.retry_deadline),
        executor=executor,
        logger=_logger(ctx),
    )
    try:
        with _credentials(EE_EMULATOR_HOST, "Earth Engine"):
            report = engine.handle(message)
    except Redeliver as exc:
        raise CliError(
            f"{exc}; gave up after RETRY_DEADLINE_SECONDS ({config.retry_deadline:g}s): "
            "run the command again later"
        ) from None
    finally:
        progress.hide()
        # On Ctrl-C, drop the queued cancels instead of sending them after the interrupt.
        executor.shutdown(wait=True, cancel_futures=True)
        session.close()
    click.echo(_summary(report.outcomes, dry_run=dry_run or config.dry_run), err=True)
    if report.errors:
        ctx.exit(FAILURE)


def _selection_json(text: str, project: str | None) -> dict[str, Any]:
    try:
        selection = json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint="--select") from None
    if not isinstance(selection, dict):
        raise click.BadParameter(
            'must be a JSON object, e.g. \'{"types": ["EXPORT_IMAGE"]}\'', param_hint="--select"
        )
    if project is not None:
        given = selection.get("project")
        if given is not None and given != project:
            raise click.UsageError(f"--project {project} contradicts the selection's {given!r}")
        selection["project"] = project
    return selection


def _resolve(name: str, config: Config) -> str:
    try:
        return resolve(name, config)
    except Rejected as exc:
        hint = ""
        if exc.status == "PERMISSION_DENIED":
            hint = " (add it to EE_PROJECTS or pass --project)"
        raise click.BadParameter(exc.message + hint, param_hint="NAME") from None


def _summary(outcomes: Sequence[Outcome], *, dry_run: bool) -> str:
    if not outcomes:
        return "no operation matched: nothing to do"
    counts = Counter(outcome.status for outcome in outcomes)
    parts = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    return f"{len(outcomes)} outcome(s): {parts}" + (" (dry run)" if dry_run else "")


@cli.command(
    epilog="""\b
Examples:
  python main.py publish --topic ee-cancel-requests 7HOBVHMMGK3FLMVBPI3RYDAR
  python main.py publish --topic projects/ops/topics/ee-cancel-requests \\
      --select '{"descriptionRegex": "^nightly-"}' --project my-ee-project
  python main.py publish --topic ee-cancel-requests --budget-test 1.2 --dry-run

\b
--budget-test FRACTION publishes a synthetic Cloud Billing budget notification
(cost FRACTION x 100 USD of a 100 USD budget). At or above BUDGET_THRESHOLD the
function cancels every active operation in its EE_PROJECTS, so add --dry-run to
rehearse. Bare IDs are sent as given (the function resolves them in its first
EE_PROJECTS) unless --project is given.""",
)
@click.argument("names", nargs=-1, metavar="[NAME|ID]...")
@click.option(
    "--topic",
    required=True,
    metavar="TOPIC",
    help="Trigger topic: projects/P/topics/T, or T in GOOGLE_CLOUD_PROJECT.",
)
@click.option("--select", "select", metavar="JSON", help="Publish a selection request.")
@click.option(
    "--budget-test",
    type=click.FloatRange(min=0),
    metavar="FRACTION",
    help="Publish a synthetic budget notification at this fraction of the budget.",
)
@click.option(
    "--project",
    callback=_check_project,
    metavar="PROJECT",
    help="Project for bare IDs and for the selection.",
)
@click.option("--dry-run", is_flag=True, help='Add "dryRun": true to the request.')
def publish(
    names: tuple[str, ...],
    topic: str,
    select: str | None,
    budget_test: float | None,
    project: str | None,
    dry_run: bool,
) -> None:
    """Publish a request to the trigger topic; print its message ID."""
    given = sum((bool(names), select is not None, budget_test is not None))
    if given != 1:
        raise click.UsageError("give exactly one of: operation names, --select, --budget-test")
    if budget_test is not None and project is not None:
        raise click.UsageError(
            "--project does not apply to --budget-test (budgets act on EE_PROJECTS)"
        )
    path = _resource_path(topic, "topics", "--topic")
    attributes: dict[str, str] = {}
    if budget_test is not None:
        body, attributes = budget_notification(budget_test, datetime.now(UTC))
    elif select is not None:
        body = {"select": _selection_json(select, project)}
        _check_form(lambda: parse_selection(body["select"], _syntax_config(project)), "--select")
    else:
        config = _syntax_config(project)
        body = {"names": [_published_name(name, config, project) for name in names]}
    if dry_run:
        body["dryRun"] = True

    from google.api_core import exceptions
    from google.cloud import pubsub_v1

    with _credentials(PUBSUB_EMULATOR_HOST, "Pub/Sub"):
        client = pubsub_v1.PublisherClient()
    try:
        with _credentials(PUBSUB_EMULATOR_HOST, "Pub/Sub"):
            future = client.publish(path, json.dumps(body).encode(), **attributes)
            message_id = future.result(timeout=_PUBLISH_TIMEOUT)
    except exceptions.NotFound:
        raise CliError(f"topic {path} not found: create it or check --topic") from None
    except (exceptions.GoogleAPICallError, TimeoutError) as exc:
        raise CliError(f"could not publish to {path}: {exc}") from None
    finally:
        client.stop()
    click.echo(message_id)
    click.echo(f"published to {path}", err=True)


def _check_form(check: Callable[[], object], hint: str) -> None:
    try:
        check()
    except Rejected as exc:
        # PERMISSION_DENIED depends on the function's EE_PROJECTS, which it will judge itself.
        if exc.status == "INVALID_ARGUMENT":
            raise click.BadParameter(exc.message, param_hint=hint) from None


def _published_name(name: str, config: Config, project: str | None) -> str:
    try:
        full = resolve(name, config)
    except Rejected as exc:
        raise click.BadParameter(exc.message, param_hint="NAME") from None
    return full if project else name


def budget_notification(fraction: float, now: datetime) -> tuple[dict[str, Any], dict[str, str]]:
    """A Cloud Billing budget notification (schema 1.0) at ``fraction`` of a 100 USD budget."""
    body: dict[str, Any] = {
        "budgetDisplayName": "ee-cancel test",
        "costAmount": round(fraction * 100.0, 2),
        "costIntervalStart": now.strftime("%Y-%m-01T00:00:00Z"),
        "budgetAmount": 100.0,
        "budgetAmountType": "SPECIFIED_AMOUNT",
        "currencyCode": "USD",
    }
    if fraction >= 1.0:
        body["alertThresholdExceeded"] = 1.0
    attributes = {
        "billingAccountId": "000000-000000-000000",
        "budgetId": "ee-cancel-test",
        "schemaVersion": "1.0",
    }
    return body, attributes


@cli.command(
    epilog="""\b
Examples:
  python main.py results --subscription ee-cancel-results-ops
  python main.py results --subscription ee-cancel-results-ops --follow --status NOT_FOUND
  python main.py results --subscription projects/ops/subscriptions/audit --max 10 --json

\b
Prints and acknowledges outcomes; messages filtered out by --status (or beyond
--max) are not acknowledged and are released back to the subscription on exit.
Without --follow, stops once a pull finds nothing new (about 2 s).""",
)
@click.option(
    "--subscription",
    required=True,
    metavar="SUBSCRIPTION",
    help="Pull subscription on the results topic: projects/P/subscriptions/S, or S.",
)
@click.option("--follow", is_flag=True, help="Keep pulling until Ctrl-C.")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(sorted(CODES), case_sensitive=False),
    help="Only these statuses (repeatable).",
)
@click.option("--max", "limit", type=click.IntRange(min=1), help="Stop after this many outcomes.")
@click.option("--json", "as_json", is_flag=True, help="One message JSON object per line.")
def results(
    subscription: str,
    follow: bool,
    statuses: tuple[str, ...],
    limit: int | None,
    as_json: bool,
) -> None:
    """Print outcomes from a subscription on the results topic."""
    path = _resource_path(subscription, "subscriptions", "--subscription")
    from google.api_core import exceptions
    from google.cloud import pubsub_v1

    with _credentials(PUBSUB_EMULATOR_HOST, "Pub/Sub"):
        subscriber = pubsub_v1.SubscriberClient()
    reader = _Reader(subscriber, path, frozenset(statuses), limit, as_json)
    try:
        with _credentials(PUBSUB_EMULATOR_HOST, "Pub/Sub"):
            reader.run(follow=follow)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how --follow ends
    except exceptions.NotFound:
        raise CliError(f"subscription {path} not found") from None
    except exceptions.GoogleAPICallError as exc:
        raise CliError(f"could not pull from {path}: {exc}") from None
    finally:
        reader.release()
        subscriber.close()
    click.echo(f"{reader.printed} message(s)", err=True)


class _Reader:
    """Pulls, prints and acks; holds back what it does not print until it stops."""

    def __init__(
        self,
        subscriber: Any,
        path: str,
        statuses: frozenset[str],
        limit: int | None,
        as_json: bool,
    ) -> None:
        self._subscriber = subscriber
        self._path = path
        self._statuses = statuses
        self._limit = limit
        self._as_json = as_json
        # Skipped messages stay leased (not redelivered to this loop) until released.
        self._held: list[str] = []
        self.printed = 0

    def run(self, *, follow: bool) -> None:
        """Pull until a pull finds nothing (or, with ``follow``, until interrupted)."""
        while self._limit is None or self.printed < self._limit:
            received = self._pull()
            if not received:
                if not follow:
                    return
                time.sleep(_FOLLOW_PAUSE)
                continue
            done: list[str] = []
            for item in received:
                full = self._limit is not None and self.printed >= self._limit
                if full or not self._wanted(item.message):
                    self._held.append(item.ack_id)
                    continue
                click.echo(received_line(item.message, as_json=self._as_json))
                done.append(item.ack_id)
                self.printed += 1
            for chunk in _chunks(done):
                self._subscriber.acknowledge(request={"subscription": self._path, "ack_ids": chunk})

    def release(self) -> None:
        """Hand the messages this run did not print back to the subscription now."""
        from google.api_core import exceptions

        held, self._held = self._held, []
        for chunk in _chunks(held):
            # If this fails, the lease simply expires instead.
            with suppress(exceptions.GoogleAPICallError):
                self._subscriber.modify_ack_deadline(
                    request={
                        "subscription": self._path,
                        "ack_ids": chunk,
                        "ack_deadline_seconds": 0,
                    }
                )

    def _pull(self) -> list[Any]:
        from google.api_core import exceptions

        left = None if self._limit is None else self._limit - self.printed
        wanted = _PULL_BATCH if left is None else min(_PULL_BATCH, left)
        try:
            response = self._subscriber.pull(
                request={"subscription": self._path, "max_messages": wanted},
                timeout=_PULL_TIMEOUT,
            )
        except exceptions.DeadlineExceeded:
            return []
        return list(response.received_messages)

    def _wanted(self, message: Any) -> bool:
        if not self._statuses:
            return True
        status = dict(message.attributes).get("status")
        if status is None:
            body = _json_object(bytes(message.data))
            status = body.get("status") if body else None
        return status in self._statuses


def _chunks(items: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(items), _ACK_CHUNK):
        yield items[start : start + _ACK_CHUNK]


def _json_object(data: bytes) -> dict[str, Any] | None:
    try:
        body = json.loads(data)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def received_line(message: Any, *, as_json: bool) -> str:
    """A pulled message as a readable line (or one JSON object)."""
    data = bytes(message.data)
    attributes = dict(message.attributes)
    published = _timestamp(message.publish_time)
    body = _json_object(data)
    if as_json:
        return json.dumps(
            {
                "messageId": message.message_id,
                "publishTime": published,
                "attributes": attributes,
                "data": body if body is not None else data.decode("utf-8", "replace"),
            },
            separators=(",", ":"),
            ensure_ascii=False,
        )
    if body is None or "status" not in body:
        text = excerpt(data.decode("utf-8", "replace"))
        return f"{published}  (not an outcome: {message.message_id})  {text}  {attributes}"
    trigger = body.get("trigger")
    trigger = trigger if isinstance(trigger, dict) else {}
    kind = trigger.get("kind") or attributes.get("trigger", "?")
    source = trigger.get("messageId") or attributes.get("sourceMessageId", "?")
    line = (
        f"{body.get('completedAt') or published}  {body.get('status', '?'):<19} "
        f"{body.get('operation') or '(request)'}  {body.get('message', '')}"
    )
    if body.get("state"):
        line += f"  state={body['state']}"
    if body.get("dryRun") and not str(body.get("message", "")).startswith("dry run"):
        line += "  (dry run)"
    return f"{line}  [{kind} {source}]"


def _timestamp(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return str(value)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code instead of exiting."""
    try:
        cli.main(args=argv, prog_name=_PROG, standalone_mode=True)
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        click.echo(str(exc.code), err=True)
        return FAILURE
    return 0
