"""Postgres array literals for COPY, written and parsed without a server.

The round trip through a real Postgres is in tests/integration/test_app_data_onboarding.py;
these pin the text format itself, element by element.
"""

from __future__ import annotations

import polars as pl
import pytest

from store.db import parse_pg_array, pg_array_literal

AWKWARD = [
    "Music",
    "Food & Drink",
    "Film, Media & Entertainment",
    'say "hi"',
    "back\\slash",
    "{braces}",
    "NULL",
    "",
    " padded ",
    "new\nline",
    "naïve café",
]
LISTS = pl.Series("c", [AWKWARD, [], ["solo"], None, ["x", None]], dtype=pl.List(pl.Utf8))


def literals(series: pl.Series) -> list[str | None]:
    return pl.DataFrame(series).select(pg_array_literal("c")).to_series().to_list()


def parsed(texts: list[str | None]) -> list[list[str | None] | None]:
    frame = pl.DataFrame({"c": texts}, schema={"c": pl.Utf8})
    out = frame.select(parse_pg_array("c")).to_series()
    assert out.dtype == pl.List(pl.Utf8)
    return out.to_list()


def test_literal_quotes_every_element_and_escapes_quotes_and_backslashes() -> None:
    assert literals(pl.Series("c", [["music", 'a"b', "c\\d", "e,f"]])) == [
        '{"music","a\\"b","c\\\\d","e,f"}'
    ]


def test_literal_keeps_empty_null_list_and_null_element_apart() -> None:
    assert literals(LISTS)[1:] == ["{}", '{"solo"}', None, '{"x",NULL}']


def test_literal_parses_back_to_the_same_lists() -> None:
    assert parsed(literals(LISTS)) == LISTS.to_list()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{}", []),
        ("{music,sports}", ["music", "sports"]),
        (
            '{"Food & Drink","Film, Media & Entertainment"}',
            ["Food & Drink", "Film, Media & Entertainment"],
        ),
        ('{"say \\"hi\\"","back\\\\slash"}', ['say "hi"', "back\\slash"]),
        ('{NULL,"NULL",null}', [None, "NULL", None]),
        ('{"","{braces}"}', ["", "{braces}"]),
        ('{"new\nline",naïve}', ["new\nline", "naïve"]),
    ],
)
def test_parses_what_postgres_prints(text: str, expected: list[str | None]) -> None:
    """Postgres leaves simple elements bare and quotes the rest; a bare NULL is null."""
    assert parsed([text]) == [expected]


def test_null_text_is_a_null_list() -> None:
    assert parsed([None]) == [None]
