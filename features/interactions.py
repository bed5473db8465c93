"""From swipes and RSVPs to one implicit-feedback weight per (user, event).

The weights encode how strongly an action says "I want this": a pass says nothing positive
(it still marks the event as seen), a like is weak, a superlike strong, and an RSVP is the
strongest signal the app has. They are confidence values for implicit ALS, not ratings.
"""

from __future__ import annotations

import polars as pl

ACTION_WEIGHTS: dict[str, float] = {"pass": 0.0, "like": 1.0, "superlike": 3.0}
ATTENDANCE_WEIGHTS: dict[str, float] = {"not_going": 0.0, "interested": 2.0, "going": 4.0}

INTERACTION_SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.Int64(),
    "event_id": pl.Utf8(),
    "weight": pl.Float64(),
    "n_swipes": pl.UInt32(),
    "liked": pl.Boolean(),
}


def weight_of(column: str, weights: dict[str, float]) -> pl.Expr:
    """Map an action/status column to its weight; unknown values are an error, not zero."""
    return pl.col(column).replace_strict(weights, return_dtype=pl.Float64)


def interactions(swipes: pl.DataFrame, attendance: pl.DataFrame) -> pl.DataFrame:
    """One row per (user, event) the user acted on, with the summed weight.

    `swipes` needs user_id, event_id, action; `attendance` needs user_id, event_id, status.
    Every pair appears, passes included (weight 0), so the frame doubles as the "seen" set.
    """
    from_swipes = swipes.lazy().select(
        "user_id",
        "event_id",
        weight_of("action", ACTION_WEIGHTS).alias("weight"),
        pl.lit(1, dtype=pl.UInt32).alias("n_swipes"),
    )
    from_attendance = attendance.lazy().select(
        "user_id",
        "event_id",
        weight_of("status", ATTENDANCE_WEIGHTS).alias("weight"),
        pl.lit(0, dtype=pl.UInt32).alias("n_swipes"),
    )
    return (
        pl.concat([from_swipes, from_attendance])
        .group_by("user_id", "event_id")
        .agg(pl.col("weight").sum(), pl.col("n_swipes").sum())
        .with_columns(liked=pl.col("weight") > 0)
        .sort("user_id", "event_id")
        .collect()
        .cast(INTERACTION_SCHEMA)  # type: ignore[arg-type]
    )


def positive(interactions_frame: pl.DataFrame) -> pl.DataFrame:
    """Only the pairs with a positive weight: what a collaborative model learns from."""
    return interactions_frame.filter(pl.col("liked"))
