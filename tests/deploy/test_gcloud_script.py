"""deploy/gcloud.sh, run against a fake `gcloud` that records its calls.

A dry run must print the whole deployment and call nothing; a real run (against the fake)
must stage only the function's own files and create only what is missing.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deploy import ALLOWED_ROLES

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "gcloud.sh"

PROJECT = "fn-project"
EE_PROJECTS = ("ee-one-project", "ee-two-project")
FUNCTION_SA = f"ee-cancel@{PROJECT}.iam.gserviceaccount.com"
TRIGGER_SA = f"ee-cancel-trigger@{PROJECT}.iam.gserviceaccount.com"
PROJECT_NUMBER = "123456789012"
EVENTARC_SUBSCRIPTION = f"projects/{PROJECT}/subscriptions/eventarc-us-central1-ee-cancel-1-sub-2"
PUBSUB_AGENT = f"serviceAccount:service-{PROJECT_NUMBER}@gcp-sa-pubsub.iam.gserviceaccount.com"

FAKE_GCLOUD = f"""#!/usr/bin/env bash
{{ printf '%q ' gcloud "$@"; echo; }} >> "$FAKE_GCLOUD_LOG"
case " $* " in
  *" functions deploy "*)
    for a in "$@"; do
      if [[ $a == --source=* ]]; then
        (cd "${{a#--source=}}" && find . -type f | sort) > "$FAKE_GCLOUD_STAGED"
      fi
    done ;;
  *" projects describe "*) echo {PROJECT_NUMBER} ;;
  *" functions describe "*) echo projects/{PROJECT}/locations/us-central1/triggers/ee-cancel-1 ;;
  *" eventarc triggers describe "*) echo {EVENTARC_SUBSCRIPTION} ;;
  *" billing budgets list "*)
    [[ -n "${{FAKE_GCLOUD_MISSING:-}}" ]] || echo billingAccounts/X/budgets/Y ;;
  *" describe "*) [[ -z "${{FAKE_GCLOUD_MISSING:-}}" ]] ;;
