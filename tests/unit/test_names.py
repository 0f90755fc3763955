"""Operation names: strict validation before any URL is built."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lib.errors import Rejected
from lib.names import is_operation_name, resolve
from tests.unit.fakes import config

CONFIG = config()
SAFE = re.compile(r"projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/operations/[A-Za-z0-9_-]{1,128}")


def test_bare_id_resolves_in_the_first_project() -> None:
    assert resolve("ABC_12-x", CONFIG) == "projects/ee-project/operations/ABC_12-x"


def test_full_name_in_a_listed_project_is_kept() -> None:
    assert resolve("projects/ee-other/operations/X1", CONFIG) == "projects/ee-other/operations/X1"


def test_valid_name_outside_ee_projects_is_permission_denied() -> None:
    with pytest.raises(Rejected) as caught:
        resolve("projects/someone-else/operations/X1", CONFIG)
    assert caught.value.status == "PERMISSION_DENIED"
    assert caught.value.operation == "projects/someone-else/operations/X1"


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "projects/ee-project/operations/X1/extra",
        "projects/ee-project/operations/../../v1/x",
        "projects/ee-project/operations/..",
        "projects/ee-project/operations/X1?alt=media",
        "projects/ee-project/operations/X1#frag",
        "projects/ee-project/operations/X1:cancel",
        "projects/ee-project/operations/X 1",
        "projects/ee-project/operations/X\n1",
        "projects/ee-project/operations/X\x001",
        "projects/ee-project/operations/X%2F1",
        "https://evil.example.com/v1beta/projects/ee-project/operations/X1",
        "//evil.example.com/x",
        "projects/EE-PROJECT/operations/X1",
        "projects/short/operations/X1",
        "projects/ee-project/operations/" + "a" * 129,
        "projects/ee-project/operations/",
        "projects//operations/X1",
        "/projects/ee-project/operations/X1",
        "projects/ee-project/locations/us/operations/X1",
        "ID\u00e9",
        "a" * 129,
    ],
)
def test_malformed_names_are_invalid_argument(text: str) -> None:
    with pytest.raises(Rejected) as caught:
        resolve(text, CONFIG)
    assert caught.value.status == "INVALID_ARGUMENT"
    assert caught.value.message


@pytest.mark.parametrize("value", [None, 12, 1.5, True, ["x"], {"name": "x"}])
def test_non_strings_are_invalid_argument(value: object) -> None:
    with pytest.raises(Rejected, match="must be a string"):
        resolve(value, CONFIG)


@given(st.text(max_size=300))
def test_any_text_resolves_to_a_safe_name_or_is_rejected(text: str) -> None:
    try:
        name = resolve(text, CONFIG)
    except Rejected as exc:
        assert exc.status in {"INVALID_ARGUMENT", "PERMISSION_DENIED"}
        return
    assert SAFE.fullmatch(name)
    assert is_operation_name(name)
