"""Candidate models: popularity by metro (baseline, cold start) and implicit ALS."""

import time
from datetime import UTC, datetime

import dagster as dg
import polars as pl

from features.catalogue import upcoming_active
from models.als import ALSModel
from models.popularity import PopularityModel
from pipelines.assets.common import frame_output
from pipelines.resources import LocalStorage

ALS_ARTIFACT = "als_model.npz"


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


@dg.asset(group_name="models", kinds={"implicit", "numpy"})
def als_model(interactions: pl.DataFrame, storage: LocalStorage) -> dg.MaterializeResult:
    """Implicit ALS factors of users and events, saved as .npz beside the warehouse."""
    started = time.perf_counter()
    model = ALSModel().fit(interactions)
    path = storage.models / ALS_ARTIFACT
    model.save(path)
    fitted = model.fitted
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(path)),
            "users": len(fitted.user_ids),
            "events": len(fitted.event_ids),
            "factors": model.params.factors,
            "fit_seconds": round(time.perf_counter() - started, 3),
        }
    )
