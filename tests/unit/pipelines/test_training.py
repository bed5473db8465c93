"""The ranker's training set: candidate snapshots labelled only by what came before the cutoff."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from pipelines import evaluation as ev
from pipelines import training
from sources.synthetic.offline import OfflineCity, build_offline_city
from sources.synthetic.world import CityConfig

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def city() -> OfflineCity:
    return build_offline_city(CityConfig.tiny(now=NOW))


def _examples(city: OfflineCity, swipes: pl.DataFrame, cutoff: datetime) -> pl.DataFrame:
    return training.ranker_examples(cutoff, replace(city.tables, swipes=swipes), per_source=30)


def test_snapshots_are_weekly_and_end_at_the_cutoff(city: OfflineCity) -> None:
    cutoff = ev.holdout_cutoff(city.swipes, 7)
    examples = _examples(city, city.swipes, cutoff)
    moments = sorted(examples["created_at"].unique().to_list())
    assert moments[-1] == cutoff - timedelta(days=training.HORIZON_DAYS)
    assert len(moments) <= training.SNAPSHOTS
    assert (examples["label"] > 0).any() and (examples["label"] == 0).any()
    assert {"score_als", "score_popularity", "friends_going_before"} <= set(examples.columns)


def test_nothing_after_the_cutoff_reaches_the_examples(city: OfflineCity) -> None:
    """Rewriting every post-cutoff swipe must not change a single training row."""
    cutoff = ev.holdout_cutoff(city.swipes, 7)
    flipped = city.swipes.with_columns(
        action=pl.when(pl.col("created_at") >= cutoff)
        .then(pl.lit("superlike"))
        .otherwise(pl.col("action"))
    )
    assert _examples(city, city.swipes, cutoff).equals(_examples(city, flipped, cutoff))


def test_the_ranker_trains_on_the_snapshots(city: OfflineCity) -> None:
    cutoff = ev.holdout_cutoff(city.swipes, 7)
    ranker = training.fit_ranker(_examples(city, city.swipes, cutoff))
    assert ranker.best_iteration >= 1
    assert "score_als" in ranker.features
