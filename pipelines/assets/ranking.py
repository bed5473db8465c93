"""The published lists: the champion model, and each experiment arm's model or rule, over
fresh candidates and fresh features."""

from datetime import UTC, datetime

import dagster as dg
import polars as pl

from features.tables import AppTables
from pipelines.assets.common import app_tables, frame_output
from pipelines.assets.evaluation import champion_models
from pipelines.assets.models import FeedConfig
from pipelines.assets.training import CANDIDATES_PER_SOURCE
from pipelines.resources import LocalStorage, MLflowResource
from recommender import feed
from recommender.holdout import StageModels


@dg.asset(group_name="recommendations", deps=["champion_model"], kinds={"polars", "duckdb"})
def ranked_feed(
    context: dg.AssetExecutionContext,
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
    without learned state and every feature is computed on all data as of now. Users are
    ranked in chunks, so memory follows the chunk, not the user base. The explored slots
    (`models.rerank.FEED_EXPLORATION`) are drawn with this run's id as the seed.
    """
    version, champion = champion_models(mlflow.registry(), storage)
    tables = app_tables(
        app_swipes, app_attendance, events, geocoded_venues, app_users, app_friendships
    )
    final, proposed = ranked_with(
        champion, tables, interactions, feed_candidates, config.size, context.run.run_id
    )
    return frame_output(
        final,
        candidates=proposed,
        users=final["user_id"].n_unique(),
        model_version=version,
        exploration_seed=context.run.run_id,
        stochastic_cards=final.filter(pl.col("propensity") < 1.0).height,
    )


def ranked_with(
    models: StageModels,
    tables: AppTables,
    interactions: pl.DataFrame,
    eligible: pl.DataFrame,
    size: int,
    seed: str,
) -> tuple[pl.DataFrame, int]:
    """Every user's final list by `models` as of now; (lists, candidates proposed).

    `seed` (a run id) seeds the explored slots' draw."""
    return feed.publishable(
        als=models.als,
        ranker=models.ranker,
        tables=tables,
        interactions=interactions,
        eligible=eligible,
        now=datetime.now(UTC),
        per_source=CANDIDATES_PER_SOURCE,
        n=size,
        run_id=seed,
    )
