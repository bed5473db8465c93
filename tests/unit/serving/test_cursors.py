"""Feed cursors: only a cursor signed with the API's key decodes."""

from __future__ import annotations

import base64
import json

import pytest
from fastapi.exceptions import RequestValidationError

from serving import cursors

KEY = b"k" * 32
CURSOR = cursors.Cursor(run_id="run-7", after_rank=12)


def test_a_signed_cursor_round_trips() -> None:
    assert cursors.decode(cursors.encode(CURSOR, KEY), KEY) == CURSOR


def _unsigned(document: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "value",
    [
        _unsigned({"r": "run-7", "k": 12}),  # what cursors were before they were signed
        cursors.encode(CURSOR, b"another key" * 3),
        _unsigned({"r": "staged-run", "k": 0}) + "." + cursors.encode(CURSOR, KEY).split(".")[1],
        cursors.encode(CURSOR, KEY)[:-2],
        "not base64!.x",
        "",
    ],
    ids=["unsigned", "other-key", "swapped-body", "truncated-tag", "garbage", "empty"],
)
def test_anything_else_is_a_422_naming_the_cursor(value: str) -> None:
    with pytest.raises(RequestValidationError) as refused:
        cursors.decode(value, KEY)
    assert refused.value.errors()[0]["loc"] == ("query", "cursor")
