"""Cloud Billing budget notifications: recognise one and decide whether it means "stop now".

The notification format is Cloud Billing's programmatic budget notification (schema 1.0):
https://cloud.google.com/billing/docs/how-to/budgets-programmatic-notifications
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from lib.errors import Rejected

_ATTRIBUTES: Final = ("billingAccountId", "budgetId", "schemaVersion")
_TEXT_FIELDS: Final = ("budgetDisplayName", "currencyCode", "costIntervalStart", "budgetAmountType")


def is_budget_notification(body: Mapping[str, Any]) -> bool:
    """A JSON object with both ``costAmount`` and ``budgetAmount`` is a budget notification."""
    return "costAmount" in body and "budgetAmount" in body


@dataclass(frozen=True)
class Budget:
    """The figures of one notification, and the fraction of the budget it reports."""

    cost: float
    amount: float
    alert_threshold: float | None
    forecast_threshold: float | None
    details: Mapping[str, Any]

    @property
    def spent_fraction(self) -> float | None:
        """``costAmount / budgetAmount``, when the budget is positive."""
        return self.cost / self.amount if self.amount > 0 else None

    def crossing(self, threshold: float, use_forecast: bool) -> float | None:
        """The reported fraction at or over ``threshold`` that triggers a cancel, or None.

        The actual figures (the alert threshold crossed, and spend over budget) are compared
        first; the forecast counts only when enabled.
        """
        actual = [f for f in (self.alert_threshold, self.spent_fraction) if f is not None]
        if actual and max(actual) >= threshold:
            return max(actual)
        forecast = self.forecast_threshold
        if use_forecast and forecast is not None and forecast >= threshold:
            return forecast
        return None

    def as_trigger(self, threshold: float) -> dict[str, Any]:
        """The budget's figures as they appear in each outcome's ``trigger.budget``."""
        return {**self.details, "threshold": threshold}


def parse_budget(body: Mapping[str, Any], attributes: Mapping[str, str]) -> Budget:
    """Validate a budget notification; raises ``Rejected`` when its figures are unusable."""
    cost = _number(body, "costAmount", required=True)
    amount = _number(body, "budgetAmount", required=True)
    assert cost is not None and amount is not None
    alert = _number(body, "alertThresholdExceeded")
    forecast = _number(body, "forecastThresholdExceeded")
    if amount < 0:
        raise Rejected("INVALID_ARGUMENT", "budget notification has a negative budgetAmount")
    details: dict[str, Any] = {
        name: attributes[name] for name in _ATTRIBUTES if isinstance(attributes.get(name), str)
    }
    details.update(
        {name: body[name][:200] for name in _TEXT_FIELDS if isinstance(body.get(name), str)}
    )
    details.update({"costAmount": cost, "budgetAmount": amount})
    if alert is not None:
        details["alertThresholdExceeded"] = alert
    if forecast is not None:
        details["forecastThresholdExceeded"] = forecast
    return Budget(cost, amount, alert, forecast, details)


def _number(body: Mapping[str, Any], field: str, *, required: bool = False) -> float | None:
    value = body.get(field)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise Rejected(
            "INVALID_ARGUMENT", f"budget notification field {field!r} must be a finite number"
        )
    return float(value)
