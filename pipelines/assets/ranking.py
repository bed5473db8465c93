"""Stage two: point-in-time training examples, a LambdaRank model, and the ranked feed."""

from datetime import UTC, datetime

import dagster as dg
import polars as pl

from features.point_in_time import training_examples as build_examples
from models.als import ALSModel
from models.ranker import LambdaRanker
from pipelines import ranking
from pipelines.assets.common import as_utc, frame_output
from pipelines.assets.models import ALS_ARTIFACT, FeedConfig
from pipelines.resources import LocalStorage

RANKER_ARTIFACT = "ranker.txt"
CANDIDATES_PER_SOURCE = 100


@dg.asset(group_name="features", kinds={"polars", "duckdb"})
def training_examples(
    app_swipes: pl.DataFrame,
    app_attendance: pl.DataFrame,
    app_friendships: pl.DataFrame,
    events: pl.DataFrame,
    app_users: pl.DataFrame,
) -> dg.Output[pl.DataFrame]:
    """One row per swipe with features from strictly before it, labelled by the action."""
    frame = build_examples(
        as_utc(app_swipes),
        as_utc(app_attendance),
        app_friendships,
        as_utc(events),
        as_utc(app_users),
    )
    return frame_output(frame, positives=int((frame["label"] > 0).sum()))


@dg.asset(group_name="models", kinds={"lightgbm"})
def ranker_model(training_examples: pl.DataFrame, storage: LocalStorage) -> dg.MaterializeResult:
    """LightGBM LambdaRank over the examples, early-stopped on a later validation window."""
    ranker = LambdaRanker().fit(as_utc(training_examples))
    ranker.save(storage.models / RANKER_ARTIFACT)
    top = ranker.feature_importance().head(5)
    return dg.MaterializeResult(
        metadata={
            "validation_ndcg@10": round(float(ranker.validation_ndcg), 4),
            "best_iteration": int(ranker.best_iteration),
            "top_features": dg.MetadataValue.json(top["feature"].to_list()),
        }
    )


@dg.asset(
    group_name="recommendations", deps=["als_model", "ranker_model"], kinds={"polars", "duckdb"}
)
def ranked_feed(
    config: FeedConfig,
    app_users: pl.DataFrame,
    app_swipes: pl.DataFrame,
    app_attendance: pl.DataFrame,
    app_friendships: pl.DataFrame,
    events: pl.DataFrame,
    geocoded_venues: pl.DataFrame,
    interactions: pl.DataFrame,
    feed_candidates: pl.DataFrame,
    storage: LocalStorage,
) -> dg.Output[pl.DataFrame]:
    """Candidates from every generator, scored by the ranker, re-ranked into the final list."""
    now = datetime.now(UTC)
    users, events_utc = as_utc(app_users), as_utc(events)
    proposed = ranking.candidates(
        als=ALSModel.load(storage.models / ALS_ARTIFACT),
        users=users,
        events=events_utc,
        venues=geocoded_venues,
        interactions=interactions,
        eligible=feed_candidates,
        per_source=CANDIDATES_PER_SOURCE,
    )
    scored = ranking.scored(
        proposed,
        ranker=LambdaRanker.load(storage.models / RANKER_ARTIFACT),
        now=now,
        swipes=as_utc(app_swipes),
        attendance=as_utc(app_attendance),
        friendships=app_friendships,
        events=events_utc,
        users=users,
    )
    final = ranking.feed(
        scored,
        now=now,
        events=events_utc,
        venues=geocoded_venues,
        users=users,
        interactions=interactions,
        n=config.size,
    )
    return frame_output(final, candidates=proposed.height, users=final["user_id"].n_unique())
