"""EASE and item-kNN: against reference computations done here by hand or by numpy."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp

import models.ease
import models.item_item
import models.item_knn
from models.base import CandidateModel, ModelFitError, NotFittedError
from models.ease import EASEModel, EASEParams, invert_spd_in_place
from models.item_knn import ItemKNNModel, ItemKNNParams

PairsFrame = Callable[[list[tuple[int, str]]], pl.DataFrame]  # the conftest fixture's type

# 5 users x 4 events a-d; user 3 likes c twice as much; user 0 passed d.
X = np.array(
    [[1, 1, 0, 0], [1, 0, 1, 0], [0, 1, 2, 1], [1, 1, 1, 0], [0, 0, 1, 1]], dtype=np.float64
)
EVENTS = ["a", "b", "c", "d"]
TINY = pl.concat(
    [
        pl.DataFrame(
            [(u, EVENTS[i], X[u, i]) for u, i in zip(*np.nonzero(X), strict=True)],
            schema={"user_id": pl.Int64, "event_id": pl.Utf8, "weight": pl.Float64},
            orient="row",
        ),
        pl.DataFrame({"user_id": [0], "event_id": ["d"], "weight": [0.0]}),
    ]
)
PAIR = ["user_id", "event_id"]


def ease_reference(x: np.ndarray, l2: float) -> np.ndarray:
    """Steck (2019), eq. 8, in float64 with a general inverse."""
    p = np.linalg.inv(x.T @ x + l2 * np.eye(x.shape[1]))
    b = p / -np.diag(p)
    np.fill_diagonal(b, 0.0)
    return b


def recommend_all(model: CandidateModel, frame: pl.DataFrame, n: int = 10) -> pl.DataFrame:
    users = frame.select("user_id").unique().sort("user_id").with_columns(metro=pl.lit("sf"))
    candidates = frame.select("event_id").unique().with_columns(metro=pl.lit("sf"))
    return model.recommend(
        users=users, candidates=candidates, exclude=frame.select("user_id", "event_id"), n=n
    )


# --------------------------------------------------------------------------- the contract

MODELS: dict[str, Callable[[], CandidateModel]] = {
    "ease": lambda: EASEModel(EASEParams(l2=10.0)),
    "item_knn": ItemKNNModel,
}


def two_metros(bundles: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Users split over sf and oak, bundles 0-14 (and the blockbuster) in sf, 15-29 in oak."""
    users = bundles.select("user_id").unique().sort("user_id")
    users = users.with_columns(metro=pl.when(pl.col("user_id") % 2 == 0).then(pl.lit("sf")))
    users = users.with_columns(pl.col("metro").fill_null("oak"))
    events = bundles.select("event_id").unique().sort("event_id")
    in_oak = pl.col("event_id").str.slice(1, 2).cast(pl.Int32, strict=False).fill_null(0) >= 15
    candidates = events.with_columns(
        metro=pl.when(in_oak).then(pl.lit("oak")).otherwise(pl.lit("sf"))
    )
    return users, candidates


@pytest.mark.parametrize("name", MODELS)
def test_lists_are_ranked_unseen_and_in_the_users_metro(name: str, bundles: pl.DataFrame) -> None:
    model = MODELS[name]().fit(bundles)
    users, candidates = two_metros(bundles)
    recs = model.recommend(users=users, candidates=candidates, exclude=bundles.select(PAIR), n=5)
    assert recs["user_id"].n_unique() == users.height
    for _, group in recs.group_by("user_id"):
        assert group["rank"].to_list() == list(range(1, group.height + 1))
        assert group.height <= 5
        assert group["event_id"].n_unique() == group.height
        assert group["score"].is_sorted(descending=True)
    assert recs.join(bundles, on=PAIR).height == 0
    metros = recs.join(users, on="user_id").join(candidates, on="event_id", suffix="_event")
    assert (metros["metro"] == metros["metro_event"]).all()


