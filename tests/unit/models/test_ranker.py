"""The ranker must learn the signal that is there, validate on the future, and round-trip safely.

The synthetic examples make one feature (category affinity) drive the label through noise; every
other feature is pure noise. A ranker that works puts that feature first and beats a random
order on the later, held-out swipes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from features.point_in_time import TRAINING_SCHEMA
from models.base import ModelFitError, NotFittedError
from models.ranker import (
    CANDIDATE_FEATURES,
    FEATURES,
    LABEL_GAIN,
    LambdaRanker,
    RankerParams,
    feature_matrix,
    group_sizes,
    time_validation_split,
    with_positive_groups,
)

SIGNAL = "user_category_affinity_before"
PARAMS = RankerParams(n_estimators=150, num_threads=1)


def synthetic_examples(
    n_users: int = 120, per_user: int = 25, snapshots: int = 5, seed: int = 0
) -> pl.DataFrame:
    """Candidate snapshots like `recommender.fitting` builds: one query per user and snapshot.

    Label grows with SIGNAL plus logistic noise; every other feature (the generators' scores
    included, null where a generator did not propose the event) is noise.
    """
    rng = np.random.default_rng(seed)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    users = np.repeat(np.arange(n_users), per_user)
    n_per = users.size
    n = n_per * snapshots
    columns: dict[str, object] = {
        "swipe_id": [f"s{i:05d}" for i in range(n)],
        "user_id": np.tile(users, snapshots),
        "event_id": [f"e{i}" for i in rng.integers(0, 400, n)],
        "created_at": [
            start + timedelta(days=7 * s) for s in range(snapshots) for _ in range(n_per)
        ],
    }
    for name, dtype in TRAINING_SCHEMA.items():
        if name in columns or name == "label":
            continue
        if dtype == pl.Boolean():
            columns[name] = rng.random(n) < 0.3
        elif dtype.is_integer():
            columns[name] = rng.integers(0, 20, n)
        else:
            columns[name] = rng.random(n)
    z = 6.0 * np.asarray(columns[SIGNAL]) - 3.0 + rng.logistic(0.0, 0.7, n)
    columns["label"] = np.where(z > 1.5, 2, np.where(z > 0.0, 1, 0))
    frame = pl.DataFrame(columns).select(TRAINING_SCHEMA.keys()).cast(TRAINING_SCHEMA)  # type: ignore[arg-type]
    scores = {
        name: pl.Series(name, np.where(rng.random(n) < 0.5, rng.random(n), np.nan)).fill_nan(None)
        for name in CANDIDATE_FEATURES
    }
    return frame.with_columns(**scores).sort("user_id", "created_at", "event_id")


def ndcg_at(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray, k: int = 10) -> float:
    """Mean NDCG@k over groups with the same 2^l - 1 gains; ties broken by position."""
    gains = np.asarray(LABEL_GAIN)[labels]
    out, start = [], 0
    for size in groups:
        g, s = gains[start : start + size], scores[start : start + size]
        start += size
        discount = 1.0 / np.log2(np.arange(2, min(k, size) + 2))
        ideal = float(np.sort(g)[::-1][:k] @ discount)
        if ideal > 0:
            out.append(float(g[np.argsort(-s, kind="stable")][:k] @ discount) / ideal)
    return float(np.mean(out))


@pytest.fixture(scope="module")
def examples() -> pl.DataFrame:
    return synthetic_examples()


@pytest.fixture(scope="module")
def fitted(examples: pl.DataFrame) -> LambdaRanker:
    return LambdaRanker().fit(examples, params=PARAMS)


def test_features_are_the_numeric_schema_columns_without_keys() -> None:
    assert SIGNAL in FEATURES and "is_free" in FEATURES
    assert not {"swipe_id", "user_id", "event_id", "created_at", "label"} & set(FEATURES)
    assert len(FEATURES) == len(TRAINING_SCHEMA) - 5


def test_time_split_validates_strictly_on_the_future(examples: pl.DataFrame) -> None:
    train, valid = time_validation_split(examples, valid_share=0.2)
    assert train.height + valid.height == examples.height
    assert 0 < valid.height < examples.height
    assert valid.get_column("created_at").min() > train.get_column("created_at").max()  # type: ignore[operator]
    for part in (train, valid):
        sizes = group_sizes(part)
        assert sizes.sum() == part.height
        # One contiguous group per user and snapshot.
        assert len(sizes) == part.select("user_id", "created_at").n_unique()


def test_learns_the_signal_and_beats_random_on_held_out_groups(
    examples: pl.DataFrame, fitted: LambdaRanker
) -> None:
    _, valid = time_validation_split(examples)
    valid = with_positive_groups(valid)
    scores = fitted.score(valid)
    labels = valid.get_column("label").to_numpy().astype(np.int64)

    top = scores >= np.median(scores)
    assert labels[top].mean() > labels[~top].mean()
    assert fitted.feature_importance().get_column("feature")[0] == SIGNAL

    groups = group_sizes(valid)
    rng = np.random.default_rng(1)
    random_ndcg = np.mean([ndcg_at(labels, rng.random(len(labels)), groups) for _ in range(20)])
    assert 0.0 < fitted.validation_ndcg <= 1.0
    assert 1 <= fitted.best_iteration <= PARAMS.n_estimators
    assert fitted.validation_ndcg > random_ndcg + 0.05
    assert ndcg_at(labels, scores, groups) == pytest.approx(fitted.validation_ndcg, abs=1e-9)


def test_rank_returns_top_n_per_user(examples: pl.DataFrame, fitted: LambdaRanker) -> None:
    candidates = examples.unique(["user_id", "event_id"])
    recs = fitted.rank(candidates, n=5)
    assert set(recs.columns) == {"user_id", "event_id", "score", "rank"}
    per_user = recs.sort("user_id", "rank").group_by("user_id", maintain_order=True).agg("rank")
    for ranks in per_user.get_column("rank").to_list():
        assert ranks == list(range(1, min(5, len(ranks)) + 1))
    best = recs.filter(pl.col("rank") == 1).get_column("score").to_numpy()
    top_per_user = (
        candidates.with_columns(score=fitted.score(candidates))
        .group_by("user_id")
        .agg(pl.col("score").max())
        .sort("user_id")
    )
    np.testing.assert_array_equal(best, top_per_user.get_column("score").to_numpy())


def test_save_load_round_trip_is_text_and_json(
    tmp_path: Path, examples: pl.DataFrame, fitted: LambdaRanker
) -> None:
    path = tmp_path / "ranker.txt"
    fitted.save(path)
    loaded = LambdaRanker.load(path)
    np.testing.assert_array_equal(loaded.score(examples), fitted.score(examples))
    assert loaded.features == fitted.features and loaded.params == fitted.params
    assert loaded.best_iteration == fitted.best_iteration

    files = sorted(tmp_path.iterdir())
    assert [f.name for f in files] == ["ranker.txt", "ranker.txt.json"]
    for f in files:
        raw = f.read_bytes()
        assert not raw.startswith(b"\x80"), f"{f.name} looks like a pickle"
        raw.decode("utf-8")  # plain text
    assert path.read_text().startswith("tree")


def test_missing_feature_column_is_named(examples: pl.DataFrame, fitted: LambdaRanker) -> None:
    with pytest.raises(ValueError, match="event_going_before"):
        fitted.score(examples.drop("event_going_before"))
    with pytest.raises(ValueError, match="fill_rate_before"):
        LambdaRanker().fit(examples.drop("fill_rate_before"), params=PARAMS)


def test_all_zero_labels_refuse_to_fit(examples: pl.DataFrame) -> None:
    with pytest.raises(ModelFitError, match="positive"):
        LambdaRanker().fit(examples.with_columns(label=pl.lit(0, pl.Int8)), params=PARAMS)


def test_no_validation_positive_refuses_to_fit(examples: pl.DataFrame) -> None:
    _, valid = time_validation_split(examples)
    late = pl.col("created_at") >= valid.get_column("created_at").min()
    silent = examples.with_columns(label=pl.when(late).then(0).otherwise("label").cast(pl.Int8))
    with pytest.raises(ModelFitError, match="validation"):
        LambdaRanker().fit(silent, params=PARAMS)


def test_unfitted_ranker_says_so(examples: pl.DataFrame) -> None:
    with pytest.raises(NotFittedError):
        LambdaRanker().score(examples)


def test_same_seed_same_scores(examples: pl.DataFrame, fitted: LambdaRanker) -> None:
    again = LambdaRanker().fit(examples, params=PARAMS)
    np.testing.assert_array_equal(again.score(examples), fitted.score(examples))
    assert again.best_iteration == fitted.best_iteration


def test_onboarding_match_is_a_ranker_feature_read_as_zero_or_one() -> None:
    """The cold-start signal reaches the booster as a plain 0/1 column, like `is_free`."""
    assert "onboarding_match" in FEATURES
    frame = pl.DataFrame(
        {"onboarding_match": [1, 0], "is_free": [True, False]},
        schema={"onboarding_match": pl.Int8, "is_free": pl.Boolean},
    )
    np.testing.assert_array_equal(
        feature_matrix(frame, ("onboarding_match", "is_free")), [[1.0, 1.0], [0.0, 0.0]]
    )
