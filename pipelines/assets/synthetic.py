"""The synthetic city's people: stand-ins for the app's users on a laptop.

The city's catalogue reaches the pipeline through the real Eventbrite and Maps clients, served
by the local fake (`sources.fakes`); its behaviour goes into Postgres through `store`, where
the real app would have written it. Its hidden tastes give the evaluation an oracle.
"""

from datetime import datetime

import dagster as dg
import polars as pl
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from pipelines.assets.common import frame_output, in_utc
from pipelines.assets.training import cutoff_of
from pipelines.resources import PostgresResource, RedisResource, SyntheticCityResource
from sources.synthetic.behaviour import Activity, oracle_top_n, simulate
from store.app_data import replace_activity
from store.live_cache import touch_catalogue
from store.schema import devices, notification_preferences, users

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


def city_now(context: dg.AssetExecutionContext) -> datetime | None:
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
    now = city_now(context) if city.enabled else None
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


# Share of synthetic users with the app installed (a push token) and with an email address
# opted in to the weekly digest: enough for the demo to show every kind of notification.
PUSH_USER_EVERY = 4
DIGEST_EMAIL_EVERY = 10


@dg.asset(group_name="synthetic", deps=["synthetic_activity"], kinds={"python", "postgres"})
def synthetic_devices(
    city: SyntheticCityResource, postgres: PostgresResource
) -> dg.MaterializeResult:
    """Phones and email addresses of the synthetic users, as the app's sign-up would store
    them: an Expo push token for every 4th user, an opted-in address for every 10th, so the
    notification and email assets have somebody to reach (in the demo, through local fakes)."""
    if not city.enabled:
        return dg.MaterializeResult(metadata={"devices": 0, "digest_emails": 0})
    with postgres.engine().begin() as conn:
        user_ids = [
            int(u) for u in conn.execute(sa.select(users.c.id).order_by(users.c.id)).scalars()
        ]
        phones = [u for u in user_ids if u % PUSH_USER_EVERY == 0]
        readers = [u for u in user_ids if u % DIGEST_EMAIL_EVERY == 0]
        if phones:
            conn.execute(
                insert(devices).on_conflict_do_nothing(),
                [
                    {
                        "expo_push_token": f"ExponentPushToken[synthetic-{u}]",
                        "user_id": u,
                        "platform": "ios" if u % 2 else "android",
                    }
                    for u in phones
                ],
            )
        if readers:
            statement = insert(notification_preferences)
            conn.execute(
                statement.on_conflict_do_update(
                    index_elements=[notification_preferences.c.user_id],
                    set_={
                        "email": statement.excluded.email,
                        "weekly_digest_email": statement.excluded.weekly_digest_email,
                    },
                ),
                [
                    {"user_id": u, "email": f"user{u}@godo.example", "weekly_digest_email": True}
                    for u in readers
                ],
            )
    return dg.MaterializeResult(metadata={"devices": len(phones), "digest_emails": len(readers)})
