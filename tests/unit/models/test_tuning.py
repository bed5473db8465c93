"""Tuning: the validation split comes from the training frame alone, and the search picks
what each dataset was built to prefer."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import polars as pl
import pytest

from models.ease import EASEModel, EASEParams
from models.evaluation import random_split
from models.tuning import (
    EASE_GRID,
    coordinate_search,
    tune_als,
    tune_ease,
    validation_split,
)

PAIR = ["user_id", "event_id"]


def with_passes_and_rsvps(frame: pl.DataFrame) -> pl.DataFrame:
    """Every user also passed one event they never liked and RSVP'd the first one they did."""
    liked = frame.group_by("user_id").agg(pl.col("event_id").min())
    passes = frame.select("user_id").unique().with_columns(event_id=pl.lit("never"), weight=0.0)
    return pl.concat([frame, passes, liked.with_columns(weight=pl.lit(4.0))])


def test_validation_split_holds_out_whole_positive_pairs(bundles: pl.DataFrame) -> None:
    frame = with_passes_and_rsvps(bundles)
    v = validation_split(frame, share=0.25, seed=1)
    positive = frame.filter(pl.col("weight") > 0).select(PAIR).unique()
    assert v.held_out.join(positive, on=PAIR, how="anti").height == 0  # only liked pairs
    assert v.fit.join(v.held_out, on=PAIR).height == 0  # no row of a held-out pair is fit on
    assert v.fit.height + frame.join(v.held_out, on=PAIR).height == frame.height  # nothing lost
    assert v.fit.filter(pl.col("weight") == 0).height == frame["user_id"].n_unique()
    shares = (
        v.held_out.group_by("user_id")
        .len()
        .join(positive.group_by("user_id").len(), on="user_id", suffix="_all")
        .select(share=pl.col("len") / pl.col("len_all"))["share"]
    )
    assert shares.min() >= 0.2 and shares.max() <= 0.3  # type: ignore[operator]
    assert validation_split(frame, share=0.25, seed=1).held_out.equals(v.held_out)
    assert not validation_split(frame, share=0.25, seed=2).held_out.equals(v.held_out)


def test_tuning_sees_only_the_training_frame(
    bundles: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every frame the models are fit on, asked about or judged by comes from the train
    side of an outer split; the test side's pairs never show up anywhere."""
    outer = random_split(
        bundles.rename({"event_id": "item_id"}).with_columns(timestamp=pl.lit(0)), 0.25, seed=0
    )
    train = outer.train.select("user_id", pl.col("item_id").alias("event_id"), "weight")
    test = outer.test.select("user_id", pl.col("item_id").alias("event_id"))
    seen: dict[str, list[pl.DataFrame]] = {"fit": [], "users": [], "exclude": []}
    fit, recommend = EASEModel.fit, EASEModel.recommend

    def spy_fit(self: EASEModel, interactions: pl.DataFrame) -> EASEModel:
        seen["fit"].append(interactions)
        return fit(self, interactions)

    def spy_recommend(self: EASEModel, **kwargs: Any) -> pl.DataFrame:
        seen["users"].append(kwargs["users"])
        seen["exclude"].append(kwargs["exclude"])
        return recommend(self, **kwargs)

    monkeypatch.setattr(EASEModel, "fit", spy_fit)
    monkeypatch.setattr(EASEModel, "recommend", spy_recommend)
    tuned = tune_ease(train, grid={"l2": (1.0, 100.0)}, extend=0, max_users=50)

    assert len(tuned.results) == len(seen["fit"]) == 3  # the start (l2 500) and the grid
    for frame in seen["fit"] + seen["exclude"]:
        assert frame.join(train, on=PAIR, how="anti").height == 0
        assert frame.join(test, on=PAIR).height == 0
    for users in seen["users"]:
        assert 0 < users.height <= 50
        assert users.join(train, on="user_id", how="anti").height == 0


def test_l2_is_chosen_per_dataset(bundles: pl.DataFrame, popular: pl.DataFrame) -> None:
    """Bundles reward a near-exact regression, independent popular draws a strong prior."""
    grid = {"l2": (1.0, 1000.0)}
    start = EASEParams(l2=1.0)
    on_bundles = tune_ease(bundles, grid=grid, start=start, extend=0)
    on_popular = tune_ease(popular, grid=grid, start=start, extend=0)
    assert on_bundles.params.l2 == 1.0
    assert on_popular.params.l2 == 1000.0
    for tuned in (on_bundles, on_popular):
        assert [params["l2"] for params, _ in tuned.results] == [1.0, 1000.0]
        assert tuned.validation_ndcg == max(ndcg for _, ndcg in tuned.results)


def test_tuned_reports_the_whole_grid(popular: pl.DataFrame) -> None:
    tuned = tune_ease(popular, start=EASEParams(l2=EASE_GRID["l2"][0]))
    tried = [params["l2"] for params, _ in tuned.results]
    assert tried[: len(EASE_GRID["l2"])] == list(EASE_GRID["l2"])
    table = tuned.as_frame()
    assert table.columns == ["l2", "max_items", "precision", "ndcg@10"]
    assert table.height == len(tried)
    best = table.sort("ndcg@10", descending=True).row(0, named=True)
    assert tuned.params.l2 == best["l2"]
    assert tuned.validation_ndcg == best["ndcg@10"] > 0


def test_tune_als_returns_its_grid(bundles: pl.DataFrame) -> None:
    tuned = tune_als(bundles, grid={"factors": (4, 8)}, extend=0)
    assert [params["factors"] for params, _ in tuned.results] == [16, 4, 8]
    assert tuned.params.factors in (16, 4, 8)
    assert tuned.validation_ndcg == max(ndcg for _, ndcg in tuned.results) > 0


@dataclass(frozen=True)
class Knobs:
    scale: float = 1.0
    size: int = 1


def test_coordinate_search_steps_past_a_float_grid_edge() -> None:
    """The best scale (1000) lies beyond the grid: the search steps out by the grid's ratio
    and stops at the first step that does not improve; integers are never extended."""

    def score(k: Knobs) -> float:
        return -((math.log10(k.scale) - 3) ** 2) - (k.size - 8) ** 2

    tuned = coordinate_search(Knobs(), {"scale": (1.0, 10.0, 100.0), "size": (1, 2, 4)}, score)
    assert tuned.params == Knobs(scale=1000.0, size=4)
    assert [(p["scale"], p["size"]) for p, _ in tuned.results] == [
        (1.0, 1),
        (10.0, 1),
        (100.0, 1),
        (1000.0, 1),
        (10000.0, 1),
        (1000.0, 2),
        (1000.0, 4),
    ]


def test_coordinate_search_refuses_unknown_parameters() -> None:
    with pytest.raises(ValueError, match="unknown parameters"):
        coordinate_search(Knobs(), {"lambda": (1.0,)}, lambda k: 0.0)
