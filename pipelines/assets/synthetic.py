"""The synthetic city's people: stand-ins for the app's users on a laptop.

The city's catalogue reaches the pipeline through the real Eventbrite and Maps clients, served
by the local fake (`sources.fakes`); its behaviour goes into Postgres through `store`, where
the real app would have written it. Its hidden tastes give the evaluation an oracle.
"""

from datetime import datetime

import dagster as dg
import polars as pl

from pipelines.assets.common import frame_output, in_utc
from pipelines.assets.training import cutoff_of
from pipelines.resources import PostgresResource, RedisResource, SyntheticCityResource
from sources.synthetic.behaviour import Activity, oracle_top_n, simulate
from store.app_data import replace_activity
from store.live_cache import touch_catalogue

ORACLE_LENGTH = 20
ORACLE_SCHEMA = {
    "user_id": pl.Int64,
    "rank": pl.Int32,
    "event_id": pl.Utf8,
    "utility": pl.Float64,
}


@dg.asset(group_name="synthetic", deps=["app_catalogue"], kinds={"python", "postgres"})
def synthetic_activity(
    city: SyntheticCityResource, postgres: PostgresResource, redis: RedisResource
) -> dg.MaterializeResult:
    """Users, friendships, swipes and RSVPs simulated from hidden tastes, written to Postgres.

    Replacing RSVPs and friendships changes every card's counts: the API caches are dropped.
    """
    world = city.world()
    activity = simulate(world, city.behaviour_config())
    with postgres.engine().begin() as conn:
        counts = replace_activity(
            conn,
            users=world.users,
            friendships=world.friendships,
            swipes=activity.swipes,
            attendance=activity.attendance,
        )
    invalidated = touch_catalogue(redis.client(), redis.key_layout())
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": counts["swipes"],
            "city_now": world.config.now.isoformat(),
            "api_caches_invalidated": invalidated,
            **counts,
        }
    )


def _city_now(context: dg.AssetExecutionContext) -> datetime | None:
    """The `now` the stored city was simulated at, from its latest materialization."""
    event = context.instance.get_latest_materialization_event(dg.AssetKey("synthetic_activity"))
    if event is None or event.asset_materialization is None:
        return None
    value = event.asset_materialization.metadata.get("city_now")
    return None if value is None else datetime.fromisoformat(str(value.value))


@dg.asset(group_name="synthetic", deps=["synthetic_activity"], kinds={"python"})
def synthetic_oracle(
    context: dg.AssetExecutionContext,
    training_window: pl.DataFrame,
    app_swipes: pl.DataFrame,
    app_attendance: pl.DataFrame,
    city: SyntheticCityResource,
) -> dg.Output[pl.DataFrame]:
    """Each holdout user's best events at the cutoff by hidden true utility: the ceiling.

    Empty where there is no synthetic city (production): the evaluation then has no oracle row.
    """
    now = _city_now(context) if city.enabled else None
    if now is None:
        return frame_output(pl.DataFrame(schema=ORACLE_SCHEMA), note="no synthetic city")
    cutoff = cutoff_of(training_window)
    swipes, attendance = in_utc(app_swipes), in_utc(app_attendance)
    users = swipes.filter(pl.col("created_at") >= cutoff)["user_id"].unique().sort()
    before = Activity(
        config=city.behaviour_config(),
        swipes=swipes.filter(pl.col("created_at") < cutoff),
        attendance=attendance.filter(pl.col("updated_at") < cutoff),
        impressions=pl.DataFrame(),
    )
    oracle = oracle_top_n(city.world(now), before, users.to_numpy(), ORACLE_LENGTH, now=cutoff)
    return frame_output(oracle.select(list(ORACLE_SCHEMA)).cast(ORACLE_SCHEMA))  # type: ignore[arg-type]
