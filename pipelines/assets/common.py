"""Small helpers shared by the asset modules."""

from typing import Any

import dagster as dg
import polars as pl

from features.tables import AppTables, in_utc

__all__ = ["app_tables", "frame_output", "in_utc"]


def frame_output(frame: pl.DataFrame, **metadata: Any) -> dg.Output[pl.DataFrame]:
    """An output with the row count the UI and the demo report show."""
    return dg.Output(frame, metadata={"dagster/row_count": frame.height, **metadata})


def app_tables(
    app_swipes: pl.DataFrame,
    app_attendance: pl.DataFrame,
    events: pl.DataFrame,
    geocoded_venues: pl.DataFrame,
    app_users: pl.DataFrame,
    app_friendships: pl.DataFrame,
) -> AppTables:
    """The warehouse assets as one value, timestamps in UTC (named as the assets are)."""
    return AppTables.of(
        swipes=app_swipes,
        attendance=app_attendance,
        events=events,
        venues=geocoded_venues,
        users=app_users,
        friendships=app_friendships,
    )
