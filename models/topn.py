"""Per-user top-N lists: a personalised model first, popularity to fill and for cold users."""

from __future__ import annotations

import polars as pl

from models.base import RECS_SCHEMA

TOPN_SCHEMA: dict[str, pl.DataType] = {**RECS_SCHEMA, "reason": pl.Utf8()}


def blend(sources: list[tuple[str, pl.DataFrame]], n: int) -> pl.DataFrame:
    """Merge ranked lists in priority order, without duplicates, into one list per user.

    `sources` is [(reason, recs)], highest priority first. A user's list takes the first
    source's items in its order, then fills from the next source with events not yet
    listed, until `n`. Scores are kept as each model produced them; only `rank` orders.
    """
    tagged = [
        recs.select("user_id", "event_id", "score", "rank").with_columns(
            reason=pl.lit(reason), priority=pl.lit(priority, dtype=pl.Int32)
        )
        for priority, (reason, recs) in enumerate(sources)
    ]
    if not tagged:
        return pl.DataFrame(schema=TOPN_SCHEMA)
    return (
        pl.concat(tagged)
        .lazy()
        .sort("user_id", "priority", "rank")
        .unique(subset=["user_id", "event_id"], keep="first", maintain_order=True)
        .with_columns(rank=pl.int_range(1, pl.len() + 1).over("user_id").cast(pl.Int32))
        .filter(pl.col("rank") <= n)
        .select(list(TOPN_SCHEMA))
        .collect()
        .cast(TOPN_SCHEMA)  # type: ignore[arg-type]
    )
