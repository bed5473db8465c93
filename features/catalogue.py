"""Which events may be recommended right now."""

from __future__ import annotations

from datetime import datetime

import polars as pl


def upcoming_active(events: pl.DataFrame, now: datetime) -> pl.DataFrame:
    """Events that have not started and are not cancelled or ended: the only feed material.

    Returns event_id, metro and start_utc; `now` is explicit so runs are reproducible.
    """
    return (
        events.lazy()
        .filter(pl.col("is_active"))
        # Compare in UTC whatever zone name the frame carries (DuckDB returns "Etc/UTC").
        .filter(
            pl.col("start_utc").dt.convert_time_zone("UTC")
            > pl.lit(now).dt.convert_time_zone("UTC")
        )
        .select("event_id", "metro", "start_utc")
        .sort("event_id")
        .collect()
    )
