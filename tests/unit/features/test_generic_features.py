"""Generic features: shares and ranks that mean the same whatever the size of the history."""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl
import pytest

from features.generic import (
    category_slug,
    generator_evidence,
    history_features,
    item_popularity,
    item_recency,
    top_categories,
    user_activity,
)

T0 = datetime(2024, 1, 1)


def _history() -> pl.DataFrame:
    rows = [(1, "a", 0), (1, "b", 1), (1, "c", 2), (2, "a", 3), (3, "a", 10), (3, "b", 10)]
    return pl.DataFrame(
        [(u, e, T0 + timedelta(days=d)) for u, e, d in rows],
        schema={"user_id": pl.Int64, "event_id": pl.Utf8, "timestamp": pl.Datetime("us")},
        orient="row",
    )


def test_counts_become_shares_that_survive_doubling_the_history() -> None:
    history = _history()
    doubled = pl.concat([history, history])
    for table, key in ((user_activity, "user_id"), (item_popularity, "event_id")):
        assert table(history).sort(key).equals(table(doubled).sort(key))
    items = item_popularity(history).sort("event_id")
    assert items["item_share"].to_list() == pytest.approx([3 / 6, 2 / 6, 1 / 6])
    assert items["item_user_share"].to_list() == pytest.approx([1.0, 2 / 3, 1 / 3])


def test_recency_is_measured_to_the_end_of_the_history() -> None:
    recency = item_recency(_history())
    assert recency is not None
    row = recency.filter(pl.col("event_id") == "c").row(0, named=True)
    assert row["item_days_since_last"] == pytest.approx(8.0)
    assert row["item_days_since_first"] == pytest.approx(8.0)
    assert item_recency(_history().drop("timestamp")) is None


def test_generator_evidence_ranks_rescales_and_fuses() -> None:
    candidates = pl.DataFrame(
        {
            "user_id": [1, 1, 1],
            "event_id": ["x", "y", "z"],
            "score_ease": [0.9, -0.3, None],
            "score_als": [2.0, 4.0, 3.0],
        }
    )
    out = generator_evidence(candidates, ["ease", "als"]).sort("event_id")
    assert out["rank_ease"].to_list() == [1.0, 2.0, None]
    assert out["rank_als"].to_list() == [3.0, 1.0, 2.0]
    assert out["score_ease"].to_list() == [1.0, 0.0, None]
    assert out["n_sources"].to_list() == [2, 2, 1]
    assert out["rrf"][0] == pytest.approx(1 / 61 + 1 / 63)


def test_category_features_follow_the_item_file() -> None:
    history = _history()
    categories = pl.DataFrame(
        {"event_id": ["a", "b", "c", "c"], "category": ["Sci-Fi", "Drama", "Drama", "Kids"]}
    )
    assert top_categories(categories) == ("Drama", "Kids", "Sci-Fi")
    assert category_slug("Children's") == "children_s"
    describe = history_features(history, generators=[], item_categories=categories)
    frame = describe(pl.DataFrame({"user_id": [2, 2], "event_id": ["a", "c"]})).sort("event_id")
    assert frame["cat_sci_fi"].to_list() == [1, 0] and frame["cat_drama"].to_list() == [0, 1]
    # user 2 only ever saw "a" (Sci-Fi): full match for a, none for c
    assert frame["category_match_mean"].to_list() == pytest.approx([1.0, 0.0])
