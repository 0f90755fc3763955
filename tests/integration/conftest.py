"""The real pieces on loopback: Pub/Sub emulator, EE emulator, function processes."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from deploy.local.stack import FunctionProcess, Results, Stack

PROJECT = "demo-project"
OTHER = "other-project"
_counter = itertools.count()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp("logs")
    with Stack(ee_projects=(PROJECT, OTHER), log_dir=logs) as started:
        yield started


@pytest.fixture(scope="session")
def results_topic(stack: Stack) -> str:
    return stack.topic("results")


@pytest.fixture(scope="session")
def results(stack: Stack, results_topic: str) -> Results:
    return stack.results(results_topic, "results-all")


@pytest.fixture(scope="session")
def function_factory(stack: Stack, results_topic: str) -> Callable[..., FunctionProcess]:
    """A function process per distinct configuration, reused across tests."""
    started: dict[tuple[tuple[str, str], ...], FunctionProcess] = {}

    def make(**overrides: str) -> FunctionProcess:
        env = stack.function_env(results_topic, **{"RETRY_DEADLINE_SECONDS": "2", **overrides})
        key = tuple(sorted(env.items()))
        if key not in started:
            started[key] = stack.function(env)
        return started[key]

    return make


@pytest.fixture
def function(function_factory: Callable[..., FunctionProcess]) -> FunctionProcess:
    return function_factory()


@pytest.fixture(autouse=True)
def no_faults(stack: Stack) -> None:
    """Each test starts with a healthy Earth Engine emulator."""
    stack.admin.set_faults([])
    stack.admin.set_token(None)


@pytest.fixture
def ops(stack: Stack) -> Callable[..., list[str]]:
    """Seed ``n`` fresh RUNNING operations and return their IDs."""

    def seed(n: int, project: str = PROJECT, **fields: object) -> list[str]:
        prefix = f"T{next(_counter)}X"
        stack.admin.add_operations(
            generate={
                "project": project,
                "count": n,
                "state": "RUNNING",
                "prefix": prefix,
                **fields,
            }
        )
        return [f"{prefix}{i:04d}" for i in range(n)]

    return seed


def logs_of(function: FunctionProcess) -> str:
    assert function.log_path is not None
    return Path(function.log_path).read_text()