@pytest.mark.parametrize("name", MODELS)
def test_unknown_users_and_events_get_nothing(name: str, bundles: pl.DataFrame) -> None:
    """Like ALS: a user or an event the fit never saw is left to the other generators."""
    model = MODELS[name]().fit(bundles)
    events = bundles["event_id"].unique().to_list() + ["brand_new"]
    recs = model.recommend(
        users=pl.DataFrame({"user_id": [0, 999], "metro": "sf"}),
        candidates=pl.DataFrame({"event_id": events, "metro": "sf"}),
        exclude=bundles.select(PAIR),
        n=100,
    )
    assert set(recs["user_id"]) == {0}
    assert recs.height > 0
    assert "brand_new" not in recs["event_id"].to_list()


@pytest.mark.parametrize("name", MODELS)
def test_unfitted_model_refuses(name: str, tmp_path: Path) -> None:
    with pytest.raises(NotFittedError):
        recommend_all(MODELS[name](), TINY)
    with pytest.raises(NotFittedError):
        MODELS[name]().save(tmp_path / "model.npz")


@pytest.mark.parametrize("name", MODELS)
def test_completes_a_bundle(name: str, bundles: pl.DataFrame) -> None:
    """Hide one event of user 0's bundle: it comes first."""
    user_events = bundles.filter(pl.col("user_id") == 0)["event_id"].sort().to_list()
    hidden = next(e for e in user_events if e.startswith("b"))
    train = bundles.filter((pl.col("user_id") != 0) | (pl.col("event_id") != hidden))
    recs = recommend_all(MODELS[name]().fit(train), train, n=1)
    assert recs.filter(pl.col("user_id") == 0)["event_id"].to_list() == [hidden]


# --------------------------------------------------------------------------- EASE


@pytest.mark.parametrize("block_entries", [1 << 24, 4, 8])
def test_ease_matches_the_dense_formula(
    monkeypatch: pytest.MonkeyPatch, block_entries: int
) -> None:
    """Row blocks of 4, 1 and 2 items: the blocked Gram matrix and the mirrored inverse."""
    monkeypatch.setattr(models.ease, "BLOCK_ENTRIES", block_entries)
    reference = ease_reference(X, l2=2.0)
    exact = EASEModel(EASEParams(l2=2.0, precision="float64")).fit(TINY)
    assert exact.history.event_ids.tolist() == EVENTS
    np.testing.assert_allclose(exact.weights, reference, rtol=1e-10, atol=1e-12)
    single = EASEModel(EASEParams(l2=2.0)).fit(TINY)
    assert single.weights.dtype == np.float32
    np.testing.assert_allclose(single.weights, reference, rtol=1e-4, atol=1e-6)


def test_ease_scores_are_history_times_weights() -> None:
    model = EASEModel(EASEParams(l2=2.0, precision="float64")).fit(TINY)
    recs = recommend_all(model, TINY)
    expected = X @ ease_reference(X, l2=2.0)
    for user, event, score in recs.select("user_id", "event_id", "score").iter_rows():
        assert score == pytest.approx(expected[user, EVENTS.index(event)], rel=1e-9)
    # user 0 liked a and b and passed d: only c is left, the pass is excluded but not learned
    assert recs.filter(pl.col("user_id") == 0)["event_id"].to_list() == ["c"]
    assert recs.join(TINY, on=["user_id", "event_id"]).height == 0


def test_ease_ignores_passes() -> None:
    liked_only = EASEModel(EASEParams(l2=2.0)).fit(TINY.filter(pl.col("weight") > 0))
    with_passes = EASEModel(EASEParams(l2=2.0)).fit(TINY)
    np.testing.assert_array_equal(liked_only.weights, with_passes.weights)


def test_ease_recommends_per_metro() -> None:
    model = EASEModel(EASEParams(l2=2.0)).fit(TINY)
    candidates = pl.DataFrame({"event_id": EVENTS, "metro": ["sf", "sf", "oak", "oak"]})
    users = pl.DataFrame({"user_id": [1, 4], "metro": ["sf", "oak"]})
    recs = model.recommend(users=users, candidates=candidates, exclude=TINY.head(0), n=4)
    assert set(recs.filter(pl.col("user_id") == 1)["event_id"]) == {"a", "b"}
    assert set(recs.filter(pl.col("user_id") == 4)["event_id"]) == {"c", "d"}


