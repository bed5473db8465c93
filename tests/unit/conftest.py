"""Shared unit-test data: interaction files with a planted structure (for `godo evaluate` and
the generic pipeline), impression-outcome frames for the online metrics, and event cards.

Users belong to one of `GROUPS` taste groups and mostly pick items of their group (Zipf-like
within it), plus a few global hits. Popularity only knows the hits and the biggest group's
favourites, so anything that learns the groups must beat it; an item file says which group
(category) each item belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
import pytest

from models.evaluation.online import arms_frame
from recommender import fitting
from recommender import holdout as ev
from sources.synthetic.offline import OfflineCity, build_offline_city
from sources.synthetic.online import SimulatedHoldout
from sources.synthetic.world import CityConfig
from store.cards import EventCard, Price, Venue

# A JWT secret `Settings` accepts outside development (random-looking, 43 characters).
PRODUCTION_JWT_SECRET = "Vq3nL8xR2mZ7wK4pT9sB6yH1cF5gJ0dA_eU-oN3iQ8r"

GROUPS = 4
ITEMS_PER_GROUP = 30
HITS = 8
USERS = 200
PER_USER = 14
START = 1_700_000_000


@dataclass(frozen=True)
class PlantedFiles:
    interactions: Path  # user, item, timestamp (CSV)
    items: Path  # item, category, title (CSV)


def planted_frame(users: int = USERS, seed: int = 0) -> pl.DataFrame:
    """user, item, timestamp: `PER_USER` distinct items per user, ~85% from its own group."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, ITEMS_PER_GROUP + 1) ** 0.7
    weights /= weights.sum()
    rows: list[dict[str, object]] = []
    for user in range(users):
        group = user % GROUPS
        own = rng.choice(ITEMS_PER_GROUP, size=PER_USER - 2, replace=False, p=weights)
        items = [f"g{group}-{i:02d}" for i in own]
        items += [f"hit-{h}" for h in rng.choice(HITS, size=2, replace=False)]
        for step, item in enumerate(rng.permutation(items)):
            rows.append({"user": f"u{user:03d}", "item": item, "timestamp": START + 3600 * step})
    return pl.DataFrame(rows)


def planted_items() -> pl.DataFrame:
    """item, category, title: each group's items share a category, hits are "hits"."""
    rows = [
        {"item": f"g{g}-{i:02d}", "category": f"group{g}", "title": f"group {g} show {i}"}
        for g in range(GROUPS)
        for i in range(ITEMS_PER_GROUP)
    ]
    rows += [
        {"item": f"hit-{h}", "category": "hits", "title": f"blockbuster {h}"} for h in range(HITS)
    ]
    return pl.DataFrame(rows)


@pytest.fixture
def planted(tmp_path: Path) -> PlantedFiles:
    """The planted interaction file and its item file, written as CSV in a fresh folder."""
    files = PlantedFiles(tmp_path / "interactions.csv", tmp_path / "items.csv")
    planted_frame().write_csv(files.interactions)
    planted_items().write_csv(files.items)
    return files


# --- impression outcomes, as `store.online` reads them (the columns the metrics use) --------

ONLINE_T0 = datetime(2025, 3, 1, 18, 0, tzinfo=UTC)
OUTCOME_SCHEMA = {
    "user_id": pl.Int64,
    "event_id": pl.Utf8,
    "rank": pl.Int32,
    "served_at": pl.Datetime("us", "UTC"),
    "model_version": pl.Utf8,
    "experiment": pl.Utf8,
    "arm": pl.Utf8,
    "action": pl.Utf8,
    "going": pl.Boolean,
}
HALF_AND_HALF = arms_frame(
    [
        {"experiment": "exp", "arm": "control", "weight": 0.5},
        {"experiment": "exp", "arm": "treat", "weight": 0.5},
    ]
)


# --- event cards, as `store.cards` reads them --------------------------------------------------

CARD_START = datetime(2026, 12, 5, 0, 30, 0, 120, tzinfo=UTC)


def event_card(
    event_id: str,
    *,
    venue: Venue | None = None,
    zone: str = "UTC",
    name: str = 'Jazz "on" the Roof — ünïcode',
) -> EventCard:
    """A live, paid music event starting at `CARD_START` (ending 3 h later if it has a venue)."""
    return EventCard(
        event_id=event_id,
        name=name,
        category="music",
        metro="new-york",
        start_utc=CARD_START,
        end_utc=None if venue is None else CARD_START.replace(hour=3),
        timezone=zone,
        start_local=CARD_START.astimezone(ZoneInfo(zone)),
        venue=venue,
        price=Price(is_free=False, price_min_cents=1500, price_max_cents=2500, currency="USD"),
        status="live",
        is_active=True,
        capacity=100,
        going_count=3,
        visible_goers=frozenset({5, 6}),
    )


# --- the tiny offline city, its holdout and the models trained before it, built once per session
# (the recommender tests and the feed pyfunc's)

OFFLINE_NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
PER_SOURCE = 50


@pytest.fixture(scope="session")
def city() -> OfflineCity:
    return build_offline_city(CityConfig.tiny(now=OFFLINE_NOW))


@pytest.fixture(scope="session")
def holdout(city: OfflineCity) -> ev.Holdout:
    cutoff = ev.holdout_cutoff(city.swipes, 7)
    return ev.split_at(cutoff, city.tables)


@pytest.fixture(scope="session")
def stage_models(city: OfflineCity, holdout: ev.Holdout) -> ev.StageModels:
    return fitting.train(holdout, city.tables)


@pytest.fixture(scope="session")
def feed_frames(holdout: ev.Holdout, stage_models: ev.StageModels) -> dict[str, pl.DataFrame]:
    """`feed_lists` of the trained models: candidates, scored rows, ranker and feed lists."""
    return ev.feed_lists(holdout, stage_models, per_source=PER_SOURCE)


@pytest.fixture(scope="session")
def policy_lists(
    holdout: ev.Holdout, stage_models: ev.StageModels, feed_frames: dict[str, pl.DataFrame]
) -> dict[str, pl.DataFrame]:
    """random, popularity, als, ranker, final_feed and no_exploration at the cutoff."""
    lists = ev.baseline_lists(holdout, stage_models.als)
    feed = {k: v for k, v in feed_frames.items() if k not in ("candidates", "scored")}
    return lists | feed


@pytest.fixture(scope="session")
def simulation(city: OfflineCity, holdout: ev.Holdout) -> SimulatedHoldout:
    return SimulatedHoldout.at(
        city.world,
        city.activity.config,
        holdout.cutoff,
        holdout.users["user_id"].to_numpy(),
        holdout.swipes,
        holdout.attendance,
    )
