"""The chaos soak, short: real push delivery, injected faults and both drills lose nothing.

The same code as ``bench/soak.py`` with small numbers: 150 requests, about a fifth of the Earth
Engine calls answered with a transient error, a 3 s outage, the function killed and restarted,
the results topic deleted and recreated. Logs and ``soak.json`` stay in the test's tmp_path.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.soak import SoakSettings, run_soak

pytestmark = pytest.mark.integration


def test_short_soak_loses_nothing_and_cancels_nothing_unasked(tmp_path: Path) -> None:
    settings = SoakSettings(
        requests=150,
        budget_waves=4,
        decoys=40,
        publish_rate=5.0,
        fault_probability=0.08,
        outage_seconds=3.0,
        topic_outage_seconds=3.0,
        wave_timeout=20.0,
        timeout=150.0,
        log_dir=tmp_path,
    )

    report = run_soak(settings)

    assert report.requests == 150 and report.operations > 150
    assert report.lost == 0, f"lost {report.lost_by_kind}, e.g. {report.lost_examples}"
    assert report.malformed_missing == 0
    assert report.budget_below_outcomes == 0
    assert report.decoys_cancelled == 0 and report.unrequested_cancelled == 0
    assert report.requested_still_active == 0
    assert report.bad_statuses == 0 and report.non_final_outcomes == 0
    # The chaos really happened: faults, redeliveries, publishes failing while the topic was gone.
    assert report.ee_fault_pct >= 15.0
    assert report.redeliver_500s > 0 and report.publish_error_500s > 0
    assert report.topic_drill_publish_errors > 0
    assert report.restart_down_seconds >= settings.restart_down_seconds
