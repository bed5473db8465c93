"""The project's pipeline on any interaction file: its ranker never sees the test side, its
features follow the item file, and its re-rank only reorders."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import polars as pl
import pytest

from models.evaluation import load_interactions, random_split, time_split
from models.evaluation.protocols import Split, leave_one_out, load_items
from models.generic import (
    Items,
    PipelineConfig,
    UserCodes,
    carves,
    featurizer,
    generators,
    pipeline_recommendations,
    pool,
    request_users,
)
from models.ranker import user_validation_split
from models.rerank import diversify_by_category
from models.two_stage import propose

CONFIG = PipelineConfig(per_source=40)


def _split(planted: Any, protocol: str) -> Split:
    frame = load_interactions(planted.interactions)
    if protocol == "random":
        return random_split(frame, test_share=0.25, seed=0)
    if protocol == "time":
        return time_split(frame, test_share=0.25)
    return leave_one_out(frame)


def _rows(frame: pl.DataFrame) -> set[tuple[object, ...]]:
    return set(frame.select("user_id", "item_id", "timestamp").iter_rows())


@pytest.mark.parametrize("protocol", ["random", "time", "leave-one-out"])
def test_label_carves_partition_the_train_side_only(planted: Any, protocol: str) -> None:
    split = _split(planted, protocol)
    config = replace(CONFIG, protocol=protocol, label_share=0.25)
    cut = carves(split.train, config)
    for previous, carved in zip([None, *cut], cut, strict=False):
        # Random carves each partition the train side; leave-one-out steps back, each carve
        # partitioning the train side of the one before it.
        whole = split.train if previous is None or protocol == "random" else previous.train
        assert _rows(carved.train) | _rows(carved.test) == _rows(whole)
        assert not _rows(carved.train) & _rows(carved.test)
        assert not (_rows(carved.train) | _rows(carved.test)) & _rows(split.test)


def test_leave_one_out_carves_step_back_one_item_per_user(planted: Any) -> None:
    """Two carves: each user's last train item, then the one before it; never a later label
    than its own history."""
    split = _split(planted, "leave-one-out")
    first, second = carves(split.train, replace(CONFIG, protocol="leave-one-out", carves=2))
    assert second.test["user_id"].is_unique().all()
    for carved in (first, second):
        last_seen = carved.train.group_by("user_id").agg(pl.col("timestamp").max())
        labelled = carved.test.join(last_seen, on="user_id", suffix="_history")
        assert (labelled["timestamp"] >= labelled["timestamp_history"]).all()
    assert _rows(second.test) <= _rows(first.train)
    one = carves(split.train, replace(CONFIG, protocol="time", carves=2))
    assert len(one) == 1


def test_the_ranker_is_the_same_whatever_the_test_side_holds(planted: Any) -> None:
    """Swapping every test item for another must not change one tree of the ranker."""
    split = _split(planted, "random")
    config = replace(CONFIG, protocol="random", label_share=0.25)
    scrambled = replace(
        split,
        test=split.test.with_columns(pl.col("item_id").shuffle(seed=5)),
    )
    first = pipeline_recommendations(split, 10, config=config)
    second = pipeline_recommendations(scrambled, 10, config=config)
    assert first.trained.rows == second.trained.rows
    booster = first.trained.ranker.booster.model_to_string()
    assert booster == second.trained.ranker.booster.model_to_string()


def test_an_item_file_adds_category_features_and_the_content_generator(planted: Any) -> None:
    split = _split(planted, "random")
    config = replace(CONFIG, protocol="random", label_share=0.25)
    items = Items.of(load_items(planted.items))
    plain = pipeline_recommendations(split, 10, config=config)
    rich = pipeline_recommendations(split, 10, config=config, items=items)
    added = set(rich.features) - set(plain.features)
    assert {"category_match_mean", "category_lift_mean", "cat_group0", "cat_hits"} <= added
    assert "text_similarity" in added and "content" in rich.generators
    assert not {c for c in plain.features if c.startswith("cat")}


def test_category_match_is_the_users_share_of_the_candidates_category(planted: Any) -> None:
    frame = load_interactions(planted.interactions)
    codes = UserCodes.of(frame)
    history = codes.encode(frame)
    items = Items.of(load_items(planted.items))
    fitted = generators(history, CONFIG, items)
    proposed = propose(
        fitted,
        users=request_users(history.filter(pl.col("user_id") == 0)),
        eligible=pool(history),
        exclude=history,
        per_source=20,
    )
    described = featurizer(history, fitted, items)(proposed)
    group = described.filter(pl.col("cat_group0") == 1)  # user 0 is in group 0
    others = described.filter((pl.col("cat_group0") == 0) & (pl.col("cat_hits") == 0))
    assert group.height and others.height
    assert group["category_match_mean"].min() > others["category_match_mean"].max()  # type: ignore[operator]


def test_user_validation_holds_out_whole_users() -> None:
    frame = pl.DataFrame(
        {"user_id": [1, 1, 2, 2, 3, 3, 4, 4, 5, 5], "event_id": list("abababababab")[:10]}
    ).with_columns(created_at=pl.lit(0), label=pl.lit(1))
    train, valid = user_validation_split(frame, 0.4, seed=1)
    assert set(train["user_id"]) & set(valid["user_id"]) == set()
    assert valid["user_id"].n_unique() == 2 and train.height + valid.height == frame.height


def test_rerank_caps_a_primary_category_and_is_a_no_op_without_one() -> None:
    scored = pl.DataFrame(
        {
            "user_id": [1] * 6,
            "event_id": ["a1", "a2", "a3", "a4", "b1", "b2"],
            "score": [6.0, 5.0, 4.0, 3.0, 2.0, 1.0],
        }
    )
    categories = pl.DataFrame(
        {"event_id": ["a1", "a2", "a3", "a4", "b1", "b2"], "category": ["a"] * 4 + ["b"] * 2}
    )
    plain = diversify_by_category(scored, categories=None, n=4)
    assert plain["event_id"].to_list() == ["a1", "a2", "a3", "a4"]
    capped = diversify_by_category(scored, categories=categories, n=4, max_per_category=2)
    assert capped["event_id"].to_list() == ["a1", "a2", "b1", "b2"]
    assert capped["rank"].to_list() == [1, 2, 3, 4]


def test_load_items_splits_categories_and_keeps_missing_columns_null(tmp_path: Any) -> None:
    path = tmp_path / "items.tsv"
    path.write_text("item\tcategory\n1\tAction|Sci-Fi\n2\t\n")
    items = load_items(path)
    assert items["item_id"].to_list() == ["1", "2"]
    assert items["categories"].to_list() == [["Action", "Sci-Fi"], None]
    assert items["title"].null_count() == 2
    with pytest.raises(ValueError, match="needs at least one"):
        (tmp_path / "bare.csv").write_text("item,other\n1,x\n")
        load_items(tmp_path / "bare.csv")
