"""Bulk reads and writes of the app's own tables, for the pipelines.

Writes go through COPY (see `store.db`); reads come back as Polars frames with fixed schemas,
so the warehouse sees the same types whatever the database returned.
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class CatalogueUpsert:
    """What `upsert_catalogue` wrote, and the events it had to leave out.

    `orphaned_event_ids`: events whose `venue_id` is neither in this batch nor already in
    `venues`. They are skipped (and reported) rather than failing the foreign key, which
    would roll back every valid event of the batch with them.
    """

    venues: int
    events: int
    orphaned_event_ids: list[str]


# A start, end or cancellation that differs from the stored one is a new schedule revision
# (the iCalendar feed's SEQUENCE); anything else keeps the revision and its time.
_SCHEDULE_CHANGED = (
    "(events.start_utc, events.end_utc, events.status = 'canceled') IS DISTINCT FROM "
    "(EXCLUDED.start_utc, EXCLUDED.end_utc, EXCLUDED.status = 'canceled')"
)
_EVENT_UPDATES = {
    "schedule_revision": (
        f"events.schedule_revision + CASE WHEN {_SCHEDULE_CHANGED} THEN 1 ELSE 0 END"
    ),
    "schedule_changed_at": (
        f"CASE WHEN {_SCHEDULE_CHANGED} THEN now() ELSE events.schedule_changed_at END"
    ),
}
_HAS_VENUE = "s.venue_id IS NULL OR EXISTS (SELECT 1 FROM venues v WHERE v.id = s.venue_id)"


def upsert_catalogue(
    conn: sa.Connection, *, events: pl.DataFrame, venues: pl.DataFrame
) -> CatalogueUpsert:
    """Insert or update venues then events, keyed by their upstream ids.

    COPY into temporary tables, then one INSERT ... ON CONFLICT per table: as fast as COPY,
    and safe to rerun every hour. An event whose venue is unknown is left out and named in
    the result, never allowed to fail the batch. `venues` may lack `coordinate_quality`
    (null then).
    """
    quality = (
        pl.col("coordinate_quality")
        if "coordinate_quality" in venues.columns
        else pl.lit(None, dtype=pl.Utf8).alias("coordinate_quality")
    )
    written_venues = _upsert(
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
            quality,
        ),
    )
    staged = events.select(
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
    )
    written_events = _upsert(
        conn,
        "events",
        staged,
        where=_HAS_VENUE,
        inserted={"schedule_changed_at": "now()"},
        updates=_EVENT_UPDATES,
    )
    orphans = conn.execute(
        sa.text(f"SELECT s.id FROM _stage_events s WHERE NOT ({_HAS_VENUE}) ORDER BY s.id")
    )
    return CatalogueUpsert(
        venues=written_venues,
        events=written_events,
        orphaned_event_ids=[str(row[0]) for row in orphans],
    )


def _upsert(
    conn: sa.Connection,
    table: str,
    frame: pl.DataFrame,
    *,
    where: str = "TRUE",
    inserted: dict[str, str] | None = None,
    updates: dict[str, str] | None = None,
) -> int:
    """Stage `frame` in `_stage_<table>` and upsert the rows of it that satisfy `where`
    (SQL over the staging alias `s`); `inserted` / `updates` are extra columns as SQL."""
    staging = f"_stage_{table}"
    conn.execute(
        sa.text(f"CREATE TEMP TABLE {staging} (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DROP")
    )
    copy_frame(conn, staging, frame)
    extra = inserted or {}
    columns = ", ".join([*frame.columns, *extra])
    values = ", ".join([*(f"s.{c}" for c in frame.columns), *extra.values()])
    sets = [f"{c} = EXCLUDED.{c}" for c in frame.columns if c != "id"]
    sets += [f"{c} = {expression}" for c, expression in (updates or {}).items()]
    result = conn.execute(
        sa.text(
            f"INSERT INTO {table} ({columns}) SELECT {values} FROM {staging} s WHERE {where} "
            f"ON CONFLICT (id) DO UPDATE SET {', '.join(sets)}, updated_at = now()"
        )
    )
    return result.rowcount


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
