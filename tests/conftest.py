"""Shared fixtures: the repository root on sys.path, and an isolated environment."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """An environment without any ee-cancel or emulator variables."""
    for name in (
        "RESULTS_TOPIC",
        "GOOGLE_CLOUD_PROJECT",
        "GCP_PROJECT",
        "GCLOUD_PROJECT",
        "EE_PROJECTS",
        "EE_API_URL",
        "EE_API_VERSION",
        "EE_EMULATOR_HOST",
        "BUDGET_THRESHOLD",
        "BUDGET_USE_FORECAST",
        "CANCEL_CONCURRENCY",
        "EE_MAX_QPS",
        "RETRY_DEADLINE_SECONDS",
        "MAX_EVENT_AGE_SECONDS",
        "MAX_OPERATIONS_PER_MESSAGE",
        "VERIFY_SECONDS",
        "DRY_RUN",
        "PUBSUB_EMULATOR_HOST",
        "GOOGLE_APPLICATION_CREDENTIALS",
    ):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch
