"""Configuration: defaults, and a clear error naming each bad variable."""

from __future__ import annotations

import pytest

from lib.config import Config, ConfigError

BASE = {"RESULTS_TOPIC": "results", "GOOGLE_CLOUD_PROJECT": "my-project"}


def test_defaults_follow_the_spec() -> None:
    config = Config.from_env(BASE)
    assert config.results_topic == "projects/my-project/topics/results"
    assert config.ee_projects == ("my-project",)
    assert config.default_project == "my-project"
    assert config.api_root == "https://earthengine.googleapis.com"
    assert config.api_version == "v1beta"
    assert not config.emulator
    assert (config.budget_threshold, config.budget_use_forecast) == (1.0, False)
    assert (config.cancel_concurrency, config.max_qps) == (16, 50.0)
    assert (config.retry_deadline, config.max_event_age) == (60.0, 3600.0)
    assert (config.max_operations, config.verify_seconds, config.dry_run) == (5000, 0.0, False)


def test_full_topic_and_project_list() -> None:
    config = Config.from_env(
        {
            **BASE,
            "RESULTS_TOPIC": "projects/other-proj/topics/out",
            "EE_PROJECTS": "aaa-111, bbb-222",
        }
    )
    assert config.results_topic == "projects/other-proj/topics/out"
    assert config.ee_projects == ("aaa-111", "bbb-222")
    assert config.admits("bbb-222") and not config.admits("ccc-333")


def test_star_admits_any_project_but_keeps_concrete_default() -> None:
    config = Config.from_env({**BASE, "EE_PROJECTS": "*,aaa-111"})
    assert config.any_project and config.admits("zzz-999")
    assert config.default_project == "aaa-111"
    star_only = Config.from_env({**BASE, "EE_PROJECTS": "*"})
    assert star_only.ee_projects == ("my-project",)


def test_emulator_host_switches_to_plain_http() -> None:
    config = Config.from_env({**BASE, "EE_EMULATOR_HOST": "127.0.0.1:8085"})
    assert config.emulator and config.api_root == "http://127.0.0.1:8085"


def test_loopback_http_api_url_is_allowed() -> None:
    config = Config.from_env({**BASE, "EE_API_URL": "http://localhost:9000/"})
    assert config.api_root == "http://localhost:9000"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RESULTS_TOPIC", ""),
        ("RESULTS_TOPIC", "projects/x/topics/t"),
        ("RESULTS_TOPIC", "a b"),
        ("GOOGLE_CLOUD_PROJECT", "Bad_Project"),
        ("EE_PROJECTS", "ok-project,,other-project"),
        ("EE_PROJECTS", "UPPER-case"),
        ("EE_API_URL", "http://earthengine.googleapis.com"),
        ("EE_API_URL", "ftp://example.com"),
        ("EE_API_URL", "https://user:pw@example.com"),
        ("EE_API_VERSION", "v2"),
        ("EE_EMULATOR_HOST", "localhost"),
        ("BUDGET_THRESHOLD", "0"),
        ("BUDGET_THRESHOLD", "lots"),
        ("BUDGET_USE_FORECAST", "maybe"),
        ("CANCEL_CONCURRENCY", "0"),
        ("CANCEL_CONCURRENCY", "2.5"),
        ("EE_MAX_QPS", "-1"),
        ("RETRY_DEADLINE_SECONDS", "nan"),
        ("MAX_EVENT_AGE_SECONDS", "inf"),
        ("MAX_OPERATIONS_PER_MESSAGE", "0"),
        ("VERIFY_SECONDS", "-3"),
        ("DRY_RUN", "2"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Config.from_env({**BASE, name: value})


def test_missing_project_everywhere_is_an_error() -> None:
    with pytest.raises(ConfigError, match="EE_PROJECTS"):
        Config.from_env({"RESULTS_TOPIC": "projects/my-project/topics/results"})
    with pytest.raises(ConfigError, match="GOOGLE_CLOUD_PROJECT"):
        Config.from_env({"RESULTS_TOPIC": "results", "EE_PROJECTS": "aaa-111"})


def test_flags_accept_common_spellings() -> None:
    assert Config.from_env({**BASE, "DRY_RUN": "TRUE"}).dry_run
    assert not Config.from_env({**BASE, "DRY_RUN": "off"}).dry_run
