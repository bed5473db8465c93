"""The synthetic city: stands in for Eventbrite and for the app's users on a laptop.

The catalogue goes out as Eventbrite-shaped JSON, so it passes through the real parser; the
behaviour goes into Postgres through `store`, where the real app would have written it.
"""

import json
from datetime import datetime

import dagster as dg

from pipelines.resources import LocalStorage, PostgresResource, SyntheticCityResource
from sources.eventbrite.landing import write_followed
from sources.synthetic.behaviour import simulate
from sources.synthetic.eventbrite_json import write_landing
from store.app_data import replace_activity

MANIFEST = "synthetic-city.json"


@dg.asset(group_name="synthetic", kinds={"python", "json"})
def synthetic_catalogue(city: SyntheticCityResource, storage: LocalStorage) -> dg.MaterializeResult:
    """Venues and events of a seeded synthetic city, landed as Eventbrite API list pages."""
    config = city.city_config()
    world = city.world(config.now)
    pages = write_landing(world, storage.landing)
    followed = world.organizations.select("organization_id", "metro").iter_rows()
    write_followed(storage.landing, dict(followed))
    (storage.landing / MANIFEST).write_text(json.dumps({"now": config.now.isoformat()}))
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": world.events.height,
            "venues": world.venues.height,
            "pages": len(pages),
            "now": config.now.isoformat(),
        }
    )


@dg.asset(group_name="synthetic", deps=["app_catalogue"], kinds={"python", "postgres"})
def synthetic_activity(
    city: SyntheticCityResource, storage: LocalStorage, postgres: PostgresResource
) -> dg.MaterializeResult:
    """Users, friendships, swipes and RSVPs simulated from hidden tastes, written to Postgres."""
    now = datetime.fromisoformat(json.loads((storage.landing / MANIFEST).read_text())["now"])
    world = city.world(now)
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
