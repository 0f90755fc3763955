"""Static checks of the Terraform module in deploy/terraform, read with python-hcl2.

No provider is downloaded: these tests read the HCL and assert what the module deploys,
which identities it creates and exactly which roles it grants (SPEC section 6).
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hcl2
import pytest
from hcl2.utils import SerializationOptions

from lib import config
from tests.deploy import ALLOWED_ROLES

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "deploy" / "terraform"
EXAMPLE = MODULE / "examples" / "basic" / "main.tf"

REQUIRED_ROLES = ALLOWED_ROLES - {"roles/pubsub.subscriber", "roles/iam.serviceAccountTokenCreator"}

# Every setting the function reads, less the local emulator switch. 2nd gen runtimes do not
# set GOOGLE_CLOUD_PROJECT, so the deployment must.
FUNCTION_SETTINGS = set(config.SETTINGS) - {config.EE_EMULATOR_HOST}


def unquote(value: Any) -> Any:
    """hcl2 keeps the quotes of string literals and block labels; drop them."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def literal(value: Any) -> str | None:
    """The text of a plain string literal, or None for an expression or interpolation."""
    if isinstance(value, str) and value.startswith('"') and "${" not in value:
        return str(unquote(value))
    return None


def load(path: Path) -> dict[str, Any]:
    with path.open() as f:
        return dict(hcl2.load(f, serialization_options=SerializationOptions(with_comments=False)))


@functools.cache
def module_files() -> tuple[dict[str, Any], ...]:
    return tuple(load(path) for path in sorted(MODULE.glob("*.tf")))


def blocks(kind: str, files: tuple[dict[str, Any], ...] | None = None) -> Iterator[dict[str, Any]]:
    for parsed in files if files is not None else module_files():
        yield from parsed.get(kind, [])


def resources(kind: str = "resource") -> dict[tuple[str, str], dict[str, Any]]:
    found = {}
    for block in blocks(kind):
        for rtype, named in block.items():
            for name, body in named.items():
                found[(unquote(rtype), unquote(name))] = body
    return found


def locals_() -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for block in blocks("locals"):
        merged.update(block)
    return merged


def named(kind: str) -> dict[str, dict[str, Any]]:
    return {unquote(k): v for block in blocks(kind) for k, v in block.items()}


def only(body: dict[str, Any], block: str) -> dict[str, Any]:
    (inner,) = body[block]
    return dict(inner)


def function() -> dict[str, Any]:
    return resources()[("google_cloudfunctions2_function", "this")]


def iam_resources() -> dict[tuple[str, str], dict[str, Any]]:
    return {key: body for key, body in resources().items() if re.search(r"_iam_", key[0])}


def module_text() -> str:
    return "\n".join(path.read_text() for path in sorted(MODULE.glob("*.tf")))


# --- The function --------------------------------------------------------------------


def test_function_builds_the_python312_entry_point() -> None:
    build = only(function(), "build_config")

    assert literal(build["runtime"]) == "python312"
    assert literal(build["entry_point"]) == "cancel_operations"
    storage = only(only(build, "source"), "storage_source")
    assert "google_storage_bucket_object.source" in storage["object"]


def test_function_is_triggered_by_request_topic_with_retries() -> None:
    trigger = only(function(), "event_trigger")

    assert literal(trigger["event_type"]) == "google.cloud.pubsub.topic.v1.messagePublished"
    assert literal(trigger["retry_policy"]) == "RETRY_POLICY_RETRY"
    assert trigger["pubsub_topic"] == "${google_pubsub_topic.request.id}"
    assert trigger["service_account_email"] == "${google_service_account.trigger.email}"


def test_function_service_runs_as_dedicated_account_internal_only() -> None:
    service = only(function(), "service_config")

    assert isinstance(service["timeout_seconds"], int)
    assert service["timeout_seconds"] >= 540
    assert service["service_account_email"] == "${google_service_account.function.email}"
    assert literal(service["ingress_settings"]) == "ALLOW_INTERNAL_ONLY"
    assert literal(service["available_memory"]) == "256M"
    assert service["min_instance_count"] == 0
    assert service["max_instance_count"] == "${var.max_instance_count}"


def test_function_environment_is_the_spec_configuration() -> None:
    env = only(function(), "service_config")["environment_variables"]

    assert set(env) == FUNCTION_SETTINGS
    assert env["RESULTS_TOPIC"] == "${google_pubsub_topic.results.id}"
    assert "local.ee_projects" in env["EE_PROJECTS"]


# --- Identities and grants -------------------------------------------------------------------


