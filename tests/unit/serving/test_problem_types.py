"""The registry of problem kinds (`serving.problem_types`) and its documentation.

`docs/problems.md` must list exactly the registered kinds, each with its `type` and status,
so the app's developers can rely on the page; which kind each error really carries is
`tests/integration/test_api_problem_types.py`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from serving.problem_types import (
    BY_CODE,
    DEFAULT_BY_STATUS,
    FEED_CURSOR_EXPIRED,
    PROBLEM_TYPE_PREFIX,
    PROBLEM_TYPES,
    STORE_UNAVAILABLE,
)
from serving.problems import ProblemError, problem_example

PROBLEMS_MD = Path(__file__).resolve().parents[3] / "docs" / "problems.md"
# A row of the table: | `code` | `type` | status | when | what the app does |
ROW = re.compile(r"^\| `([a-z-]+)` \| `([^`]+)` \| (\d{3}) \| (.+?) \| (.+?) \|$")


def _documented() -> dict[str, tuple[str, int]]:
    rows = [ROW.match(line) for line in PROBLEMS_MD.read_text().splitlines()]
    return {row[1]: (row[2], int(row[3])) for row in rows if row}


def test_codes_are_unique_kebab_case_and_name_their_uri() -> None:
    codes = [kind.code for kind in PROBLEM_TYPES]
    assert len(codes) == len(set(codes)) == len(BY_CODE)
    for kind in PROBLEM_TYPES:
        assert re.fullmatch(r"[a-z]+(-[a-z]+)*", kind.code), kind.code
        assert kind.uri == f"{PROBLEM_TYPE_PREFIX}{kind.code}"
        assert 400 <= kind.status <= 599 and kind.when


def test_every_default_is_registered_under_its_own_status() -> None:
    for status, kind in DEFAULT_BY_STATUS.items():
        assert BY_CODE[kind.code] is kind and kind.status == status


def test_docs_list_exactly_the_registered_kinds() -> None:
    documented = _documented()
    assert documented == {kind.code: (kind.uri, kind.status) for kind in PROBLEM_TYPES}


def test_the_type_the_app_already_knew_is_unchanged() -> None:
    assert STORE_UNAVAILABLE.uri == "/problems/store-unavailable"


@pytest.mark.parametrize("status", sorted(DEFAULT_BY_STATUS))
def test_a_plain_status_gets_its_default_kind(status: int) -> None:
    body = problem_example(status, "x", instance="/v1/feed")
    assert body["type"] == DEFAULT_BY_STATUS[status].uri
    assert body["code"] == DEFAULT_BY_STATUS[status].code


def test_a_status_without_a_kind_is_about_blank_without_a_code() -> None:
    body = problem_example(418, "x", instance="/v1/feed")
    assert body["type"] == "about:blank" and "code" not in body


def test_a_kind_is_never_sent_with_another_status() -> None:
    with pytest.raises(ValueError, match="feed-cursor-expired"):
        problem_example(404, "x", instance="/v1/feed", kind=FEED_CURSOR_EXPIRED)


def test_a_problem_error_carries_its_kinds_status() -> None:
    error = ProblemError(FEED_CURSOR_EXPIRED, "gone", headers={"X-A": "1"})
    assert (error.status_code, error.kind, error.headers) == (
        410,
        FEED_CURSOR_EXPIRED,
        {"X-A": "1"},
    )
