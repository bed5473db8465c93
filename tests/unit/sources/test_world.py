"""The synthetic world is deterministic, well-formed and shaped like a real city's listings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from core.metros import METROS
from sources.synthetic.world import (
    CATEGORIES,
    CATEGORY_INDEX,
    CityConfig,
    World,
    build_world,
)

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
UTC_US = pl.Datetime("us", "UTC")
FRAMES = ("metros", "organizations", "venues", "events", "users", "friendships", "user_traits")


@pytest.fixture(scope="module")
def tiny() -> World:
    return build_world(CityConfig.tiny(now=NOW))


@pytest.fixture(scope="module")
def default_world() -> World:
    return build_world(CityConfig(now=NOW))


def test_same_seed_gives_identical_world(tiny: World) -> None:
    again = build_world(CityConfig.tiny(now=NOW))
    for name in FRAMES:
        assert_frame_equal(getattr(tiny, name), getattr(again, name))
    np.testing.assert_array_equal(tiny.taste, again.taste)


def test_different_seed_gives_different_world(tiny: World) -> None:
    other = build_world(CityConfig.tiny(now=NOW, seed=8))
    assert not tiny.events.equals(other.events)
    assert not tiny.friendships.equals(other.friendships)
    assert not np.array_equal(tiny.taste, other.taste)


def test_now_is_normalised_to_utc_whole_seconds() -> None:
    pacific = datetime(2026, 3, 1, 4, 0, 0, 123456, tzinfo=UTC).astimezone(
        ZoneInfo("America/Los_Angeles")
    )
    config = CityConfig.tiny(now=pacific)
    assert config.now == datetime(2026, 3, 1, 4, tzinfo=UTC)
    assert config.now.tzinfo is UTC


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"n_users": 0}, "n_users"),
        ({"n_events": -5}, "n_events"),
        ({"n_venues": 0}, "n_venues"),
        ({"days_ahead": 0}, "days_ahead"),
        ({"metros": ()}, "at least one metro"),
        ({"metros": ("atlantis",)}, "unknown metro"),
        ({"metros": ("oakland", "oakland")}, "duplicates"),
        ({"n_venues": 1}, "every metro needs a venue"),
        ({"cancelled_share": 1.5}, "cancelled_share"),
        ({"now": datetime(2026, 3, 1)}, "timezone-aware"),
    ],
)
def test_invalid_config_is_rejected_with_a_clear_error(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        CityConfig.tiny(now=NOW).replace(**changes)


def test_sizes_and_schemas(tiny: World) -> None:
    config = tiny.config
    assert tiny.metros.height == len(config.metros)
    assert tiny.venues.height == config.n_venues
    assert tiny.events.height == config.n_events
    assert tiny.users.height == config.n_users
    assert tiny.taste.shape == (config.n_users, len(CATEGORIES))
    assert tiny.metros.columns == [
        "metro", "name", "center_lat", "center_lon", "min_lat", "max_lat", "min_lon",
        "max_lon", "timezone",
    ]  # fmt: skip
    assert tiny.venues.schema["latitude"] == pl.Float64
    assert tiny.venues.schema["capacity"] == pl.Int64
    assert tiny.venues.schema["venue_id"] == pl.Utf8
    for column in ("start_utc", "end_utc", "created", "changed"):
        assert tiny.events.schema[column] == UTC_US
    assert tiny.events.schema["is_free"] == pl.Boolean
    assert tiny.events.schema["price_min_cents"] == pl.Int64
    assert tiny.events.schema["popularity"] == pl.Float64
    assert tiny.users.schema["user_id"] == pl.Int64
    assert tiny.users["user_id"].to_list() == list(range(1, config.n_users + 1))
    assert tiny.friendships.schema == pl.Schema({"user_id": pl.Int64, "friend_id": pl.Int64})
    assert tiny.user_traits.columns == [
        "user_id", "price_sensitivity", "distance_km_scale", "weekend_affinity",
    ]  # fmt: skip


def test_ids_are_unique_numeric_strings(tiny: World) -> None:
    for frame, column in ((tiny.events, "event_id"), (tiny.venues, "venue_id")):
        ids = frame[column]
        assert ids.n_unique() == frame.height
        assert ids.str.contains(r"^\d+$").all()
    assert tiny.organizations["organization_id"].n_unique() == tiny.organizations.height


def test_events_reference_venues_of_their_metro_and_organization(tiny: World) -> None:
    joined = tiny.events.join(
        tiny.venues.select("venue_id", pl.col("metro").alias("v_metro"), "organization_id"),
        on="venue_id",
        how="left",
        suffix="_venue",
    )
    assert joined["v_metro"].null_count() == 0
    assert (joined["metro"] == joined["v_metro"]).all()
    assert (joined["organization_id"] == joined["organization_id_venue"]).all()
    assert set(tiny.events["metro"]) == set(tiny.config.metros)


def test_every_metro_has_a_few_organizations_each_owning_a_venue(tiny: World) -> None:
    per_metro = tiny.organizations.group_by("metro").len()
    assert per_metro["len"].min() >= 2
    owners = set(tiny.venues["organization_id"])
    assert owners == set(tiny.organizations["organization_id"])


def test_coordinates_lie_inside_the_metro_box(tiny: World) -> None:
    for frame, lat, lon in (
        (tiny.venues, "latitude", "longitude"),
        (tiny.users, "home_lat", "home_lon"),
    ):
        joined = frame.join(tiny.metros, on="metro")
        assert joined.filter(
            (pl.col(lat) < pl.col("min_lat"))
            | (pl.col(lat) > pl.col("max_lat"))
            | (pl.col(lon) < pl.col("min_lon"))
            | (pl.col(lon) > pl.col("max_lon"))
        ).is_empty()


def test_friendships_are_symmetric_without_self_loops_or_duplicates(tiny: World) -> None:
    f = tiny.friendships
    assert f.height > 0
    assert f.filter(pl.col("user_id") == pl.col("friend_id")).is_empty()
    assert f.unique().height == f.height
    reverse = f.select(pl.col("friend_id").alias("user_id"), pl.col("user_id").alias("friend_id"))
    assert_frame_equal(f.sort(f.columns), reverse.sort(f.columns))


def test_friendships_are_clustered_within_metros(default_world: World) -> None:
    w = default_world
    metro = w.users.select("user_id", "metro")
    pairs = w.friendships.join(metro, on="user_id").join(
        metro.rename({"user_id": "friend_id", "metro": "friend_metro"}), on="friend_id"
    )
    same_metro = (pairs["metro"] == pairs["friend_metro"]).mean()
    assert same_metro is not None and same_metro > 0.8
    mean_degree = w.friendships.height / w.config.n_users
    assert 0.7 * w.config.mean_friends < mean_degree < 1.3 * w.config.mean_friends


def test_most_events_are_upcoming_and_statuses_match_times(default_world: World) -> None:
    ev = default_world.events
    now = default_world.config.now
    future = (ev["start_utc"] > now).mean()
    assert future is not None and 0.6 < future < 0.8
    canceled = (ev["status"] == "canceled").mean()
    assert canceled is not None and 0.02 < canceled < 0.07
    assert ev.filter((pl.col("status") == "live") & (pl.col("start_utc") <= now)).is_empty()
    assert ev.filter(
        pl.col("status").is_in(["ended", "completed"]) & (pl.col("end_utc") > now)
    ).is_empty()
    assert set(ev["status"]) <= {"live", "started", "ended", "completed", "canceled"}
    assert (ev["end_utc"] > ev["start_utc"]).all()
    assert ev["start_utc"].min() >= now - timedelta(days=default_world.config.days_back + 1)
    assert ev["start_utc"].max() <= now + timedelta(days=default_world.config.days_ahead + 1)


def test_publication_timestamps_are_ordered(tiny: World) -> None:
    ev = tiny.events
    now = tiny.config.now
    assert (ev["created"] <= ev["published"]).all()
    assert (ev["published"] <= ev["changed"]).all()
    assert (ev["created"] < ev["start_utc"]).all()
    assert (ev["changed"] <= now).all()


def test_start_times_are_realistic_in_local_time(default_world: World) -> None:
    ev = default_world.events.filter(pl.col("timezone") == "America/Los_Angeles")
    local = ev["start_utc"].dt.convert_time_zone("America/Los_Angeles")
    hours = local.dt.hour()
    assert hours.min() >= 9 and hours.max() <= 21
    evening = (hours >= 17).mean()
    assert evening is not None and evening > 0.5
    weekday = local.dt.weekday()  # 1 = Monday
    assert (weekday == 6).sum() > 1.5 * (weekday == 1).sum()


def test_tiny_world_uses_each_metros_own_timezone(tiny: World) -> None:
    ny = tiny.events.filter(pl.col("metro") == "new-york")
    assert ny.height > 0
    assert set(ny["timezone"]) == {"America/New_York"}
    hours = ny["start_utc"].dt.convert_time_zone("America/New_York").dt.hour()
    assert hours.min() >= 9 and hours.max() <= 21


def test_prices_are_null_exactly_for_free_events(tiny: World) -> None:
    ev = tiny.events
    assert (ev["price_min_cents"].is_null() == ev["is_free"]).all()
    paid = ev.filter(~pl.col("is_free"))
    assert (paid["price_max_cents"] >= paid["price_min_cents"]).all()
    assert (paid["price_min_cents"] > 0).all()
    assert ev.filter(pl.col("is_free")).height > 0


def test_categories_are_eventbrite_categories(tiny: World) -> None:
    ids = {c.id: c.name for c in CATEGORIES}
    assert ids["103"] == "Music" and ids["110"] == "Food & Drink"
    pairs = set(tiny.events.select("category_id", "category").unique().iter_rows())
    assert pairs <= set(ids.items())
    assert set(CATEGORY_INDEX) == set(ids)


def test_hidden_truth_is_well_formed(tiny: World) -> None:
    np.testing.assert_allclose(tiny.taste.sum(axis=1), 1.0)
    assert (tiny.taste >= 0).all()
    traits = tiny.user_traits
    assert (traits["price_sensitivity"] > 0).all()
    assert (traits["distance_km_scale"] > 0).all()
    popularity = tiny.events["popularity"]
    assert abs(popularity.mean() or 0.0) < 1e-9


def test_onboarding_picks_mostly_match_the_top_taste_and_some_skip(default_world: World) -> None:
    """Onboarding is a stated preference: close to the hidden taste, not a copy of it."""
    users, taste = default_world.users, default_world.taste
    assert users.schema["onboarding_categories"] == pl.List(pl.Utf8)
    picks = users["onboarding_categories"].to_list()
    names = [c.name for c in CATEGORIES]
    assert {name for p in picks for name in p} <= set(default_world.events["category"])

    answered = [(i, p) for i, p in enumerate(picks) if p]
    skipped = 1 - len(answered) / len(picks)
    assert 0.10 < skipped < 0.20
    assert all(len(p) in (2, 3) and len(set(p)) == len(p) for _, p in answered)

    ranked = np.argsort(-taste, axis=1, kind="stable")
    top = [names[ranked[i, 0]] in p for i, p in answered]
    exact = [set(p) == {names[c] for c in ranked[i, : len(p)]} for i, p in answered]
    assert np.mean(top) > 0.85  # the favourite is almost always ticked
    assert 0.7 < np.mean(exact) < 0.9  # about one answer in five has a stray tick


def test_onboarding_is_one_more_users_column_and_follows_the_seed(tiny: World) -> None:
    """Added at the end of `users`, so readers that select columns by name are unaffected."""
    assert tiny.users.columns == [
        "user_id", "display_name", "metro", "home_lat", "home_lon", "onboarding_categories",
    ]  # fmt: skip
    assert tiny.users.filter(pl.col("onboarding_categories").list.len() == 0).height > 0
    other_seed = build_world(CityConfig.tiny(now=NOW, seed=8))
    assert not tiny.users["onboarding_categories"].equals(other_seed.users["onboarding_categories"])


def test_metro_table_matches_reference(tiny: World) -> None:
    row = tiny.metros.row(0, named=True)
    ref = METROS[row["metro"]]
    assert row["timezone"] == ref.timezone
    assert row["min_lat"] < row["center_lat"] < row["max_lat"]
    assert row["min_lon"] < row["center_lon"] < row["max_lon"]


def test_lookup_helpers(tiny: World) -> None:
    first = tiny.events["event_id"][0]
    assert tiny.event_index[first] == 0
    np.testing.assert_array_equal(tiny.user_index([1, 3]), [0, 2])
    with pytest.raises(KeyError):
        tiny.user_index([0])
