"""Cold start through the whole two-stage path: a user with no swipes, an event with no swipes.

A new user is served from the categories they picked at onboarding (content) and from what is
trending in their metro (popularity); a brand-new event reaches users through content and geo
candidates, since no collaborative signal exists for it yet.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from features.catalogue import upcoming_active
from features.interactions import interactions as build_interactions
from models.rerank import ONBOARDING_REASON, SOURCE_REASONS
from recommender import feed, fitting
from recommender import holdout as ev
from sources.synthetic.offline import OfflineCity, build_offline_city
from sources.synthetic.world import CityConfig

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
NEW_EVENT = "cold-start-event"


@pytest.fixture(scope="module")
def city() -> OfflineCity:
    return build_offline_city(CityConfig.tiny(now=NOW))


@pytest.fixture(scope="module")
def newcomer(city: OfflineCity) -> tuple[OfflineCity, int, str]:
    return _newcomer(city)


@pytest.fixture(scope="module")
def models(newcomer: tuple[OfflineCity, int, str]) -> ev.StageModels:
    """Trained on the city where the newcomer has no history, as the nightly run would be."""
    city = newcomer[0]
    holdout = ev.split_at(ev.holdout_cutoff(city.swipes, 7), city.tables)
    return fitting.train(holdout, city.tables)


def _feed(
    city: OfflineCity, models: ev.StageModels, now: datetime
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Candidates and the final feed for every user as of `now`, as `ranked_feed` builds them."""
    seen = build_interactions(city.swipes, city.attendance)
    catalogue = ev.catalogue_at(city.events, now)
    eligible = upcoming_active(catalogue, now)
    proposed = feed.candidates(
        als=models.als,
        users=city.users,
        events=catalogue,
        venues=city.venues,
        interactions=seen,
        eligible=eligible,
        per_source=40,
    )
    scored = feed.scored(
        proposed,
        ranker=models.ranker,
        now=now,
        swipes=city.swipes,
        attendance=city.attendance,
        friendships=city.friendships,
        events=catalogue,
        users=city.users,
        venues=city.venues,
    )
    ranked = feed.feed(
        scored,
        now=now,
        events=catalogue,
        venues=city.venues,
        users=city.users,
        interactions=seen,
        n=20,
        run_id="cold-start",
    )
    return proposed, ranked


def _newcomer(city: OfflineCity) -> tuple[OfflineCity, int, str]:
    """The city with one user's history wiped and one onboarding pick instead."""
    user = int(city.swipes.group_by("user_id").len().sort("len", "user_id")["user_id"][-1])
    category = (
        city.events.filter(pl.col("metro") == city.users.filter(pl.col("user_id") == user)["metro"])
        .group_by("category")
        .len()
        .sort("len", "category")["category"][-1]
    )
    users = city.users.with_columns(
        onboarding_categories=pl.when(pl.col("user_id") == user)
        .then(pl.lit([category]))
        .otherwise(pl.col("onboarding_categories"))
    )
    others = pl.col("user_id") != user
    changed = replace(
        city,
        users=users,
        swipes=city.swipes.filter(others),
        attendance=city.attendance.filter(others),
        friendships=city.friendships.filter(others & (pl.col("friend_id") != user)),
    )
    return changed, user, category


def test_new_user_gets_onboarding_picks_and_metro_trending(
    newcomer: tuple[OfflineCity, int, str], models: ev.StageModels
) -> None:
    newcomer_city, user, category = newcomer
    proposed, feed = _feed(newcomer_city, models, NOW)
    mine = feed.filter(pl.col("user_id") == user).join(
        newcomer_city.events.select("event_id", "category"), on="event_id"
    )
    sources = proposed.filter(pl.col("user_id") == user)
    assert sources.filter(pl.col("source") == "als").is_empty()  # nothing to collaborate on
    content = sources.filter(pl.col("source") == "content").join(
        newcomer_city.events.select("event_id", "category"), on="event_id"
    )
    assert content.height > 0 and (content["category"] == category).all()
    assert mine.height > 0
    reasons = set(mine["reason"].to_list())
    assert f"{ONBOARDING_REASON}{category}" in reasons
    assert SOURCE_REASONS["popularity"] in reasons
    assert (mine["category"] == category).sum() >= 1


def test_brand_new_event_reaches_users_through_content_and_geo(
    city: OfflineCity, models: ev.StageModels
) -> None:
    template = (
        city.events.filter(pl.col("is_active") & (pl.col("start_utc") > NOW))
        .sort("event_id")
        .row(0, named=True)
    )
    new = pl.DataFrame(
        [template | {"event_id": NEW_EVENT, "start_utc": NOW + timedelta(days=3)}],
        schema=city.events.schema,
    )
    with_new = replace(city, events=pl.concat([city.events, new]))
    proposed, _ = _feed(with_new, models, NOW)
    reached = proposed.filter(pl.col("event_id") == NEW_EVENT)
    assert reached.filter(pl.col("score_content").is_not_null()).height > 0
    assert reached.filter(pl.col("score_geo").is_not_null()).height > 0
    assert reached.filter(pl.col("score_als").is_not_null()).is_empty()
