"""What the online metrics read: a window of impressions with the outcomes attributed to them.

Against the impressions contract of the issue "Learn from production": `impressions` is
partitioned by day on `served_at`, so the window's bounds on `served_at` let Postgres scan only
the window's partitions. A swipe or RSVP answers an impression through its `impression_id`
(set only when the API verified it), so the outcomes are joined on that id alone.

- `action` is the impression's latest attributed swipe (server time, then id): a user who
  liked and then passed the same card counts once, with what they did last.
- `going` is whether the user's RSVP to the event is "going" now and carries the impression's
  id (attendance keeps one row per user and event, its current answer).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

import polars as pl
import sqlalchemy as sa

from store.db import read_frame

UTC_TIME = pl.Datetime("us", "UTC")
# Popularity for novelty: likes in the four weeks before the window (what was popular before
# anything in the window was shown, the same for every arm).
POPULARITY_DAYS: Final = 28

IMPRESSION_OUTCOMES_SCHEMA: dict[str, pl.DataType] = {
    "impression_id": pl.Utf8(),
    "served_at": UTC_TIME,
    "user_id": pl.Int64(),
    "event_id": pl.Utf8(),
    "rank": pl.Int32(),
    "run_id": pl.Utf8(),
    "model_version": pl.Utf8(),
    "experiment": pl.Utf8(),
    "arm": pl.Utf8(),
    "propensity": pl.Float64(),
    "action": pl.Utf8(),
    "going": pl.Boolean(),
}
POPULARITY_SCHEMA: dict[str, pl.DataType] = {"event_id": pl.Utf8(), "count": pl.Int64()}


@dataclass(frozen=True)
class OnlineWindow:
    """Everything the online metrics of [start, end) need from Postgres."""

    start: datetime
    end: datetime
    impressions: pl.DataFrame  # IMPRESSION_OUTCOMES_SCHEMA, one row per impression
    catalogue_size: int  # events active and not started at `start`: what could be shown
    popularity: pl.DataFrame  # event_id, count: likes in the POPULARITY_DAYS before `start`


def _literal(moment: datetime) -> str:
    """A timestamptz literal (COPY takes no bind parameters; datetimes format safely)."""
    if moment.tzinfo is None:
        raise ValueError(f"{moment!r} has no time zone")
    return f"'{moment.astimezone(UTC).isoformat()}'::timestamptz"


def _outcomes_query(since: str, where: str, order: str) -> str:
    """Impressions matching `where` with their attributed swipe and RSVP (see the module
    docstring); `since` bounds the swipes read (none answers an impression served before it)."""
    return f"""
        SELECT i.impression_id::text AS impression_id, i.served_at, i.user_id, i.event_id,
               i.rank, i.run_id, i.model_version, i.experiment, i.arm, i.propensity,
               s.action, (a.user_id IS NOT NULL) AS going
        FROM impressions AS i
        LEFT JOIN (
            SELECT DISTINCT ON (impression_id) impression_id, action
            FROM swipes
            WHERE impression_id IS NOT NULL AND created_at >= {since}
            ORDER BY impression_id, created_at DESC, id DESC
        ) AS s ON s.impression_id = i.impression_id
        LEFT JOIN event_attendance AS a
            ON a.user_id = i.user_id AND a.event_id = i.event_id
            AND a.impression_id = i.impression_id AND a.status = 'going'
        WHERE {where}
        ORDER BY {order}
    """


def read_impression_outcomes(conn: sa.Connection, start: datetime, end: datetime) -> pl.DataFrame:
    """Impressions served in [start, end) with their attributed swipe and RSVP."""
    low, high = _literal(start), _literal(end)
    query = _outcomes_query(
        low, f"i.served_at >= {low} AND i.served_at < {high}", "i.user_id, i.served_at, i.rank"
    )
    return read_frame(conn, query, IMPRESSION_OUTCOMES_SCHEMA)


def user_impression_outcomes(
    conn: sa.Connection, user_id: int, since: datetime, limit: int
) -> pl.DataFrame:
    """One user's newest `limit` impressions served since `since`, with the same outcomes as
    `read_impression_outcomes` (the admin page's history; the (user_id, served_at) index and
    the bound on `served_at` keep it to that user's rows of the recent partitions)."""
    if limit <= 0:
        raise ValueError(f"limit must be positive, got {limit}")
    low = _literal(since)
    where = f"i.user_id = {int(user_id)} AND i.served_at >= {low}"
    query = _outcomes_query(low, where, f"i.served_at DESC, i.rank LIMIT {int(limit)}")
    return read_frame(conn, query, IMPRESSION_OUTCOMES_SCHEMA)


def catalogue_size(conn: sa.Connection, start: datetime) -> int:
    """Events active and not started at `start`: the pool coverage is measured against."""
    count = conn.execute(
        sa.text("SELECT count(*) FROM events WHERE is_active AND start_utc > :start"),
        {"start": start},
    ).scalar_one()
    return int(count)


def like_counts(conn: sa.Connection, start: datetime, end: datetime) -> pl.DataFrame:
    """event_id, count: likes and superlikes stored in [start, end)."""
    query = f"""
        SELECT event_id, count(*) AS count FROM swipes
        WHERE action IN ('like', 'superlike')
          AND created_at >= {_literal(start)} AND created_at < {_literal(end)}
        GROUP BY event_id ORDER BY event_id
    """
    return read_frame(conn, query, POPULARITY_SCHEMA)


def read_online_window(conn: sa.Connection, start: datetime, end: datetime) -> OnlineWindow:
    """The impressions of [start, end) with their outcomes, the catalogue and popularity."""
    if end <= start:
        raise ValueError(f"empty window: {start.isoformat()} to {end.isoformat()}")
    return OnlineWindow(
        start=start,
        end=end,
        impressions=read_impression_outcomes(conn, start, end),
        catalogue_size=catalogue_size(conn, start),
        popularity=like_counts(conn, start - timedelta(days=POPULARITY_DAYS), start),
    )
