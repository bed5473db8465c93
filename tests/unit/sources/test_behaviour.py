"""Simulated behaviour obeys the app's rules and carries the signal the models must learn."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from sources.synthetic.behaviour import (
    ATTENDANCE_SCHEMA,
    IMPRESSION_SCHEMA,
    ORACLE_SCHEMA,
    SWIPE_SCHEMA,
    W_SOCIAL,
    Activity,
    BehaviourConfig,
    oracle_top_n,
    simulate,
    true_utility,
)
from sources.synthetic.world import CATEGORY_INDEX, CityConfig, World, build_world

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def tiny() -> World:
    return build_world(CityConfig.tiny(now=NOW))


@pytest.fixture(scope="module")
def tiny_activity(tiny: World) -> Activity:
    return simulate(tiny)


@pytest.fixture(scope="module")
def city() -> World:
    return build_world(CityConfig(now=NOW))


@pytest.fixture(scope="module")
def city_activity(city: World) -> Activity:
    return simulate(city)


def _with_events(world: World, frame: pl.DataFrame) -> pl.DataFrame:
    return frame.join(
        world.events.select(
            "event_id",
            "status",
            "start_utc",
            "created",
            "category_id",
            pl.col("metro").alias("event_metro"),
        ),
        on="event_id",
        how="left",
    ).join(world.users.select("user_id", "metro"), on="user_id", how="left")


def test_schemas(tiny_activity: Activity) -> None:
    assert tiny_activity.swipes.schema == SWIPE_SCHEMA
    assert tiny_activity.attendance.schema == ATTENDANCE_SCHEMA
    assert tiny_activity.impressions.schema == IMPRESSION_SCHEMA


def test_same_seeds_give_identical_activity(tiny: World, tiny_activity: Activity) -> None:
    again = simulate(build_world(CityConfig.tiny(now=NOW)))
    assert_frame_equal(tiny_activity.swipes, again.swipes)
    assert_frame_equal(tiny_activity.attendance, again.attendance)
    assert_frame_equal(tiny_activity.impressions, again.impressions)


def test_different_seed_gives_different_activity(tiny: World, tiny_activity: Activity) -> None:
    other = simulate(tiny, BehaviourConfig(seed=12))
    assert not tiny_activity.swipes.equals(other.swipes)


def test_swipes_respect_what_the_app_could_show(tiny: World, tiny_activity: Activity) -> None:
    swipes = _with_events(tiny, tiny_activity.swipes)
    assert swipes.height > 0
    assert swipes["status"].null_count() == 0
    assert (swipes["status"] != "canceled").all()
    assert (swipes["created_at"] < swipes["start_utc"]).all()
    assert (swipes["created_at"] < tiny.config.now).all()
    assert (swipes["created_at"] >= swipes["created"]).all()
    assert (swipes["metro"] == swipes["event_metro"]).all()
    assert set(swipes["action"]) <= {"like", "pass", "superlike"}


def test_no_user_swipes_the_same_event_twice(city_activity: Activity) -> None:
    swipes = city_activity.swipes
    assert swipes.select("user_id", "event_id").unique().height == swipes.height


def test_swipe_ids_are_unique_uuid4(tiny_activity: Activity) -> None:
    ids = tiny_activity.swipes["swipe_id"]
    assert ids.n_unique() == ids.len()
    assert all(uuid.UUID(s).version == 4 for s in ids.to_list())


def test_positions_show_position_bias(city_activity: Activity) -> None:
    counts = city_activity.swipes.group_by("position").len().sort("position")
    by_position = dict(counts.iter_rows())
    assert by_position[0] > 5 * by_position.get(15, 0)
    assert by_position[0] >= by_position[1] >= by_position[5]
    assert city_activity.swipes["position"].min() == 0


def test_swipes_within_a_session_move_forward_in_time(tiny_activity: Activity) -> None:
    imp = tiny_activity.impressions.sort("session_id", "position")
    steps = imp.group_by("session_id", maintain_order=True).agg(
        pl.col("position").diff().drop_nulls().alias("dp"),
        pl.col("shown_at").diff().drop_nulls().alias("dt"),
        pl.col("position").min().alias("first"),
    )
    assert (steps["first"] == 0).all()
    assert steps.explode("dp")["dp"].drop_nulls().eq(1).all()
    assert (steps.explode("dt")["dt"].drop_nulls().dt.total_microseconds() >= 0).all()


def test_impressions_cover_the_swipes(tiny_activity: Activity) -> None:
    imp = tiny_activity.impressions
    examined = imp.filter(pl.col("examined"))
    assert examined.height == tiny_activity.swipes.height
    joined = examined.join(tiny_activity.swipes, on=["user_id", "event_id"], how="inner")
    assert joined.height == examined.height
    assert (joined["position"] == joined["position_right"]).all()
    assert (imp["propensity"] > 0).all() and (imp["propensity"] <= 1).all()


def test_default_size_volumes_and_like_share(city_activity: Activity) -> None:
    swipes = city_activity.swipes
    assert 100_000 <= swipes.height <= 300_000
    like_share = swipes["action"].is_in(["like", "superlike"]).mean()
    assert like_share is not None and 0.25 <= like_share <= 0.40
    assert 0 < (swipes["action"] == "superlike").sum() < (swipes["action"] == "like").sum()


def test_users_like_categories_they_have_more_taste_for(
    city: World, city_activity: Activity
) -> None:
    swipes = _with_events(city, city_activity.swipes)
    users = swipes["user_id"].to_numpy() - 1
    cats = np.array([CATEGORY_INDEX[c] for c in swipes["category_id"].to_list()])
    taste = city.taste[users, cats]
    liked = swipes["action"].is_in(["like", "superlike"]).to_numpy()
    low = liked[taste < 0.05].mean()
    high = liked[taste > 0.3].mean()
    assert high > low + 0.3
    assert np.corrcoef(taste, liked)[0, 1] > 0.3


def test_attendance_follows_likes(city: World, city_activity: Activity) -> None:
    att = city_activity.attendance
    assert att.height > 0
    assert att.select("user_id", "event_id").unique().height == att.height
    assert set(att["status"]) == {"going", "interested"}
    assert set(att["visibility"]) <= {"public", "friends", "private"}
    assert att["notes"].null_count() == att.height
    joined = att.join(city_activity.swipes, on=["user_id", "event_id"], how="left")
    assert joined["action"].null_count() == 0
    assert joined["action"].is_in(["like", "superlike"]).all()
    assert (joined["updated_at"] >= joined["created_at"]).all()
    timed = _with_events(city, att)
    assert (timed["updated_at"] < timed["start_utc"]).all()
    assert (timed["updated_at"] < city.config.now).all()
    # Superlikes turn into RSVPs more often than plain likes.
    swipes = city_activity.swipes.join(
        att.select("user_id", "event_id", pl.lit(True).alias("rsvp")),
        on=["user_id", "event_id"],
        how="left",
    ).with_columns(pl.col("rsvp").fill_null(False))
    rate = dict(swipes.group_by("action").agg(pl.col("rsvp").mean()).iter_rows())
    assert rate["superlike"] > rate["like"] > 0 == rate["pass"]


def test_true_utility_shape_and_social_term(tiny: World) -> None:
    users = np.array([1, 2, 3])
    events = tiny.events["event_id"].head(4).to_list()
    base = true_utility(tiny, users, events)
    assert base.shape == (3, 4)
    assert np.isfinite(base).all()
    friends = np.full((3, 4), 3.0)
    social = true_utility(tiny, users, events, friends_going=friends)
    np.testing.assert_allclose(social - base, W_SOCIAL * np.log1p(3.0))
    with pytest.raises(KeyError):
        true_utility(tiny, users, ["no-such-event"])


def test_true_utility_prefers_the_users_favourite_category(tiny: World) -> None:
    user = 1
    favourite = int(np.argmax(tiny.taste[user - 1]))
    worst = int(np.argmin(tiny.taste[user - 1]))
    ev = tiny.events.with_columns(
        pl.col("category_id").replace_strict(CATEGORY_INDEX, return_dtype=pl.Int64).alias("ci")
    )
    fav_ids = ev.filter(pl.col("ci") == favourite)["event_id"].to_list()
    worst_ids = ev.filter(pl.col("ci") == worst)["event_id"].to_list()
    if not fav_ids or not worst_ids:
        pytest.skip("tiny world lacks one of the categories")
    fav = true_utility(tiny, np.array([user]), fav_ids).mean()
    bad = true_utility(tiny, np.array([user]), worst_ids).mean()
    assert fav > bad


def test_oracle_ranks_unswiped_future_events_of_the_users_metro(
    tiny: World, tiny_activity: Activity
) -> None:
    users = np.array([1, 2, 3, 4, 5])
    top = tiny_activity.oracle_top_n(tiny, users, 10)
    assert top.schema == ORACLE_SCHEMA
    assert set(top["user_id"]) <= set(users.tolist())
    assert top.group_by("user_id").len()["len"].max() == 10
    ranks = top.group_by("user_id", maintain_order=True).agg("rank", "utility")
    for row in ranks.iter_rows(named=True):
        assert row["rank"] == list(range(1, len(row["rank"]) + 1))
        assert row["utility"] == sorted(row["utility"], reverse=True)
    joined = _with_events(tiny, top)
    assert (joined["start_utc"] > tiny.config.now).all()
    assert (joined["status"] != "canceled").all()
    assert (joined["metro"] == joined["event_metro"]).all()
    swiped = top.join(tiny_activity.swipes, on=["user_id", "event_id"], how="inner")
    assert swiped.is_empty()


def test_oracle_utilities_are_true_utilities(tiny: World, tiny_activity: Activity) -> None:
    top = oracle_top_n(tiny, tiny_activity, [7], 5)
    no_social = true_utility(tiny, np.array([7]), top["event_id"].to_list())[0]
    # The oracle adds friends going; that term is never negative.
    assert (top["utility"].to_numpy() >= no_social - 1e-9).all()


def test_oracle_validates_n(tiny: World, tiny_activity: Activity) -> None:
    with pytest.raises(ValueError):
        oracle_top_n(tiny, tiny_activity, [1], 0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sessions_per_user": 0},
        {"cards_per_session": 0},
        {"position_bias": 1.5},
        {"popular_share": -0.1},
        {"min_lead_minutes": -1},
    ],
)
def test_invalid_behaviour_config_is_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        BehaviourConfig(**kwargs)  # type: ignore[arg-type]


def test_no_early_stop_when_position_bias_is_one(tiny: World) -> None:
    activity = simulate(tiny, BehaviourConfig(position_bias=1.0, sessions_per_user=2.0))
    imp = activity.impressions
    assert imp["examined"].all()
