"""Bulk reads and writes of the app's own tables, for the pipelines.

Writes go through COPY (see `store.db`); reads come back as Polars frames with fixed schemas,
so the warehouse sees the same types whatever the database returned.
"""

from __future__ import annotations

import polars as pl
import sqlalchemy as sa

from store.db import copy_frame, read_frame, truncate

UTC_TIME = pl.Datetime("us", "UTC")
ONBOARDING_COLUMN = "onboarding_categories"

USERS_SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.Int64(),
    "metro": pl.Utf8(),
    "home_lat": pl.Float64(),
    "home_lon": pl.Float64(),
    "created_at": UTC_TIME,
    "onboarding_categories": pl.List(pl.Utf8()),
}
FRIENDSHIPS_SCHEMA: dict[str, pl.DataType] = {"user_id": pl.Int64(), "friend_id": pl.Int64()}
SWIPES_SCHEMA: dict[str, pl.DataType] = {
    "swipe_id": pl.Utf8(),
    "user_id": pl.Int64(),
    "event_id": pl.Utf8(),
    "action": pl.Utf8(),
    "position": pl.Int32(),
    "created_at": UTC_TIME,
}
ATTENDANCE_SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.Int64(),
    "event_id": pl.Utf8(),
    "status": pl.Utf8(),
    "visibility": pl.Utf8(),
    "updated_at": UTC_TIME,
}

ACTIVITY_TABLES = ("users", "friendships", "swipes", "event_attendance")


def replace_activity(
    conn: sa.Connection,
    *,
    users: pl.DataFrame,
    friendships: pl.DataFrame,
    swipes: pl.DataFrame,
    attendance: pl.DataFrame,
) -> dict[str, int]:
    """Replace all users and their activity in one transaction (reseeding a synthetic city).

    The caller's transaction makes it all-or-nothing: a failure leaves the old city intact.
    `users` may carry `onboarding_categories` (List(Utf8)); without it every user reads as
    having skipped onboarding (the column's empty-array default).
    """
    truncate(conn, ACTIVITY_TABLES)
    return {
        "users": copy_frame(conn, "users", _user_rows(users)),
        "friendships": copy_frame(conn, "friendships", friendships.select("user_id", "friend_id")),
        "swipes": copy_frame(
            conn,
            "swipes",
            swipes.select(
                pl.col("swipe_id").alias("id"),
                "user_id",
                "event_id",
                "action",
                "position",
                "created_at",
            ),
        ),
        "event_attendance": copy_frame(
            conn,
            "event_attendance",
            attendance.select("user_id", "event_id", "status", "visibility", "notes", "updated_at"),
        ),
    }


def _user_rows(users: pl.DataFrame) -> pl.DataFrame:
    """The `users` table's columns; a null onboarding list is stored as empty (skipped)."""
    columns = [pl.col("user_id").alias("id"), "display_name", "metro", "home_lat", "home_lon"]
    if ONBOARDING_COLUMN in users.columns:
        picks = pl.col(ONBOARDING_COLUMN).cast(pl.List(pl.Utf8))
        columns.append(picks.fill_null(pl.lit([], dtype=pl.List(pl.Utf8))))
    return users.select(columns)


def upsert_catalogue(conn: sa.Connection, *, events: pl.DataFrame, venues: pl.DataFrame) -> None:
    """Insert or update venues then events, keyed by their upstream ids.

    COPY into temporary tables, then one INSERT ... ON CONFLICT per table: as fast as COPY,
    and safe to rerun every hour.
    """
    _upsert(
        conn,
        "venues",
        venues.select(
            pl.col("venue_id").alias("id"),
            "name",
            "address",
            "city",
            "metro",
            "latitude",
            "longitude",
            "capacity",
        ),
    )
    _upsert(
        conn,
        "events",
        events.select(
            pl.col("event_id").alias("id"),
            "name",
            "summary",
            "url",
            "venue_id",
            "metro",
            "category",
            "start_utc",
            "end_utc",
            "timezone",
            "is_free",
            "price_min_cents",
            "price_max_cents",
            "currency",
            "capacity",
            "status",
            "is_active",
            "changed_at",
        ),
    )


def _upsert(conn: sa.Connection, table: str, frame: pl.DataFrame) -> None:
    staging = f"_stage_{table}"
    conn.execute(
        sa.text(f"CREATE TEMP TABLE {staging} (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DROP")
    )
    copy_frame(conn, staging, frame)
    columns = ", ".join(frame.columns)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in frame.columns if c != "id")
    conn.execute(
        sa.text(
            f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {staging} "
            f"ON CONFLICT (id) DO UPDATE SET {updates}, updated_at = now()"
        )
    )


def read_users(conn: sa.Connection) -> pl.DataFrame:
    """Users with metro, home, signup time and onboarding categories (List(Utf8))."""
    return read_frame(
        conn,
        "SELECT id AS user_id, metro, home_lat, home_lon, created_at, onboarding_categories "
        "FROM users ORDER BY id",
        USERS_SCHEMA,
    )


def read_friendships(conn: sa.Connection) -> pl.DataFrame:
    return read_frame(
        conn,
        "SELECT user_id, friend_id FROM friendships ORDER BY user_id, friend_id",
        FRIENDSHIPS_SCHEMA,
    )


def read_swipes(conn: sa.Connection) -> pl.DataFrame:
    return read_frame(
        conn,
        "SELECT id AS swipe_id, user_id, event_id, action, position, "
        "created_at FROM swipes ORDER BY created_at, id",
        SWIPES_SCHEMA,
    )


def read_attendance(conn: sa.Connection) -> pl.DataFrame:
    return read_frame(
        conn,
        "SELECT user_id, event_id, status, visibility, updated_at "
        "FROM event_attendance ORDER BY user_id, event_id",
        ATTENDANCE_SCHEMA,
    )


def most_active_user(conn: sa.Connection) -> int | None:
    """The user with the most swipes: a good first feed to look at."""
    row = conn.execute(
        sa.text(
            "SELECT user_id FROM swipes GROUP BY user_id ORDER BY count(*) DESC, user_id LIMIT 1"
        )
    ).first()
    return None if row is None else int(row[0])
