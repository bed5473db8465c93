"""The published list: the champion model over fresh candidates and fresh features."""

from datetime import UTC, datetime

import dagster as dg
import polars as pl

from pipelines import ranking
from pipelines.assets.common import frame_output, in_utc
from pipelines.assets.evaluation import champion_models
from pipelines.assets.models import FeedConfig
from pipelines.assets.training import CANDIDATES_PER_SOURCE
from pipelines.resources import LocalStorage, MLflowResource


@dg.asset(group_name="recommendations", deps=["champion_model"], kinds={"polars", "duckdb"})
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
    mlflow: MLflowResource,
) -> dg.Output[pl.DataFrame]:
    """Candidates from every generator, scored by the champion's ranker, re-ranked.

    Only the champion's learned parts (ALS, ranker) come from the registry; every generator
    without learned state and every feature is computed on all data as of now.
    """
    now = datetime.now(UTC)
    version, champion = champion_models(mlflow.registry(), storage)
    users, events_utc = in_utc(app_users), in_utc(events)
    proposed = ranking.candidates(
        als=champion.als,
        users=users,
        events=events_utc,
        venues=geocoded_venues,
        interactions=interactions,
        eligible=feed_candidates,
        per_source=CANDIDATES_PER_SOURCE,
    )
    scored = ranking.scored(
        proposed,
        ranker=champion.ranker,
        now=now,
        swipes=in_utc(app_swipes),
        attendance=in_utc(app_attendance),
        friendships=app_friendships,
        events=events_utc,
        users=users,
        venues=geocoded_venues,
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
    return frame_output(
        final,
        candidates=proposed.height,
        users=final["user_id"].n_unique(),
        model_version=version,
    )
