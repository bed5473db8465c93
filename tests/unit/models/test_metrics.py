"""Offline metrics on hand-made tables; every expected value is worked out in a comment."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from models.evaluation.metrics import (
    catalogue_coverage,
    evaluate,
    hit_rate_at_k,
    intra_list_diversity,
    item_popularity,
    map_at_k,
    mrr,
    ndcg_at_k,
    novelty,
    per_user_metrics,
    precision_at_k,
    recall_at_k,
)
from models.evaluation.report import by_activity_bucket, side_by_side


def recs_of(lists: dict[int, list[str]]) -> pl.DataFrame:
    rows = [
        {"user_id": user, "item_id": item, "rank": rank}
        for user, items in lists.items()
        for rank, item in enumerate(items, start=1)
    ]
    return pl.DataFrame(rows, schema={"user_id": pl.Int64, "item_id": pl.Utf8, "rank": pl.Int64})


def truth_of(pairs: dict[int, list[str]]) -> pl.DataFrame:
    rows = [{"user_id": u, "item_id": i} for u, items in pairs.items() for i in items]
    return pl.DataFrame(rows, schema={"user_id": pl.Int64, "item_id": pl.Utf8})


# User 1: list a b c, relevant a c (ranks 1 and 3).
RECS = recs_of({1: ["a", "b", "c"]})
TEST = truth_of({1: ["a", "c"]})


def test_hand_computed_single_user() -> None:
    # DCG = 1/log2(2) + 1/log2(4) = 1.5; IDCG = 1/log2(2) + 1/log2(3)
    assert ndcg_at_k(RECS, TEST, 3) == pytest.approx(
        (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    )
    # AP@3 = (P@1 + P@3) / min(3, 2) = (1 + 2/3) / 2 = 5/6
    assert map_at_k(RECS, TEST, 3) == pytest.approx(5 / 6)
    assert mrr(RECS, TEST) == pytest.approx(1.0)  # first hit at rank 1
    assert recall_at_k(RECS, TEST, 3) == pytest.approx(1.0)  # 2 of 2
    assert recall_at_k(RECS, TEST, 2) == pytest.approx(0.5)  # only a in top 2
    assert precision_at_k(RECS, TEST, 3) == pytest.approx(2 / 3)
    assert precision_at_k(RECS, TEST, 2) == pytest.approx(1 / 2)
    assert hit_rate_at_k(RECS, TEST, 1) == 1.0


def test_k_truncation() -> None:
    # @2: DCG = 1 (only a); IDCG@2 = 1 + 1/log2(3) (two relevant items fit in 2 slots)
    assert ndcg_at_k(RECS, TEST, 2) == pytest.approx(1 / (1 + 1 / math.log2(3)))
    # @1: DCG = IDCG = 1
    assert ndcg_at_k(RECS, TEST, 1) == pytest.approx(1.0)
    # AP@2 = P@1 / min(2, 2) = 1/2; AP@1 = 1 / min(1, 2) = 1
    assert map_at_k(RECS, TEST, 2) == pytest.approx(0.5)
    assert map_at_k(RECS, TEST, 1) == pytest.approx(1.0)
    # a list b a: first hit at 2 -> RR 1/2, but @1 there is no hit -> 0
    late = recs_of({1: ["b", "a"]})
    assert mrr(late, TEST) == pytest.approx(0.5)
    assert mrr(late, TEST, k=1) == 0.0
    assert hit_rate_at_k(late, TEST, 1) == 0.0


def test_perfect_and_hopeless_rankings() -> None:
    test = truth_of({1: ["a", "b"], 2: ["x"]})
    perfect = recs_of({1: ["a", "b", "z"], 2: ["x", "y"]})
    for k in (1, 2, 3, 10):
        assert ndcg_at_k(perfect, test, k) == pytest.approx(1.0)
        assert map_at_k(perfect, test, k) == pytest.approx(1.0)
    assert mrr(perfect, test) == 1.0
    assert recall_at_k(perfect, test, 2) == 1.0
    hopeless = recs_of({1: ["q", "r"], 2: ["s"]})
    for metric in (ndcg_at_k, map_at_k, recall_at_k, precision_at_k, hit_rate_at_k):
        assert metric(hopeless, test, 10) == 0.0
    assert mrr(hopeless, test) == 0.0


def test_users_without_recommendations_count_as_zero() -> None:
    # user 2 has a relevant item but no list: mean over both users = (1 + 0) / 2
    test = truth_of({1: ["a"], 2: ["b"]})
    recs = recs_of({1: ["a"]})
    assert ndcg_at_k(recs, test, 10) == pytest.approx(0.5)
    assert recall_at_k(recs, test, 10) == pytest.approx(0.5)
    assert mrr(recs, test) == pytest.approx(0.5)
    # user 3 has a list but nothing relevant in test: ignored, not a 0
    recs3 = recs_of({1: ["a"], 3: ["zz"]})
    assert ndcg_at_k(recs3, truth_of({1: ["a"]}), 10) == pytest.approx(1.0)


def test_graded_relevance_orders_the_ideal() -> None:
    # relevance: a=1, b=3. List a b.
    # DCG = (2^1-1)/log2(2) + (2^3-1)/log2(3) = 1 + 7/log2(3)
    # IDCG puts b first: 7/log2(2) + 1/log2(3) = 7 + 1/log2(3)
    test = pl.DataFrame({"user_id": [1, 1], "item_id": ["a", "b"], "relevance": [1, 3]})
    recs = recs_of({1: ["a", "b"]})
    expected = (1 + 7 / math.log2(3)) / (7 + 1 / math.log2(3))
    assert ndcg_at_k(recs, test, 2) == pytest.approx(expected)
    assert ndcg_at_k(recs_of({1: ["b", "a"]}), test, 2) == pytest.approx(1.0)
    # @1 with only a shown: 1 / 7
    assert ndcg_at_k(recs, test, 1) == pytest.approx(1 / 7)


def test_zero_relevance_rows_are_not_hits_and_duplicates_keep_the_best() -> None:
    # a was passed (relevance 0), b liked twice (1 then 2): relevant set is {b: 2}
    test = pl.DataFrame({"user_id": [1, 1, 1], "item_id": ["a", "b", "b"], "relevance": [0, 1, 2]})
    recs = recs_of({1: ["a", "b"]})
    # DCG = 3/log2(3), IDCG = 3 -> 1/log2(3)
    assert ndcg_at_k(recs, test, 2) == pytest.approx(1 / math.log2(3))
    assert precision_at_k(recs, test, 2) == pytest.approx(0.5)


def test_ranks_are_positions_and_event_id_is_accepted() -> None:
    # ranks 3, 7 (gaps after filtering) mean positions 1, 2; a duplicate item keeps its best rank
    recs = pl.DataFrame({"user_id": [1, 1, 1], "event_id": ["b", "a", "b"], "rank": [3, 7, 9]})
    test = pl.DataFrame({"user_id": [1], "event_id": ["a"]})
    assert mrr(recs, test) == pytest.approx(0.5)
    assert precision_at_k(recs, test, 2) == pytest.approx(0.5)
    assert recall_at_k(recs, test, 1) == 0.0


def test_bad_columns_name_the_column() -> None:
    with pytest.raises(ValueError, match="'rank'"):
        ndcg_at_k(RECS.drop("rank"), TEST, 10)
    with pytest.raises(ValueError, match="'item_id'"):
        ndcg_at_k(RECS, TEST.drop("item_id"), 10)
    with pytest.raises(ValueError, match="'user_id'"):
        ndcg_at_k(RECS, TEST.with_columns(pl.col("user_id").cast(pl.Utf8)), 10)
    with pytest.raises(ValueError, match="k must be"):
        ndcg_at_k(RECS, TEST, 0)


def reference_ndcg(recs: pl.DataFrame, test: pl.DataFrame, k: int) -> float:
    """Textbook loop implementation, to cross-check the vectorised one."""
    relevance: dict[int, dict[str, float]] = {}
    for user, item, rel in test.iter_rows():
        if rel > 0:
            relevance.setdefault(user, {})[item] = max(rel, relevance.get(user, {}).get(item, 0))
    lists: dict[int, list[tuple[int, str]]] = {}
    for user, item, rank in recs.iter_rows():
        lists.setdefault(user, []).append((rank, item))
    scores = []
    for user, rels in relevance.items():
        ranked = [item for _, item in sorted(lists.get(user, []))][:k]
        dcg = sum((2 ** rels.get(item, 0) - 1) / math.log2(i + 2) for i, item in enumerate(ranked))
        ideal = sorted(rels.values(), reverse=True)[:k]
        idcg = sum((2**rel - 1) / math.log2(i + 2) for i, rel in enumerate(ideal))
        scores.append(dcg / idcg)
    return sum(scores) / len(scores)


@pytest.mark.parametrize("k", [1, 5, 10, 50])
def test_ndcg_matches_a_loop_reference_on_random_data(k: int) -> None:
    rng = np.random.default_rng(42)
    n_users, n_items = 60, 40
    rec_rows = []
    for user in range(n_users):
        if user % 7 == 0:
            continue  # some users get no list at all
        items = rng.choice(n_items, size=int(rng.integers(1, 30)), replace=False)
        rec_rows += [(user, f"i{item}", rank) for rank, item in enumerate(items, start=1)]
    recs = pl.DataFrame(rec_rows, schema=["user_id", "item_id", "rank"], orient="row")
    test_rows = []
    for user in range(n_users):
        items = rng.choice(n_items, size=int(rng.integers(1, 8)), replace=False)
        test_rows += [(user, f"i{item}", float(rng.integers(0, 4))) for item in items]
    test = pl.DataFrame(test_rows, schema=["user_id", "item_id", "relevance"], orient="row")
    assert abs(ndcg_at_k(recs, test, k) - reference_ndcg(recs, test, k)) < 1e-9


def test_per_user_frame() -> None:
    frame = per_user_metrics(RECS, TEST, 3)
    assert frame.columns == [
        "user_id", "n_relevant", "ndcg", "recall", "precision", "map", "hit_rate", "rr"
    ]  # fmt: skip
    assert frame.row(0, named=True)["n_relevant"] == 2


def test_coverage() -> None:
    recs = recs_of({1: ["a", "b"], 2: ["a", "c"]})
    assert catalogue_coverage(recs, 10) == pytest.approx(3 / 10)  # a b c of 10
    assert catalogue_coverage(recs, 10, k=1) == pytest.approx(1 / 10)  # only a
    with pytest.raises(ValueError):
        catalogue_coverage(recs, 0)


def test_novelty() -> None:
    # train: a 3 times, b once -> N = 4; p(a) = 3/4, p(b) = 1/4; c unseen counts as 1 -> 1/4
    train = truth_of({1: ["a", "b"], 2: ["a"], 3: ["a"]})
    pop = item_popularity(train)
    # user 1 sees a, b: mean(-log2 .75, 2); user 2 sees c: 2
    recs = recs_of({1: ["a", "b"], 2: ["c"]})
    user1 = (-math.log2(0.75) + 2) / 2
    assert novelty(recs, pop) == pytest.approx((user1 + 2) / 2)
    assert novelty(recs, pop, k=1) == pytest.approx((-math.log2(0.75) + 2) / 2)


def test_intra_list_diversity_by_category() -> None:
    cats = pl.DataFrame(
        {"item_id": ["a", "b", "c", "d"], "category": ["jazz", "jazz", "food", None]}
    )
    # user 1: a b c -> pairs ab (same) ac bc (differ): 2/3
    # user 2: a b -> 0; user 3: d c -> d unknown, 1 known item: skipped
    recs = recs_of({1: ["a", "b", "c"], 2: ["a", "b"], 3: ["d", "c"]})
    assert intra_list_diversity(recs, cats) == pytest.approx((2 / 3 + 0) / 2)
    assert intra_list_diversity(recs, cats, k=2) == pytest.approx(0.0)  # a b, a b


def test_intra_list_diversity_by_embedding() -> None:
    emb = pl.DataFrame(
        {"item_id": ["x", "y", "z"], "embedding": [[1.0, 0.0], [2.0, 0.0], [0.0, 3.0]]}
    )
    # x y z: cos(x,y)=1, cos(x,z)=0, cos(y,z)=0 -> mean distance (0 + 1 + 1) / 3
    recs = recs_of({1: ["x", "y", "z"]})
    assert intra_list_diversity(recs, emb) == pytest.approx(2 / 3)
    # 45 degrees: distance 1 - 1/sqrt(2)
    emb2 = pl.DataFrame({"item_id": ["p", "q"], "embedding": [[1.0, 0.0], [1.0, 1.0]]})
    assert intra_list_diversity(recs_of({1: ["p", "q"]}), emb2) == pytest.approx(
        1 - 1 / math.sqrt(2)
    )
    with pytest.raises(ValueError, match="category"):
        intra_list_diversity(recs, emb.drop("embedding"))


def test_evaluate_names_everything() -> None:
    train = truth_of({1: ["z"], 2: ["z", "y"]})
    cats = pl.DataFrame({"item_id": ["a", "b", "c"], "category": ["x", "y", "x"]})
    result = evaluate(RECS, TEST, (3, 10), train=train, item_features=cats)
    for name in ("ndcg@3", "recall@10", "map@3", "precision@10", "hit_rate@3", "ild@10"):
        assert name in result
    assert result["mrr"] == 1.0
    assert result["users"] == 1.0
    assert result["map@3"] == pytest.approx(5 / 6)
    # catalogue = a b c (recs, test) + y z (train) = 5; 3 recommended
    assert result["coverage"] == pytest.approx(3 / 5)
    assert "novelty" in result
    assert evaluate(RECS, TEST, (10,), catalogue_size=30)["coverage"] == pytest.approx(0.1)


def test_side_by_side_sorts_by_ndcg() -> None:
    table = side_by_side(
        {
            "random": {"ndcg@10": 0.1, "mrr": 0.2},
            "ranker": {"ndcg@10": 0.5, "mrr": 0.6, "novelty": 3.0},
            "popularity": {"ndcg@10": 0.3, "mrr": 0.4},
        }
    )
    assert table["model"].to_list() == ["ranker", "popularity", "random"]
    assert table.columns == ["model", "ndcg@10", "mrr", "novelty"]
    assert table.filter(pl.col("model") == "random")["novelty"].to_list() == [None]


def test_by_activity_bucket() -> None:
    # user 1: 1 train interaction, perfect; user 2: 6, miss; user 3: 6, perfect
    train = truth_of({1: ["t"], 2: [f"t{i}" for i in range(6)], 3: [f"t{i}" for i in range(6)]})
    test = truth_of({1: ["a"], 2: ["b"], 3: ["c"]})
    recs = recs_of({1: ["a"], 2: ["x"], 3: ["c"]})
    table = by_activity_bucket(recs, test, train, buckets=(1, 5, 20))
    assert table["bucket"].to_list() == ["0", "1-4", "5-19", "20+"]
    assert table["users"].to_list() == [0, 1, 2, 0]
    assert table["ndcg@10"].to_list() == [None, 1.0, 0.5, None]
