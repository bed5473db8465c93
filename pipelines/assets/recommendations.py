"""Per-user ranked lists and their publication to Redis and Postgres."""

import dagster as dg
import polars as pl

from models.als import ALSModel
from models.popularity import PopularityModel
from models.topn import blend
from pipelines.assets.common import frame_output
from pipelines.assets.models import ALS_ARTIFACT, FeedConfig
from pipelines.resources import LocalStorage, PostgresResource, RedisResource
from store.publish import publish_run

REASON_ALS = "people_like_you"
REASON_POPULAR = "popular_near_you"


@dg.asset(group_name="recommendations", deps=["als_model"], kinds={"polars", "duckdb"})
def user_top_n(
    config: FeedConfig,
    app_users: pl.DataFrame,
    interactions: pl.DataFrame,
    feed_candidates: pl.DataFrame,
    storage: LocalStorage,
) -> dg.Output[pl.DataFrame]:
    """Each user's top N upcoming, active, not-yet-swiped events: ALS first, popularity fill."""
    seen = interactions.select("user_id", "event_id")
    users = app_users.select("user_id", "metro")
    als = ALSModel.load(storage.models / ALS_ARTIFACT).recommend(
        users=users, candidates=feed_candidates, exclude=seen, n=config.size
    )
    popular = (
        PopularityModel()
        .fit(interactions)
        .recommend(users=users, candidates=feed_candidates, exclude=seen, n=config.size)
    )
    top = blend([(REASON_ALS, als), (REASON_POPULAR, popular)], config.size)
    return frame_output(
        top, users=top["user_id"].n_unique(), from_als=int((top["reason"] == REASON_ALS).sum())
    )


@dg.asset(group_name="recommendations", kinds={"redis", "postgres"})
def published_feed(
    context: dg.AssetExecutionContext,
    config: FeedConfig,
    ranked_feed: pl.DataFrame,
    interactions: pl.DataFrame,
    feed_candidates: pl.DataFrame,
    postgres: PostgresResource,
    redis: RedisResource,
) -> dg.MaterializeResult:
    """The ranked feed goes to Redis (hot) and Postgres (durable); one pointer flip serves it.

    `user_top_n` (ALS + popularity) stays as the first-stage baseline the ranker must beat.
    """
    fallback = PopularityModel().fit(interactions).overall(feed_candidates, config.size)
    result = publish_run(
        engine=postgres.engine(),
        redis_client=redis.client(),
        keys=redis.key_layout(),
        run_id=context.run.run_id,
        model="candidates+lambdarank+rerank",
        recommendations=ranked_feed,
        fallback=fallback.with_columns(reason=pl.lit("popular")),
        ttl_seconds=redis.feed_ttl_seconds,
    )
    return dg.MaterializeResult(
        metadata={
            "run_id": result.run_id,
            "dagster/row_count": result.n_rows,
            "users": result.n_users,
            "fallback_items": result.n_fallback,
            "publish_seconds": round(result.seconds, 3),
        }
    )
