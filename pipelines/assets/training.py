"""Nightly training of the feed's learned parts, strictly before a holdout cutoff.

Everything after the cutoff is kept for `ranking_evaluation`, so what the registry versions is
exactly what was evaluated. The fast-moving parts (popularity, content, geo and every feature)
are refitted at publish time on all the data, so holding the last days out costs the published
feed little.
"""

from datetime import datetime
from pathlib import Path

import dagster as dg
import polars as pl

from features.interactions import interactions
from features.point_in_time import UTC_US
from models.als import ALSModel
from pipelines.assets.common import app_tables, frame_output, in_utc
from pipelines.resources import LocalStorage
from recommender import fitting
from recommender.holdout import holdout_cutoff

ALS_ARTIFACT = "als_model.npz"
RANKER_ARTIFACT = "ranker.txt"
CANDIDATES_PER_SOURCE = 100


class HoldoutConfig(dg.Config):
    holdout_days: float = 7.0


def challenger_dir(storage: LocalStorage) -> Path:
    """Where this run's freshly trained artifacts wait for evaluation and the gate."""
    return storage.folder("models", "challenger")


def cutoff_of(window: pl.DataFrame) -> datetime:
    """The cutoff stored by `training_window`, as an aware UTC datetime."""
    value: datetime = window.select(pl.col("cutoff").cast(UTC_US)).item()
    return value


@dg.asset(group_name="features", kinds={"polars", "duckdb"})
def training_window(config: HoldoutConfig, app_swipes: pl.DataFrame) -> dg.Output[pl.DataFrame]:
    """The cutoff between training data and the evaluation holdout (the newest days)."""
    swipes = in_utc(app_swipes)
    cutoff = holdout_cutoff(swipes, config.holdout_days)
    held = int((swipes["created_at"] >= cutoff).sum())
    frame = pl.DataFrame(
        {
            "cutoff": [cutoff],
            "holdout_days": [config.holdout_days],
            "train_swipes": [swipes.height - held],
            "holdout_swipes": [held],
        },
        schema={
            "cutoff": UTC_US,
            "holdout_days": pl.Float64,
            "train_swipes": pl.Int64,
            "holdout_swipes": pl.Int64,
        },
    )
    return frame_output(frame, cutoff=cutoff.isoformat(), holdout_swipes=held)


@dg.asset(group_name="models", kinds={"implicit", "numpy"})
def als_model(
    training_window: pl.DataFrame,
    app_swipes: pl.DataFrame,
    app_attendance: pl.DataFrame,
    storage: LocalStorage,
) -> dg.MaterializeResult:
    """Implicit ALS on confidence-weighted interactions before the cutoff (the challenger's)."""
    before = cutoff_of(training_window)
    swipes, attendance = in_utc(app_swipes), in_utc(app_attendance)
    model = ALSModel().fit(
        interactions(
            swipes.filter(pl.col("created_at") < before),
            attendance.filter(pl.col("updated_at") < before),
        )
    )
    path = challenger_dir(storage) / ALS_ARTIFACT
    model.save(path)
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(path)),
            "users": len(model.fitted.user_ids),
            "events": len(model.fitted.event_ids),
            "factors": model.params.factors,
        }
    )


@dg.asset(group_name="features", kinds={"polars", "duckdb"})
def ranker_examples(
    training_window: pl.DataFrame,
    app_swipes: pl.DataFrame,
    app_attendance: pl.DataFrame,
    app_friendships: pl.DataFrame,
    events: pl.DataFrame,
    geocoded_venues: pl.DataFrame,
    app_users: pl.DataFrame,
) -> dg.Output[pl.DataFrame]:
    """The swipes of the weeks before the cutoff with point-in-time features and graded labels
    (see recommender.fitting)."""
    tables = app_tables(
        app_swipes, app_attendance, events, geocoded_venues, app_users, app_friendships
    )
    frame = fitting.ranker_examples(cutoff_of(training_window), tables)
    return frame_output(
        frame,
        positives=int((frame["label"] > 0).sum()),
        queries=frame.select("user_id", "created_at").n_unique(),
        window_days=fitting.WINDOW_DAYS,
    )


@dg.asset(group_name="models", kinds={"lightgbm"})
def ranker_model(ranker_examples: pl.DataFrame, storage: LocalStorage) -> dg.MaterializeResult:
    """LightGBM LambdaRank over the swiped cards, early-stopped on the newest days."""
    ranker = fitting.fit_ranker(in_utc(ranker_examples))
    ranker.save(challenger_dir(storage) / RANKER_ARTIFACT)
    top = ranker.feature_importance().head(5)
    return dg.MaterializeResult(
        metadata={
            "validation_ndcg@10": round(float(ranker.validation_ndcg), 4),
            "best_iteration": int(ranker.best_iteration),
            "top_features": dg.MetadataValue.json(top["feature"].to_list()),
        }
    )
