"""Selections match operations; budgets decide when to act."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from lib.budget import parse_budget
from lib.errors import Rejected
from lib.selection import Selection, parse_selection
from tests.unit.fakes import config

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def op(state: str = "RUNNING", age: float = 0, **metadata: Any) -> dict[str, Any]:
    created = (NOW - timedelta(seconds=age)).isoformat().replace("+00:00", "Z")
    return {
        "name": "projects/p/operations/x",
        "metadata": {"state": state, "createTime": created, **metadata},
    }


def select(**fields: Any) -> Selection:
    return parse_selection(fields, config())


def test_empty_selection_means_every_active_operation() -> None:
    everything = select()
    assert everything.matches(op("PENDING"), NOW) and everything.matches(op("RUNNING"), NOW)
    for state in ("CANCELLING", "SUCCEEDED", "CANCELLED", "FAILED"):
        assert not everything.matches(op(state), NOW)


def test_filters_combine_with_and() -> None:
    chosen = select(
        states=["RUNNING"],
        types=["EXPORT_IMAGE"],
        descriptionRegex="^nightly",
        olderThanSeconds=3600,
        minEecuSeconds=10,
    )
    good = op(age=7200, type="EXPORT_IMAGE", description="nightly 1", batchEecuUsageSeconds=11)
    assert chosen.matches(good, NOW)
    for change in (
        {"state": "PENDING"},
        {"type": "INGEST_IMAGE"},
        {"description": "manual"},
        {"batchEecuUsageSeconds": 9.5},
    ):
        bad = {**good, "metadata": {**good["metadata"], **change}}
        assert not chosen.matches(bad, NOW), change
    assert not chosen.matches(
        op(age=60, type="EXPORT_IMAGE", description="nightly", batchEecuUsageSeconds=99), NOW
    )


def test_missing_eecu_counts_as_zero_and_missing_create_time_is_not_old() -> None:
    assert not select(minEecuSeconds=1).matches(op(), NOW)
    assert select(minEecuSeconds=0).matches(op(), NOW)
    no_time = {"name": "x", "metadata": {"state": "RUNNING"}}
    assert not select(olderThanSeconds=1).matches(no_time, NOW)


def test_states_outside_the_active_ones_never_match() -> None:
    assert not select(states=["CANCELLING"]).matches(op("CANCELLING"), NOW)


def test_project_must_be_listed() -> None:
    assert select(project="ee-other").projects == ("ee-other",)
    with pytest.raises(Rejected) as caught:
        select(project="stranger-1")
    assert caught.value.status == "PERMISSION_DENIED"


def budget(**body: Any) -> Any:
    return parse_budget(body, {"budgetId": "b-1"})


def test_budget_acts_on_alert_threshold_or_spend() -> None:
    assert (
        budget(costAmount=10, budgetAmount=100, alertThresholdExceeded=1.0).crossing(1.0, False)
        == 1.0
    )
    assert budget(costAmount=150, budgetAmount=100).crossing(1.0, False) == 1.5
    assert (
        budget(costAmount=99, budgetAmount=100, alertThresholdExceeded=0.9).crossing(1.0, False)
        is None
    )


def test_zero_budget_uses_only_the_alert_threshold() -> None:
    assert budget(costAmount=5, budgetAmount=0).crossing(1.0, False) is None
    assert (
        budget(costAmount=5, budgetAmount=0, alertThresholdExceeded=1.0).crossing(1.0, False) == 1.0
    )


def test_forecast_counts_only_when_enabled() -> None:
    forecast = budget(costAmount=10, budgetAmount=100, forecastThresholdExceeded=1.2)
    assert forecast.crossing(1.0, False) is None
    assert forecast.crossing(1.0, True) == 1.2


def test_budget_figures_are_reported() -> None:
    got = budget(costAmount=150, budgetAmount=100, currencyCode="USD").as_trigger(1.0)
    assert got == {
        "budgetId": "b-1",
        "currencyCode": "USD",
        "costAmount": 150.0,
        "budgetAmount": 100.0,
        "threshold": 1.0,
    }
