"""The ranker's training set: the cards users swiped before the cutoff, features as of each."""

from dataclasses import replace
from datetime import datetime, timedelta

import polars as pl

from models.ranker import CANDIDATE_FEATURES
from recommender import fitting
from recommender import holdout as ev
from sources.synthetic.offline import OfflineCity


def _examples(city: OfflineCity, swipes: pl.DataFrame, cutoff: datetime) -> pl.DataFrame:
    return fitting.ranker_examples(cutoff, replace(city.tables, swipes=swipes))


def test_examples_are_the_swipes_of_the_window_grouped_by_user_day(city: OfflineCity) -> None:
    cutoff = ev.holdout_cutoff(city.swipes, 7)
    examples = _examples(city, city.swipes, cutoff)
    start = cutoff - timedelta(days=fitting.WINDOW_DAYS)
    window = city.swipes.filter((pl.col("created_at") >= start) & (pl.col("created_at") < cutoff))
    assert examples.height == window.height
    assert set(examples["swipe_id"].to_list()) == set(window["swipe_id"].to_list())
    assert examples["created_at"].max() < cutoff
    assert (examples["created_at"] == examples["created_at"].dt.truncate("1d")).all()
    assert set(examples["label"].unique().to_list()) <= {0, 1, 2}
    assert (examples["label"] > 0).any() and (examples["label"] == 0).any()
    assert {"friends_going_before", "user_category_affinity_before"} <= set(examples.columns)


def test_a_going_rsvp_before_the_cutoff_grades_the_like_as_two(city: OfflineCity) -> None:
    cutoff = ev.holdout_cutoff(city.swipes, 7)
    examples = _examples(city, city.swipes, cutoff)
    going = city.attendance.filter(
        (pl.col("status") == "going") & (pl.col("updated_at") < cutoff)
    ).select("user_id", "event_id")
    liked_and_going = examples.join(going, on=["user_id", "event_id"]).filter(pl.col("label") > 0)
    assert liked_and_going.height > 0
    assert (liked_and_going["label"] == fitting.GOING_LABEL).all()


def test_nothing_after_the_cutoff_reaches_the_examples(city: OfflineCity) -> None:
    """Rewriting every post-cutoff swipe must not change a single training row."""
    cutoff = ev.holdout_cutoff(city.swipes, 7)
    flipped = city.swipes.with_columns(
        action=pl.when(pl.col("created_at") >= cutoff)
        .then(pl.lit("superlike"))
        .otherwise(pl.col("action"))
    )
    assert _examples(city, city.swipes, cutoff).equals(_examples(city, flipped, cutoff))


def test_max_examples_keeps_the_newest_swipes(city: OfflineCity) -> None:
    cutoff = ev.holdout_cutoff(city.swipes, 7)
    everything = _examples(city, city.swipes, cutoff)
    few = fitting.ranker_examples(cutoff, city.tables, max_examples=50)
    assert few.height == 50
    assert few["created_at"].min() >= everything["created_at"].sort(descending=True)[49]


def test_the_ranker_learns_preference_without_generator_scores(city: OfflineCity) -> None:
    cutoff = ev.holdout_cutoff(city.swipes, 7)
    ranker = fitting.fit_ranker(_examples(city, city.swipes, cutoff))
    assert ranker.best_iteration >= 1
    assert not set(CANDIDATE_FEATURES) & set(ranker.features)
    importance = ranker.feature_importance().filter(pl.col("gain") > 0)
    assert importance.height > 0
