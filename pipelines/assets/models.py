"""Feed material and the popularity baseline: refitted on all data at every run."""

from datetime import UTC, datetime

import dagster as dg
import polars as pl

from features.catalogue import upcoming_active
from models.popularity import PopularityModel
from pipelines.assets.common import frame_output


class FeedConfig(dg.Config):
    size: int = 50


@dg.asset(group_name="features", kinds={"polars", "duckdb"})
def feed_candidates(events: pl.DataFrame) -> dg.Output[pl.DataFrame]:
    """Events a feed may show right now: upcoming and active."""
    return frame_output(upcoming_active(events, datetime.now(UTC)))


@dg.asset(group_name="models", kinds={"polars", "duckdb"})
def popularity_by_metro(
    config: FeedConfig, interactions: pl.DataFrame, feed_candidates: pl.DataFrame
) -> dg.Output[pl.DataFrame]:
    """The most wanted upcoming events of each metro: the baseline and the cold start."""
    model = PopularityModel().fit(interactions)
    return frame_output(model.by_metro(feed_candidates, config.size))
