"""Publication of the ranked lists to Redis and Postgres: each experiment arm's, then the
champion's."""

import dagster as dg
import polars as pl

from models.popularity import PopularityModel
from pipelines.assets.common import app_tables
from pipelines.assets.evaluation import version_models
from pipelines.assets.models import FeedConfig
from pipelines.assets.ranking import ranked_with
from pipelines.resources import LocalStorage, MLflowResource, PostgresResource, RedisResource
from store.experiments import Arm, serving_experiments, sync_serving
from store.live_cache import warm_friend_ids
from store.publish import publish_run


def _fallback(interactions: pl.DataFrame, feed_candidates: pl.DataFrame, size: int) -> pl.DataFrame:
    """The cold-start list every run carries: the most popular upcoming events anywhere."""
    return (
        PopularityModel()
        .fit(interactions)
        .overall(feed_candidates, size)
        .with_columns(reason=pl.lit("popular"))
    )


@dg.asset(group_name="recommendations", kinds={"redis", "postgres"})
def published_arms(
    context: dg.AssetExecutionContext,
    config: FeedConfig,
    ranked_feed: pl.DataFrame,
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
    postgres: PostgresResource,
    redis: RedisResource,
) -> dg.MaterializeResult:
    """Each arm of the experiments that serve (now or later) ranked and published as a run
    of its own, flipping the arm's own pointer once the run is complete.

    A model arm ranks with its registry version's artifacts, loaded as the champion's are
    (an arm on the version `ranked_feed` was ranked with reuses it); the popularity rule serves
    each user their metro's most popular events. Arms are ranked and published one at a
    time, so memory follows one arm's lists.
    """
    engine, client, keys = postgres.engine(), redis.client(), redis.key_layout()
    with engine.connect() as conn:
        experiments = serving_experiments(conn)
    registry = mlflow.registry()
    # The version `ranked_feed` was ranked with (the alias may have moved since).
    ranked_by = _ranked_by(context)
    tables = app_tables(
        app_swipes, app_attendance, events, geocoded_venues, app_users, app_friendships
    )
    fallback = _fallback(interactions, feed_candidates, config.size)

    def lists_of(experiment: str, arm: Arm) -> tuple[pl.DataFrame, str]:
        if arm.serves.kind == "rule":  # validated at creation: popularity is the only rule
            popular = PopularityModel().fit(interactions)
            frame = popular.recommend(
                users=app_users,
                candidates=feed_candidates,
                exclude=interactions.select("user_id", "event_id"),
                n=config.size,
            )
            return frame.with_columns(reason=pl.lit("popular")), arm.serves.ref
        info = registry.resolve(arm.serves.ref)
        if info is None:
            raise dg.Failure(
                description=f"experiment {experiment!r}, arm {arm.name!r}: the registry has no "
                f"version or alias {arm.serves.ref!r} any more"
            )
        if str(info.version) == ranked_by:
            return ranked_feed, ranked_by
        models = version_models(registry, storage, info.version)
        seed = f"{context.run.run_id}.{experiment}.{arm.name}"
        frame, _ = ranked_with(models, tables, interactions, feed_candidates, config.size, seed)
        return frame, str(info.version)

    published: dict[str, str] = {}
    for experiment in experiments:
        for arm in experiment.arms:
            lists, version = lists_of(experiment.name, arm)
            result = publish_run(
                engine=engine,
                redis_client=client,
                keys=keys,
                # '.' is in no experiment or arm name, so the id is unambiguous.
                run_id=f"{context.run.run_id}.{experiment.name}.{arm.name}",
                model=f"experiment {experiment.name}, arm {arm.name}: {arm.serves}",
                recommendations=lists.select(
                    "user_id",
                    "rank",
                    "event_id",
                    "score",
                    "reason",
                    *(["propensity"] if "propensity" in lists.columns else []),
                ),
                fallback=fallback,
                ttl_seconds=redis.feed_ttl_seconds,
                experiment=experiment.name,
                arm=arm.name,
                model_version=version,
            )
            context.log.info(
                "experiment %s, arm %s (%s, version %s): run %s, %d rows",
                experiment.name,
                arm.name,
                arm.serves,
                version,
                result.run_id,
                result.n_rows,
            )
            published[f"{experiment.name}/{arm.name}"] = result.run_id
    return dg.MaterializeResult(
        metadata={"arms": len(published), "arm_runs": dg.MetadataValue.json(published)}
    )


@dg.asset(group_name="recommendations", deps=["published_arms"], kinds={"redis", "postgres"})
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

    After `published_arms`: the champion's run flips `feed:current` last, so when clients
    hear `feed_refreshed` every experiment arm is live too.
    """
    fallback = _fallback(interactions, feed_candidates, config.size)
    engine, client, keys = postgres.engine(), redis.client(), redis.key_layout()
    result = publish_run(
        engine=engine,
        redis_client=client,
        keys=keys,
        run_id=context.run.run_id,
        model="candidates+lambdarank+rerank",
        recommendations=ranked_feed,
        fallback=fallback,
        ttl_seconds=redis.feed_ttl_seconds,
        model_version=_ranked_by(context),
    )
    # Readers assign users from Redis's copy of the experiments: rewrite it with every
    # publish, so a lost key (a flushed Redis) heals here.
    experiments = sync_serving(engine=engine, redis_client=client, keys=keys)
    # The API reads each viewer's friends from Redis; storing them now spares Postgres the
    # first feed read of every user in the run.
    users = ranked_feed.get_column("user_id").unique().sort().to_list()
    warmed = warm_friend_ids(engine, client, keys, users)
    return dg.MaterializeResult(
        metadata={
            "run_id": result.run_id,
            "dagster/row_count": result.n_rows,
            "users": result.n_users,
            "fallback_items": result.n_fallback,
            "publish_seconds": round(result.seconds, 3),
            "friend_lists_stored": warmed,
            "experiments_serving": experiments,
        }
    )


def _ranked_by(context: dg.AssetExecutionContext) -> str | None:
    """The registry version that ranked the stored `ranked_feed` (its materialization says)."""
    event = context.instance.get_latest_materialization_event(dg.AssetKey("ranked_feed"))
    materialization = event.asset_materialization if event is not None else None
    value = materialization.metadata.get("model_version") if materialization else None
    return None if value is None else str(value.value)
