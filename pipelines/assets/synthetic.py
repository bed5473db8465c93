"""The synthetic city's people: stand-ins for the app's users on a laptop.

The city's catalogue reaches the pipeline through the real Eventbrite and Maps clients, served
by the local fake (`sources.fakes`); its behaviour goes into Postgres through `store`, where
the real app would have written it.
"""

import dagster as dg

from pipelines.resources import PostgresResource, SyntheticCityResource
from sources.synthetic.behaviour import simulate
from store.app_data import replace_activity


@dg.asset(group_name="synthetic", deps=["app_catalogue"], kinds={"python", "postgres"})
def synthetic_activity(
    city: SyntheticCityResource, postgres: PostgresResource
) -> dg.MaterializeResult:
    """Users, friendships, swipes and RSVPs simulated from hidden tastes, written to Postgres."""
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
    return dg.MaterializeResult(metadata={"dagster/row_count": counts["swipes"], **counts})