def test_ease_keeps_only_the_most_popular_items(pairs_frame: PairsFrame) -> None:
    """max_items=3 keeps p1-p3 (5, 4, 3 users); `rare` (1 user) gets no score, and its only
    fan (user 9) gets nothing from EASE, like a user ALS never saw."""
    rows = [(u, "p1") for u in range(5)] + [(u, "p2") for u in range(1, 5)]
    rows += [(u, "p3") for u in range(2, 5)] + [(9, "rare")]
    frame = pairs_frame(rows)
    model = EASEModel(EASEParams(l2=1.0, max_items=3)).fit(frame)
    assert model.history.event_ids.tolist() == ["p1", "p2", "p3"]
    assert model.weights.shape == (3, 3)
    candidates = pl.DataFrame({"event_id": ["p1", "p2", "p3", "rare"], "metro": "sf"})
    users = pl.DataFrame({"user_id": [0, 1, 9], "metro": "sf"})
    recs = model.recommend(
        users=users, candidates=candidates, exclude=frame.select("user_id", "event_id"), n=3
    )
    assert "rare" not in recs["event_id"].to_list()
    assert 9 not in recs["user_id"].to_list()
    assert recs.filter(pl.col("user_id") == 0)["event_id"].sort().to_list() == ["p2", "p3"]
    assert recs.filter(pl.col("user_id") == 1)["event_id"].to_list() == ["p3"]


def test_ease_save_load_round_trip(tmp_path: Path) -> None:
    model = EASEModel(EASEParams(l2=3.0, max_items=3)).fit(TINY)
    path = tmp_path / "ease.npz"
    model.save(path)
    with np.load(path, allow_pickle=False) as data:  # plain arrays only
        assert data["weights"].shape == (3, 3)
    loaded = EASEModel.load(path)
    assert loaded.params == model.params
    np.testing.assert_array_equal(loaded.weights, model.weights)
    assert recommend_all(loaded, TINY).equals(recommend_all(model, TINY))


@pytest.mark.parametrize(("setting", "value"), [("USER_CHUNK", 128), ("BLOCK_SCORES", 3000)])
def test_scoring_in_user_chunks_changes_nothing(
    monkeypatch: pytest.MonkeyPatch, bundles: pl.DataFrame, setting: str, value: int
) -> None:
    """300 users in chunks of 128, or of 49 (3000 scores over 61 events)."""
    for model in (EASEModel(EASEParams(l2=10.0)).fit(bundles), ItemKNNModel().fit(bundles)):
        whole = recommend_all(model, bundles)
        with monkeypatch.context() as patch:
            patch.setattr(models.item_item, setting, value)
            assert recommend_all(model, bundles).equals(whole)


def test_in_place_inverse_matches_numpy() -> None:
    rng = np.random.default_rng(3)
    a = rng.random((40, 12))
    gram = a.T @ a + np.eye(12)
    expected = np.linalg.inv(gram)
    inverse = invert_spd_in_place(gram)
    assert np.shares_memory(inverse, gram)
    np.testing.assert_allclose(inverse, expected, rtol=1e-10)


def test_no_positive_interactions_fails_loudly() -> None:
    passes = TINY.with_columns(weight=pl.lit(0.0))
    for model in (EASEModel(), ItemKNNModel()):
        with pytest.raises(ModelFitError):
            model.fit(passes)


# --------------------------------------------------------------------------- item-kNN

# users 1-4 over a, b, c: a = (1,1,0,1), b = (1,1,0,0), c = (0,1,1,0) as columns, so
# cos(a,b) = 2/sqrt(6), cos(a,c) = 1/sqrt(6), cos(b,c) = 1/2.
HAND = pl.DataFrame(
    {"user_id": [1, 1, 2, 2, 2, 3, 4], "event_id": ["a", "b", "a", "b", "c", "c", "a"]}
).with_columns(weight=pl.lit(1.0))


