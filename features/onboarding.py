"""Onboarding categories: the event categories a user ticked at signup, as plain rows.

Why a module of its own: the content model (cold-start profiles), the ranker feature
(`onboarding_match`) and the feed's reasons all read the same answer, so they must agree on
what counts as a pick. A users frame without the column (older callers), a null list, null
or blank entries and duplicates all reduce to "no pick", never to an error.

Picks are values of the events' `category` column and are matched exactly, the way the app
stores what its category screen showed.
"""

from __future__ import annotations

import polars as pl

ONBOARDING_COLUMN = "onboarding_categories"
PICKS_SCHEMA: dict[str, pl.DataType] = {"user_id": pl.Int64(), "category": pl.Utf8()}


def onboarding_picks(users: pl.DataFrame) -> pl.DataFrame:
    """One row per (user_id, category) a user ticked; empty when `users` lacks the column."""
    if ONBOARDING_COLUMN not in users.columns:
        return pl.DataFrame(schema=PICKS_SCHEMA)
    return (
        users.select(
            pl.col("user_id").cast(pl.Int64),
            pl.col(ONBOARDING_COLUMN).cast(pl.List(pl.Utf8)).alias("category"),
        )
        .explode("category")
        .filter(pl.col("category").str.strip_chars().str.len_chars() > 0)
        .unique(maintain_order=True)
    )
