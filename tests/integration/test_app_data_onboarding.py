"""Onboarding categories through the real Postgres: COPY in, COPY out, same lists.

Category names are free text from the catalogue ("Film, Media & Entertainment" has a comma),
so the array literal has to survive spaces, commas, quotes, backslashes and braces both ways.
"""

from __future__ import annotations

import polars as pl
import sqlalchemy as sa

from store.app_data import (
    ATTENDANCE_SCHEMA,
    FRIENDSHIPS_SCHEMA,
    SWIPES_SCHEMA,
    USERS_SCHEMA,
    read_users,
    replace_activity,
)
from store.db import read_frame
from store.schema import users as users_table

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
PICKS: list[list[str] | None] = [
    AWKWARD,
    [],
    ["Music", "Sports & Fitness"],
    None,  # a null list means "skipped": stored as empty
]
EXPECTED = [AWKWARD, [], ["Music", "Sports & Fitness"], []]


def users_frame(picks: list[list[str] | None] | None = None) -> pl.DataFrame:
    n = len(PICKS)
    frame = pl.DataFrame(
        {
            "user_id": list(range(1, n + 1)),
            "display_name": [f"User {i}." for i in range(1, n + 1)],
            "metro": ["san-francisco"] * n,
            "home_lat": [37.77] * n,
            "home_lon": [-122.42] * n,
        }
    )
    if picks is None:
        return frame
    return frame.with_columns(
        onboarding_categories=pl.Series(picks, dtype=pl.List(pl.Utf8)),
    )


def replace_users(engine: sa.Engine, users: pl.DataFrame) -> None:
    """Reseed with these users and no activity."""
    with engine.begin() as conn:
        replace_activity(
            conn,
            users=users,
            friendships=pl.DataFrame(schema=FRIENDSHIPS_SCHEMA),
            swipes=pl.DataFrame(schema=SWIPES_SCHEMA),
            attendance=pl.DataFrame(schema=ATTENDANCE_SCHEMA | {"notes": pl.Utf8()}),
        )


def stored_arrays(engine: sa.Engine) -> list[list[str]]:
    """What Postgres holds, read through psycopg's own array adapter (not our parser)."""
    query = sa.select(users_table.c.onboarding_categories).order_by(users_table.c.id)
    with engine.connect() as conn:
        return [list(row[0]) for row in conn.execute(query)]


def test_awkward_category_names_round_trip(engine: sa.Engine) -> None:
    replace_users(engine, users_frame(PICKS))
    assert stored_arrays(engine) == EXPECTED
    with engine.connect() as conn:
        read = read_users(conn)
    assert read.schema == pl.Schema(USERS_SCHEMA)
    assert read["onboarding_categories"].to_list() == EXPECTED


def test_users_without_the_column_read_back_as_skipped(engine: sa.Engine) -> None:
    replace_users(engine, users_frame())
    with engine.connect() as conn:
        read = read_users(conn)
    assert read["onboarding_categories"].to_list() == [[]] * len(PICKS)


def test_parser_reads_what_postgres_renders(engine: sa.Engine) -> None:
    """Arrays stored by psycopg's adapter (not our writer) parse back to the same values.

    Postgres prints simple elements bare and quotes the rest, and prints NULL elements as a
    bare NULL: the reader has to tell all of those apart.
    """
    rows = [AWKWARD, ["plain", "two words"], [], ["x", None, "null"]]
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TEMP TABLE picks (i int, c text[]) ON COMMIT DROP"))
        conn.execute(
            sa.text("INSERT INTO picks VALUES (:i, :c)"),
            [{"i": i, "c": row} for i, row in enumerate(rows)],
        )
        frame = read_frame(conn, "SELECT c FROM picks ORDER BY i", {"c": pl.List(pl.Utf8())})
    assert frame["c"].to_list() == rows