def test_item_knn_cosine_matches_the_hand_computation() -> None:
    model = ItemKNNModel(ItemKNNParams(weighting="cosine")).fit(HAND)
    s6 = np.sqrt(6.0)
    expected = np.array([[0, 2 / s6, 1 / s6], [2 / s6, 0, 0.5], [1 / s6, 0.5, 0]])
    np.testing.assert_allclose(model.similarity.toarray(), expected, rtol=1e-6)
    recs = recommend_all(model, HAND)
    user_4 = recs.filter(pl.col("user_id") == 4)
    assert user_4["event_id"].to_list() == ["b", "c"]
    assert user_4["score"].to_list() == pytest.approx([2 / s6, 1 / s6], rel=1e-6)
    user_3 = recs.filter(pl.col("user_id") == 3)  # liked c: b (1/2) before a (1/sqrt 6)
    assert user_3["event_id"].to_list() == ["b", "a"]
    assert user_3["score"].to_list() == pytest.approx([0.5, 1 / s6], rel=1e-6)


def test_item_knn_shrink_and_neighbours() -> None:
    shrunk = ItemKNNModel(ItemKNNParams(weighting="cosine", shrink=1.0)).fit(HAND)
    s6 = np.sqrt(6.0)
    assert shrunk.similarity[0, 1] == pytest.approx(2 / (s6 + 1), rel=1e-6)
    assert shrunk.similarity[1, 2] == pytest.approx(1 / 3, rel=1e-6)
    nearest = ItemKNNModel(ItemKNNParams(weighting="cosine", neighbours=1)).fit(HAND)
    assert nearest.similarity.getnnz(axis=1).tolist() == [1, 1, 1]
    assert nearest.similarity[0, 1] > 0  # a's nearest is b
    # user 4 liked only a, whose single neighbour is b: c has no support and is left out
    recs = recommend_all(nearest, HAND)
    assert recs.filter(pl.col("user_id") == 4)["event_id"].to_list() == ["b"]


@pytest.mark.filterwarnings("ignore:Method expects CSR input")  # implicit's own conversion
@pytest.mark.parametrize("block_entries", [1 << 24, 200])  # 1 block, or 21 of 3 items
def test_item_knn_cosine_matches_implicit(
    monkeypatch: pytest.MonkeyPatch, bundles: pl.DataFrame, block_entries: int
) -> None:
    """With every neighbour kept, the similarities are implicit's CosineRecommender's (whose
    diagonal, the item itself, we drop)."""
    from implicit.nearest_neighbours import CosineRecommender

    monkeypatch.setattr(models.item_knn, "BLOCK_ENTRIES", block_entries)
    model = ItemKNNModel(ItemKNNParams(weighting="cosine", neighbours=1000)).fit(bundles)
    theirs = CosineRecommender(K=1000)
    theirs.fit(model.history.user_items, show_progress=False)
    expected = theirs.similarity.toarray()
    np.fill_diagonal(expected, 0.0)
    np.testing.assert_allclose(model.similarity.toarray(), expected, rtol=1e-5, atol=1e-7)


def test_item_knn_bm25_weights_items_as_documents() -> None:
    """BM25 written out by hand (items are documents, users are terms), then cosines."""
    k1, b = 1.2, 0.75
    model = ItemKNNModel(ItemKNNParams(weighting="bm25", k1=k1, b=b)).fit(TINY)
    items_users = X.T  # documents x terms
    idf = np.log(items_users.shape[0]) - np.log1p((items_users > 0).sum(axis=0))
    length = items_users.sum(axis=1)
    norm = (1 - b) + b * length / length.mean()
    weighted = np.where(
        items_users > 0,
        items_users * (k1 + 1) / (k1 * norm[:, None] + items_users) * idf[None, :],
        0.0,
    )
    unit = weighted / np.linalg.norm(weighted, axis=1, keepdims=True)
    expected = unit @ unit.T
    np.fill_diagonal(expected, 0.0)
    expected[expected <= 0] = 0.0
    np.testing.assert_allclose(model.similarity.toarray(), expected, rtol=1e-5, atol=1e-7)


def test_item_knn_save_load_round_trip(tmp_path: Path, bundles: pl.DataFrame) -> None:
    model = ItemKNNModel(ItemKNNParams(neighbours=5, shrink=2.0)).fit(bundles)
    path = tmp_path / "knn.npz"
    model.save(path)
    loaded = ItemKNNModel.load(path)
    assert loaded.params == model.params
    assert (loaded.similarity != model.similarity).nnz == 0
    assert isinstance(loaded.similarity, sp.csr_matrix)
    assert recommend_all(loaded, bundles).equals(recommend_all(model, bundles))
