"""Publication of the ranked lists to Redis and Postgres."""

import dagster as dg
import polars as pl

from models.popularity import PopularityModel
from pipelines.assets.models import FeedConfig
from pipelines.resources import PostgresResource, RedisResource
from store.live_cache import warm_friend_ids
from store.publish import publish_run


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
    """The ranked feed goes to Redis (hot) and Postgres (durable); one pointer flip serves it."""
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
    # The API reads each viewer's friends from Redis; storing them now spares Postgres the
    # first feed read of every user in the run.
    users = ranked_feed.get_column("user_id").unique().sort().to_list()
    warmed = warm_friend_ids(postgres.engine(), redis.client(), redis.key_layout(), users)
    return dg.MaterializeResult(
        metadata={
            "run_id": result.run_id,
            "dagster/row_count": result.n_rows,
            "users": result.n_users,
            "fallback_items": result.n_fallback,
            "publish_seconds": round(result.seconds, 3),
            "friend_lists_stored": warmed,
        }
    )