esac
"""

ALL_OPTIONS = (
    f"--ee-projects={','.join(EE_PROJECTS)}",
    "--env=VERIFY_SECONDS=30",
    "--dead-letter-topic=ee-cancel-dead-letter",
    "--budget-billing-account=000000-AAAAAA-BBBBBB",
    "--watchdog-schedule=0 * * * *",
    "--grant-pubsub-token-creator",
)


@dataclass
class Deployment:
    log: Path
    staged: Path
    env: dict[str, str]
    source: Path

    def run(self, *args: str, missing: bool = False) -> subprocess.CompletedProcess[str]:
        env = dict(self.env, FAKE_GCLOUD_MISSING="1" if missing else "")
        return subprocess.run(
            ["bash", str(SCRIPT), f"--project={PROJECT}", f"--source-dir={self.source}", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
            check=False,
        )

    def calls(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [shlex.split(line) for line in self.log.read_text().splitlines()]


@pytest.fixture
def deployment(tmp_path: Path) -> Deployment:
    source = tmp_path / "repo"
    for name in (
        "lib/__init__.py",
        "lib/cancel.py",
        "lib/__pycache__/cancel.cpython-312.pyc",
        "tests/test_x.py",
        "bench/bench_x.py",
        "deploy/gcloud.sh",
    ):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_text("")
    for name in ("main.py", "requirements.txt", "README.md", "Makefile"):
        (source / name).write_text("")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    gcloud = bin_dir / "gcloud"
    gcloud.write_text(FAKE_GCLOUD)
    gcloud.chmod(0o755)
    log, staged = tmp_path / "gcloud.log", tmp_path / "staged.txt"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EE_CANCEL_", "CLOUDSDK_"))}
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        FAKE_GCLOUD_LOG=str(log),
        FAKE_GCLOUD_STAGED=str(staged),
    )
    return Deployment(log=log, staged=staged, env=env, source=source)


def commands(stdout: str) -> list[list[str]]:
    """The gcloud commands of a printed script, as argument lists.

    A line may hold several (`describe ... || create ...`, `X=$(gcloud ...)`, `if ...; then`):
    each runs from the word `gcloud` to the next shell operator.
    """
    found = []
    for line in stdout.splitlines():
        if line.startswith("#"):
            continue
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.wordchars += ":@,%+^{}$#"
        current: list[str] | None = None
        for token in [*lexer, ";"]:
            if set(token) <= set("();<>|&"):
                if current:
                    found.append(current)
                current = None
            elif current is not None:
                current.append(token)
            elif token == "gcloud":
                current = [token]
    return found


def flag(words: list[str], name: str) -> str | None:
    prefix = f"--{name}="
    return next((w[len(prefix) :] for w in words if w.startswith(prefix)), None)


def grants(cmds: list[list[str]]) -> set[tuple[str, str, str, str]]:
    """(kind, resource, member, role) of every add-iam-policy-binding command."""
    found = set()
    for c in cmds:
        if "add-iam-policy-binding" not in c:
            continue
        at = c.index("add-iam-policy-binding")
        found.add((" ".join(c[1:at]), c[at + 1], flag(c, "member") or "", flag(c, "role") or ""))
    return found


# --- Dry run ---------------------------------------------------------------------------------


def test_dry_run_calls_no_gcloud_and_prints_the_deploy(deployment: Deployment) -> None:
    result = deployment.run("--dry-run", *ALL_OPTIONS)

    assert result.returncode == 0, result.stderr
    assert deployment.calls() == []
    assert not deployment.staged.exists()
    (deploy,) = [c for c in commands(result.stdout) if c[1:3] == ["functions", "deploy"]]
    for expected in (
        "--gen2",
        "--retry",
        "--runtime=python312",
        "--entry-point=cancel_operations",
        "--timeout=540s",
        "--trigger-topic=ee-cancel-requests",
        f"--service-account={FUNCTION_SA}",
        f"--trigger-service-account={TRIGGER_SA}",
        "--ingress-settings=internal-only",
    ):
        assert expected in deploy


def test_dry_run_sets_results_topic_and_ee_projects(deployment: Deployment) -> None:
    result = deployment.run("--dry-run", *ALL_OPTIONS)

    (deploy,) = [c for c in commands(result.stdout) if c[1:3] == ["functions", "deploy"]]
    env_vars = flag(deploy, "set-env-vars")
    assert env_vars is not None
    assert env_vars.startswith("^@^")
    settings = dict(item.split("=", 1) for item in env_vars[3:].split("@"))
    assert settings == {
        "RESULTS_TOPIC": f"projects/{PROJECT}/topics/ee-cancel-results",
        "EE_PROJECTS": ",".join(EE_PROJECTS),
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        "VERIFY_SECONDS": "30",
    }


def test_dry_run_grants_both_earth_engine_roles_on_each_ee_project(deployment: Deployment) -> None:
    result = deployment.run("--dry-run", *ALL_OPTIONS)

    project_grants = {g for g in grants(commands(result.stdout)) if g[0] == "projects"}
    assert project_grants == {
        *(
            ("projects", p, f"serviceAccount:{FUNCTION_SA}", role)
            for p in EE_PROJECTS
            for role in ("roles/earthengine.writer", "roles/serviceusage.serviceUsageConsumer")
        ),
        ("projects", PROJECT, f"serviceAccount:{TRIGGER_SA}", "roles/eventarc.eventReceiver"),
    }


def test_dry_run_grants_publisher_on_the_results_topic_only(deployment: Deployment) -> None:
    result = deployment.run("--dry-run", *ALL_OPTIONS)

    publishers = {g for g in grants(commands(result.stdout)) if g[3] == "roles/pubsub.publisher"}
    assert publishers == {
        (
            "pubsub topics",
            "ee-cancel-results",
            f"serviceAccount:{FUNCTION_SA}",
            "roles/pubsub.publisher",
        ),
        (
            "pubsub topics",
            "ee-cancel-dead-letter",
            PUBSUB_AGENT.replace(PROJECT_NUMBER, "${PROJECT_NUMBER}"),
            "roles/pubsub.publisher",
        ),
    }


def test_dry_run_grants_no_broad_role(deployment: Deployment) -> None:
    result = deployment.run("--dry-run", *ALL_OPTIONS)

    roles = {g[3] for g in grants(commands(result.stdout))}
    assert "roles/run.invoker" in roles
    assert roles <= ALLOWED_ROLES
    assert "roles/editor" not in result.stdout
    assert "roles/owner" not in result.stdout
    assert "admin" not in " ".join(roles).lower()


def test_dry_run_prints_guarded_creates(deployment: Deployment) -> None:
    result = deployment.run("--dry-run")

    guarded = [
        line for line in result.stdout.splitlines() if " topics create ee-cancel-requests" in line
    ]
    assert guarded == [
        f"gcloud pubsub topics describe ee-cancel-requests --project={PROJECT} >/dev/null 2>&1"
        f" || gcloud pubsub topics create ee-cancel-requests --project={PROJECT}"
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--ee-projects=*",), "not a concrete project ID"),
        (("--env=RESULTS_TOPIC=x",), "unknown function setting"),
        (("--max-delivery-attempts=3",), "between 5 and 100"),
        (("--name=EE_CANCEL",), "--name"),
        (("--results-topic=a b",), "not a Pub/Sub topic"),
    ],
)
def test_bad_configuration_stops_before_any_command(
    deployment: Deployment, args: tuple[str, ...], message: str
) -> None:
    result = deployment.run(*args)

    assert result.returncode == 2
    assert message in result.stderr
    assert deployment.calls() == []


# --- Real run against the fake gcloud ------------------------------------------------------


def test_deploy_ships_only_main_lib_and_requirements(deployment: Deployment) -> None:
    result = deployment.run()

    assert result.returncode == 0, result.stderr
    assert deployment.staged.read_text().split() == [
        "./lib/__init__.py",
        "./lib/cancel.py",
        "./main.py",
        "./requirements.txt",
    ]
    (deploy,) = [c for c in deployment.calls() if c[1:3] == ["functions", "deploy"]]
    staging = flag(deploy, "source")
    assert staging is not None
    assert not Path(staging).exists(), "the staging directory is removed afterwards"


def test_rerun_creates_nothing_that_exists(deployment: Deployment) -> None:
    result = deployment.run(*ALL_OPTIONS)

    assert result.returncode == 0, result.stderr
    calls = deployment.calls()
    assert not [c for c in calls if "create" in c]
    assert ["gcloud", "scheduler", "jobs", "update", "pubsub", "ee-cancel-watchdog"] in [
        c[:6] for c in calls
    ]


def test_first_run_creates_what_is_missing(deployment: Deployment) -> None:
    result = deployment.run(*ALL_OPTIONS, missing=True)

    assert result.returncode == 0, result.stderr
    created = {tuple(c[:5]) for c in deployment.calls() if "create" in c}
    assert created == {
        ("gcloud", "pubsub", "topics", "create", "ee-cancel-requests"),
        ("gcloud", "pubsub", "topics", "create", "ee-cancel-results"),
        ("gcloud", "pubsub", "topics", "create", "ee-cancel-dead-letter"),
        ("gcloud", "pubsub", "subscriptions", "create", "ee-cancel-results-all"),
        ("gcloud", "pubsub", "subscriptions", "create", "ee-cancel-dead-letter-all"),
        ("gcloud", "iam", "service-accounts", "create", "ee-cancel"),
        ("gcloud", "iam", "service-accounts", "create", "ee-cancel-trigger"),
        ("gcloud", "billing", "budgets", "create", "--billing-account=000000-AAAAAA-BBBBBB"),
        ("gcloud", "scheduler", "jobs", "create", "pubsub"),
    }


def test_dead_letter_policy_is_attached_to_the_eventarc_subscription(
    deployment: Deployment,
) -> None:
    result = deployment.run("--dead-letter-topic=ee-cancel-dead-letter")

    assert result.returncode == 0, result.stderr
    calls = deployment.calls()
    (update,) = [c for c in calls if c[1:4] == ["pubsub", "subscriptions", "update"]]
    assert update[4] == EVENTARC_SUBSCRIPTION
    assert flag(update, "dead-letter-topic") == f"projects/{PROJECT}/topics/ee-cancel-dead-letter"
    assert flag(update, "max-delivery-attempts") == "15"
    assert (
        "pubsub subscriptions",
        EVENTARC_SUBSCRIPTION,
        PUBSUB_AGENT,
        "roles/pubsub.subscriber",
    ) in grants(calls)


# --- The script itself --------------------------------------------------------------------------


def test_script_parses() -> None:
    result = subprocess.run(
        ["bash", "-n", str(SCRIPT)], capture_output=True, text=True, check=False
    )

    assert result.returncode == 0, result.stderr


def test_script_passes_shellcheck() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck not installed")

    result = subprocess.run([shellcheck, str(SCRIPT)], capture_output=True, text=True, check=False)

    assert result.returncode == 0, result.stdout
