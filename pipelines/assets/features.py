"""Features built from the warehouse's app data."""

import dagster as dg
import polars as pl

from features.interactions import interactions as build_interactions
from pipelines.assets.common import frame_output


@dg.asset(group_name="features", kinds={"polars", "duckdb"})
def interactions(app_swipes: pl.DataFrame, app_attendance: pl.DataFrame) -> dg.Output[pl.DataFrame]:
    """One implicit-feedback weight per (user, event) from swipes and RSVPs."""
    frame = build_interactions(app_swipes, app_attendance)
    return frame_output(frame, positive_pairs=int(frame["liked"].sum()))