def test_every_role_granted_is_allowed_and_literal() -> None:
    roles = {key: body["role"] for key, body in iam_resources().items()}

    assert roles, "the module grants no role at all"
    for key, role in roles.items():
        assert literal(role) is not None, f"{key}: role must be a literal to be auditable"
    granted = {literal(role) for role in roles.values()}
    assert granted <= ALLOWED_ROLES
    assert granted >= REQUIRED_ROLES
    for role in granted:
        assert role not in {"roles/editor", "roles/owner"}
        assert "admin" not in str(role).lower()


def test_grants_are_additive_members_only() -> None:
    # _iam_binding and _iam_policy are authoritative and would remove other principals' access.
    kinds = {rtype for rtype, _ in iam_resources()}

    assert kinds
    assert all(kind.endswith("_iam_member") for kind in kinds), kinds


def test_pubsub_publisher_is_granted_on_topics_only_and_function_publishes_to_results() -> None:
    publishers = {
        key: body
        for key, body in iam_resources().items()
        if literal(body["role"]) == "roles/pubsub.publisher"
    }

    assert publishers
    assert {rtype for rtype, _ in publishers} == {"google_pubsub_topic_iam_member"}
    function_grants = [
        body
        for body in publishers.values()
        if body["member"] == "${google_service_account.function.member}"
    ]
    assert [body["topic"] for body in function_grants] == ["${google_pubsub_topic.results.name}"]


def test_function_account_gets_earth_engine_roles_on_each_ee_project() -> None:
    project_grants = [
        body
        for (rtype, _), body in iam_resources().items()
        if rtype == "google_project_iam_member"
        and body["member"] == "${google_service_account.function.member}"
    ]

    assert {literal(body["role"]) for body in project_grants} == {
        "roles/earthengine.writer",
        "roles/serviceusage.serviceUsageConsumer",
    }
    for body in project_grants:
        assert body["for_each"] == "${toset(local.ee_projects)}"
        assert body["project"] == "${each.value}"


def test_trigger_account_may_only_receive_events_and_invoke_the_function() -> None:
    trigger_grants = {
        key: body
        for key, body in iam_resources().items()
        if body["member"] == "${google_service_account.trigger.member}"
    }

    assert {literal(body["role"]) for body in trigger_grants.values()} == {
        "roles/run.invoker",
        "roles/eventarc.eventReceiver",
    }
    invoker = trigger_grants[("google_cloud_run_service_iam_member", "trigger_invoker")]
    assert invoker["service"] == "${google_cloudfunctions2_function.this.name}"
    receiver = trigger_grants[("google_project_iam_member", "trigger_event_receiver")]
    assert receiver["project"] == "${var.project_id}"


def test_service_agent_grants_are_optional() -> None:
    agent_grants = {
        key: body
        for key, body in iam_resources().items()
        if body["member"] == "${local.pubsub_service_agent}"
    }

    assert {literal(body["role"]) for body in agent_grants.values()} == {
        "roles/pubsub.publisher",
        "roles/iam.serviceAccountTokenCreator",
    }
    for body in agent_grants.values():
        assert str(body["count"]).startswith("${var.")
    dead_letter = agent_grants[("google_pubsub_topic_iam_member", "dead_letter_publisher")]
    assert dead_letter["topic"] == "${google_pubsub_topic.dead_letter[0].name}"


# --- Source ----------------------------------------------------------------------------------


def test_source_zip_excludes_tests_bench_deploy_and_local_state() -> None:
    archive = resources("data")[("archive_file", "source")]
    local = locals_()

    assert archive["source_dir"] == "${local.source_root}"
    assert archive["excludes"] == "${local.source_excludes}"
    assert "local.source_exclude_dirs" in local["source_excludes"]
    assert "setsubtract(" in local["source_excludes"]
    assert [literal(f) for f in local["source_keep_files"]] == ["main.py", "requirements.txt"]
    excluded = {literal(d) for d in local["source_exclude_dirs"]}
    assert {"tests", "bench", "deploy", "docs", ".venv", ".git", "**/__pycache__"} <= excluded
    assert "lib" not in excluded


def test_every_repository_directory_but_lib_is_excluded_from_the_source() -> None:
    # A new top-level directory would otherwise ship with the function.
    excluded = {literal(d) for d in locals_()["source_exclude_dirs"]}
    directories = {p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith(".")} - {
        "lib"
    }

    assert "tests" in directories
    assert directories <= excluded, (
        f"add {sorted(directories - excluded)} to source_exclude_dirs in deploy/terraform/main.tf"
    )


# --- Optional parts ----------------------------------------------------------------------------


