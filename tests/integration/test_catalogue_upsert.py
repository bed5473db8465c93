"""`upsert_catalogue` against a real Postgres: a bad row never costs the batch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import sqlalchemy as sa

from sources.eventbrite.parse import EVENT_SCHEMA, VENUE_SCHEMA
from store.app_data import upsert_catalogue

START = datetime(2026, 12, 20, 19, tzinfo=UTC)


def _events(*rows: tuple[str, str | None]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "event_id": event_id,
                "name": f"Event {event_id}",
                "venue_id": venue_id,
                "metro": "lisbon",
                "category": "Music",
                "start_utc": START,
                "end_utc": START + timedelta(hours=2),
                "is_free": True,
                "status": "live",
                "is_active": True,
            }
            for event_id, venue_id in rows
        ],
        schema=EVENT_SCHEMA,
    )


def _venues(*ids: str) -> pl.DataFrame:
    return pl.DataFrame(
        [{"venue_id": v, "name": f"Venue {v}", "metro": "lisbon"} for v in ids],
        schema=VENUE_SCHEMA,
    )


def test_an_event_whose_venue_is_unknown_is_left_out_not_the_batch(engine: sa.Engine) -> None:
    """It used to fail the foreign key and roll back every valid event with it."""
    with engine.begin() as conn:
        upsert_catalogue(conn, events=_events(), venues=_venues("v-old"))
    events = _events(("e-1", "v-new"), ("e-2", "v-nowhere"), ("e-3", None), ("e-4", "v-old"))
    with engine.begin() as conn:
        written = upsert_catalogue(conn, events=events, venues=_venues("v-new"))
    assert written.orphaned_event_ids == ["e-2"]
    assert written.events == 3 and written.venues == 1
    with engine.connect() as conn:
        stored = set(conn.execute(sa.text("SELECT id FROM events")).scalars())
    assert stored == {"e-1", "e-3", "e-4"}


def test_the_schedule_revision_moves_only_with_start_end_or_cancellation(
    engine: sa.Engine,
) -> None:
    def upsert(events: pl.DataFrame) -> tuple[int, datetime | None]:
        with engine.begin() as conn:
            upsert_catalogue(conn, events=events, venues=_venues("v"))
            row = conn.execute(
                sa.text("SELECT schedule_revision, schedule_changed_at FROM events")
            ).one()
        return row[0], row[1]

    base = _events(("e", "v"))
    revision, inserted_at = upsert(base)
    assert revision == 0 and inserted_at is not None
    assert upsert(base.with_columns(name=pl.lit("Renamed"), capacity=pl.lit(10))) == (
        0,
        inserted_at,
    )
    later = base.with_columns(pl.col("start_utc") + timedelta(hours=1))
    assert upsert(later)[0] == 1
    assert upsert(later.with_columns(status=pl.lit("started")))[0] == 1
    assert upsert(later.with_columns(status=pl.lit("canceled"), is_active=pl.lit(False)))[0] == 2
