"""The tiny offline city, its holdout and the models trained before it, built once per session."""

from datetime import UTC, datetime

import polars as pl
import pytest

from recommender import fitting
from recommender import holdout as ev
from sources.synthetic.offline import OfflineCity, build_offline_city
from sources.synthetic.online import SimulatedHoldout
from sources.synthetic.world import CityConfig

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
PER_SOURCE = 50


@pytest.fixture(scope="session")
def city() -> OfflineCity:
    return build_offline_city(CityConfig.tiny(now=NOW))


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
