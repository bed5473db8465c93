"""The synthetic city as the warehouse would hold it, built in memory without any server.

The pipeline takes the long road (fake Eventbrite → real client → parser → Postgres → DuckDB);
benchmarks and model tests need the same frames in seconds and many times over, so this
module takes the short one: the catalogue goes through the real Eventbrite parser (so its
columns and rules match the warehouse's), and the app tables get the columns `store` reads.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from features.tables import AppTables
from sources.eventbrite.parse import parse_events
from sources.synthetic.behaviour import Activity, BehaviourConfig, simulate
from sources.synthetic.eventbrite_json import event_records
from sources.synthetic.world import CityConfig, World, build_world

UTC_US = pl.Datetime("us", "UTC")


@dataclass(frozen=True)
class OfflineCity:
    """One city's warehouse tables plus the hidden truth they were drawn from."""

    world: World
    activity: Activity
    events: pl.DataFrame
    venues: pl.DataFrame
    users: pl.DataFrame
    friendships: pl.DataFrame
    swipes: pl.DataFrame
    attendance: pl.DataFrame

    @property
    def tables(self) -> AppTables:
        return AppTables(
            swipes=self.swipes,
            attendance=self.attendance,
            events=self.events,
            venues=self.venues,
            users=self.users,
            friendships=self.friendships,
        )


def _catalogue(world: World) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Events and venues per metro through the real parser, as ingest would store them.

    Coordinates come from the world's venues, as geocoding would fill them in.
    """
    records = event_records(world)
    metro_of = dict(world.events.select("event_id", "metro").iter_rows())
    parsed = [
        parse_events([r for r in records if metro_of[r["id"]] == metro], metro)
        for metro in world.config.metros
    ]
    events = pl.concat([p.events for p in parsed])
    located = world.venues.select("venue_id", "latitude", "longitude")
    venues = (
        pl.concat([p.venues for p in parsed])
        .unique("venue_id", keep="first")
        .drop("latitude", "longitude", strict=False)
        .join(located, on="venue_id", how="left")
    )
    return events, venues


def build_offline_city(config: CityConfig, behaviour: BehaviourConfig | None = None) -> OfflineCity:
    """Build the world, simulate its users, and shape every table like the warehouse's."""
    world = build_world(config)
    activity = simulate(world, behaviour)
    events, venues = _catalogue(world)
    users = world.users.with_columns(created_at=pl.lit(config.now).cast(UTC_US))
    return OfflineCity(
        world=world,
        activity=activity,
        events=events,
        venues=venues,
        users=users,
        friendships=world.friendships.select("user_id", "friend_id"),
        swipes=activity.swipes.with_columns(pl.col("created_at").cast(UTC_US)),
        attendance=activity.attendance.with_columns(pl.col("updated_at").cast(UTC_US)),
    )