def test_budget_publishes_every_update_to_the_request_topic() -> None:
    budget = resources()[("google_billing_budget", "this")]
    rule = only(budget, "all_updates_rule")

    assert budget["count"] == "${var.budget == null ? 0 : 1}"
    assert rule["pubsub_topic"] == "${google_pubsub_topic.request.id}"
    assert literal(rule["schema_version"]) == "1.0"


def test_watchdog_publishes_a_selection_of_old_operations() -> None:
    job = resources()[("google_cloud_scheduler_job", "watchdog")]
    target = only(job, "pubsub_target")

    assert job["schedule"] == "${var.watchdog_schedule}"
    assert target["topic_name"] == "${google_pubsub_topic.request.id}"
    data = target["data"].replace(" ", "")
    assert (
        "base64encode(jsonencode({select={olderThanSeconds=var.watchdog_max_age_seconds}}))" in data
    )


def test_dead_letter_topic_is_kept_and_attach_commands_are_given() -> None:
    found = resources()
    commands = named("output")["dead_letter_attach_commands"]["value"]

    assert ("google_pubsub_topic", "dead_letter") in found
    assert found[("google_pubsub_subscription", "dead_letter")]["topic"] == (
        "${google_pubsub_topic.dead_letter[0].id}"
    )
    assert "gcloud pubsub subscriptions update" in commands
    assert "--dead-letter-topic=" in commands
    assert "--max-delivery-attempts=" in commands
    assert "roles/pubsub.subscriber" in commands


def test_default_dead_letter_attempts_outlast_max_event_age() -> None:
    # Eventarc backs off 10 s, 20 s, ... up to 600 s between deliveries. Dead-lettering earlier
    # than MAX_EVENT_AGE_SECONDS would drop requests that never got a final outcome.
    variables = named("variable")
    attempts = variables["dead_letter_max_delivery_attempts"]["default"]
    max_age = variables["max_event_age_seconds"]["default"]

    backoff = sum(min(10 * 2**i, 600) for i in range(attempts - 1))
    assert backoff > max_age
    assert "dead_letter_after_final_outcome" in {unquote(k) for b in blocks("check") for k in b}


# --- Interface and consistency -----------------------------------------------------------------


def test_outputs_expose_what_operators_need() -> None:
    outputs = named("output")

    assert {
        "request_topic_id",
        "results_topic_id",
        "function_name",
        "function_uri",
        "service_account_email",
        "dead_letter_topic_id",
    } <= set(outputs)
    assert outputs["results_topic_id"]["value"] == "${google_pubsub_topic.results.id}"


def test_provider_constraints_are_pinned() -> None:
    (terraform,) = list(blocks("terraform"))
    (providers,) = terraform["required_providers"]

    assert literal(providers["google"]["source"]) == "hashicorp/google"
    assert literal(providers["google"]["version"])
    assert literal(providers["archive"]["version"]).startswith(">= 2.5")  # type: ignore[union-attr]


def test_every_variable_and_local_referenced_is_declared_and_used() -> None:
    text = module_text()
    declared_vars = set(named("variable"))
    declared_locals = {k for k in locals_() if not k.startswith("__")}

    used_vars = set(re.findall(r"\bvar\.([a-z_][a-z0-9_]*)", text))
    used_locals = set(re.findall(r"\blocal\.([a-z_][a-z0-9_]*)", text))
    assert used_vars <= declared_vars, used_vars - declared_vars
    assert declared_vars <= used_vars, declared_vars - used_vars
    assert used_locals <= declared_locals, used_locals - declared_locals


def test_every_resource_referenced_is_declared() -> None:
    text = module_text()
    declared = set(resources())
    declared_data = set(resources("data"))

    refs = re.findall(
        r"(?<![\w.\"])(data\.)?(google_[a-z0-9_]+|archive_file)\.([a-z_][a-z0-9_]*)", text
    )
    assert refs
    for is_data, rtype, name in refs:
        assert (rtype, name) in (declared_data if is_data else declared), f"{rtype}.{name}"


def test_example_calls_the_module_with_declared_variables_only() -> None:
    example = load(EXAMPLE)
    (module_block,) = example["module"]
    (call,) = module_block.values()
    arguments = {k for k in call if not k.startswith("__")} - {"source"}

    assert literal(call["source"]) == "../.."
    assert "project_id" in arguments
    assert arguments <= set(named("variable")), arguments - set(named("variable"))


def test_terraform_fmt_is_clean() -> None:
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("terraform binary not installed")

    result = subprocess.run(
        [terraform, "fmt", "-check", "-recursive", "-diff", str(MODULE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
