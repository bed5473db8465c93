"""Event cards: the few event fields a feed item shows, read from the app database."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import polars as pl
import sqlalchemy as sa

from store.db import read_frame

CARD_SCHEMA: dict[str, pl.DataType] = {
    "event_id": pl.Utf8(),
    "name": pl.Utf8(),
    "category": pl.Utf8(),
    "start_utc": pl.Datetime("us", "UTC"),
    "end_utc": pl.Datetime("us", "UTC"),
    "venue_name": pl.Utf8(),
    "metro": pl.Utf8(),
    "is_free": pl.Boolean(),
    "price_min_cents": pl.Int64(),
    "is_active": pl.Boolean(),
}

_CARD_SELECT = """
SELECT e.id AS event_id, e.name, e.category, e.start_utc, e.end_utc, v.name AS venue_name,
       e.metro, e.is_free, e.price_min_cents, e.is_active
FROM events AS e LEFT JOIN venues AS v ON v.id = e.venue_id
"""


@dataclass(frozen=True)
class FeedItem:
    """One ranked event in a user's feed, with what the app shows on its card."""

    event_id: str
    rank: int
    score: float
    reason: str
    name: str
    category: str
    start_utc: datetime
    end_utc: datetime | None
    venue_name: str | None
    metro: str
    is_free: bool
    price_min_cents: int | None


def load_cards(conn: sa.Connection, event_ids: Sequence[str]) -> pl.DataFrame:
    """Cards for `event_ids` (unknown ids are simply absent)."""
    if not event_ids:
        return pl.DataFrame(schema=CARD_SCHEMA)
    quoted = ", ".join("'" + event_id.replace("'", "''") + "'" for event_id in set(event_ids))
    return read_frame(conn, f"{_CARD_SELECT} WHERE e.id IN ({quoted})", CARD_SCHEMA)
