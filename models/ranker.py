"""LightGBM LambdaRank over the candidates: orders each user's events by graded preference.

Why LambdaRank and not a classifier: the feed is a per-user ordered list, and NDCG@10 is what
the evaluation measures. LambdaRank optimises exactly that ordering within each user (a query
group), so a user who likes everything does not dominate the loss the way they would in a
pointwise log-loss.

Labels are graded: pass 0, like 1, superlike/going 2, went 3. The gain of label l is 2^l - 1
(0, 1, 3, 7), the standard exponential NDCG gain: a superlike is worth three likes at the same
position, so the model is pushed hardest to put the strongest intent on top. The gains are
passed explicitly (`label_gain`) so they are documented here, not implicit in a library default.

Validation is by time in the nightly run: the model will score tomorrow's swipes using
features from today, so the early-stopping set is every swipe after a global cut, and training
only sees swipes strictly before it. On a public dataset (`godo evaluate`) every query sits at
one moment, so `user_validation_split` holds out a seeded share of users instead. Validation
users without a single positive are dropped from the early-stopping set: LightGBM scores such
a group as NDCG 1 whatever the order, which would only dilute the signal.

The features are whatever the caller passes (`fit(features=...)`), stored with the model and
read back by `score`: the nightly feed passes the point-in-time FEATURES
(`recommender.fitting`), the generic pipeline (`models.generic`) the columns of its own feature
plug-in.

Persistence is LightGBM's own text model format plus a JSON sidecar (features, params, best
iteration): readable, diffable, and loading it cannot execute code, unlike a pickle.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Self

import lightgbm as lgb
import numpy as np
import polars as pl

from features.point_in_time import TRAINING_SCHEMA
from models.base import ModelFitError, NotFittedError, ranked

MAX_LABEL = 3
LABEL_GAIN: tuple[float, ...] = tuple(float(2**label - 1) for label in range(MAX_LABEL + 1))
"""Gain of label l = 2^l - 1: pass 0, like 1, superlike/going 3, went 7."""

_NOT_FEATURES = frozenset({"swipe_id", "user_id", "event_id", "created_at", "label"})
FEATURES: tuple[str, ...] = tuple(
    name
    for name, dtype in TRAINING_SCHEMA.items()
    if name not in _NOT_FEATURES and (dtype.is_numeric() or dtype == pl.Boolean())
)
"""Every numeric or boolean column of TRAINING_SCHEMA except keys, label and time."""

NIGHTLY_SOURCES: tuple[str, ...] = ("als", "ease", "item_knn", "content", "geo", "popularity")
"""The nightly feed's generators, most specific first (`recommender.feed` proposes in this
order: when several propose one event, the first names its `source`)."""

CANDIDATE_FEATURES: tuple[str, ...] = tuple(f"score_{name}" for name in NIGHTLY_SOURCES)
"""Each nightly generator's own score (null when it did not propose the event): columns of
every candidate frame; the swipe-trained nightly ranker does not read them (see
`recommender.fitting`), a ranker trained on candidates can."""


_GROUP_ORDER = ["user_id", "created_at", "event_id"]


@dataclass(frozen=True)
class RankerParams:
    """LightGBM settings; the first `eval_at` is the NDCG cut that early-stops and is reported."""

    num_leaves: int = 31
    learning_rate: float = 0.05
    n_estimators: int = 400
    min_data_in_leaf: int = 20
    early_stopping_rounds: int = 30
    eval_at: tuple[int, ...] = field(default=(10,))
    seed: int = 42
    feature_fraction: float = 0.9
    num_threads: int = 2
    lambda_l2: float = 0.0  # leaf-weight shrinkage; the generic pipeline leans on it

    def lightgbm(self) -> dict[str, Any]:
        """The native parameter dict; deterministic so a retrain on the same data is identical."""
        return {
            "objective": "lambdarank",
            "metric": "ndcg",
            "eval_at": list(self.eval_at),
            "label_gain": list(LABEL_GAIN),
            "num_leaves": self.num_leaves,
            "learning_rate": self.learning_rate,
            "min_data_in_leaf": self.min_data_in_leaf,
            "feature_fraction": self.feature_fraction,
            "lambda_l2": self.lambda_l2,
            "seed": self.seed,
            "num_threads": self.num_threads,
            "deterministic": True,
            "force_row_wise": True,
            "verbosity": -1,
        }


DEFAULT_PARAMS = RankerParams()


def time_validation_split(
    examples: pl.DataFrame, valid_share: float = 0.2
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(train, valid): valid is every row at or after the `1 - valid_share` time quantile.

    A global cut (not per user) keeps the split honest: nothing in training happened after
    anything in validation. Rows tied at the cut all go to validation, so every validation
    `created_at` is strictly later than every training one. Both halves come back sorted by
    user then time, the contiguous query groups LambdaRank needs.
    """
    if not 0.0 < valid_share < 1.0:
        raise ValueError(f"valid_share must be in (0, 1), got {valid_share}")
    if examples.is_empty():
        return examples, examples
    epoch = examples.get_column("created_at").dt.epoch("us")
    cut = epoch.quantile(1.0 - valid_share, interpolation="lower")
    in_valid = epoch >= cut
    train = examples.filter(~in_valid).sort(_GROUP_ORDER)
    valid = examples.filter(in_valid).sort(_GROUP_ORDER)
    return train, valid


def user_validation_split(
    examples: pl.DataFrame, valid_share: float = 0.2, seed: int = 0
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(train, valid): valid is every query of a seeded random `valid_share` of the users.

    For examples without a meaningful time (a public dataset's candidates, all labelled at
    one moment): whole users are held out, so no user's groups sit on both sides.
    """
    if not 0.0 < valid_share < 1.0:
        raise ValueError(f"valid_share must be in (0, 1), got {valid_share}")
    if examples.is_empty():
        return examples, examples
    users = examples.get_column("user_id").unique().sort()
    rng = np.random.default_rng(seed)
    n_valid = max(1, round(users.len() * valid_share))
    held = pl.Series("user_id", rng.choice(users.to_numpy(), n_valid, replace=False))
    in_valid = pl.col("user_id").is_in(held.implode())
    return (
        examples.filter(~in_valid).sort(_GROUP_ORDER),
        examples.filter(in_valid).sort(_GROUP_ORDER),
    )


Splitter = Callable[[pl.DataFrame, float], tuple[pl.DataFrame, pl.DataFrame]]
"""How `LambdaRanker.fit` cuts its early-stopping set: `time_validation_split` or
`user_validation_split` (with its seed bound)."""

QUERY = ("user_id", "created_at")
"""A query group is one user at one moment: the candidates they could have been shown then."""


def group_sizes(frame: pl.DataFrame) -> np.ndarray:
    """Sizes of consecutive runs of (user_id, created_at): LightGBM's `group`; sort first."""
    if frame.is_empty():
        return np.zeros(0, dtype=np.int64)
    query = frame.select(pl.struct(*QUERY).alias("query")).get_column("query")
    return query.rle().struct.field("len").to_numpy().astype(np.int64)


def with_positive_groups(frame: pl.DataFrame) -> pl.DataFrame:
    """Only queries with at least one positive label: the groups where NDCG says something."""
    return frame.filter((pl.col("label") > 0).any().over(QUERY))


def feature_matrix(frame: pl.DataFrame, features: tuple[str, ...]) -> np.ndarray:
    """float64 matrix in `features` order; nulls become NaN, which LightGBM treats as missing."""
    missing = [name for name in features if name not in frame.columns]
    if missing:
        raise ValueError(f"missing feature column(s): {', '.join(missing)}")
    return (
        frame.select(pl.col(name).cast(pl.Float64) for name in features)
        .to_numpy()
        .astype(np.float64, copy=False)
    )


def _dataset(frame: pl.DataFrame, features: tuple[str, ...], **kwargs: Any) -> lgb.Dataset:
    return lgb.Dataset(
        feature_matrix(frame, features),
        label=frame.get_column("label").to_numpy(),
        group=group_sizes(frame),
        feature_name=list(features),
        free_raw_data=False,
        **kwargs,
    )


class LambdaRanker:
    """A fitted LambdaRank booster plus the feature order and params it was trained with."""

    def __init__(self) -> None:
        self._booster: lgb.Booster | None = None
        self.features: tuple[str, ...] = FEATURES
        self.params: RankerParams = DEFAULT_PARAMS
        self.best_iteration: int = 0
        self.validation_ndcg: float = float("nan")

    @property
    def booster(self) -> lgb.Booster:
        if self._booster is None:
            raise NotFittedError("LambdaRanker is not fitted")
        return self._booster

    def fit(
        self,
        examples: pl.DataFrame,
        features: tuple[str, ...] = FEATURES + CANDIDATE_FEATURES,
        params: RankerParams = DEFAULT_PARAMS,
        valid_share: float = 0.2,
        split: Splitter = time_validation_split,
    ) -> Self:
        """Train on the earlier swipes, early-stop on NDCG of the later ones (or, with
        `split=user_validation_split`, of held-out users).

        Raises ModelFitError rather than returning a model that would rank at random: no
        positive label, no validation user with a positive, or a booster without trees.
        """
        features = tuple(features)
        feature_matrix(examples.head(0), features)  # fail early, naming a missing column
        if examples.get_column("label").null_count():
            raise ModelFitError("null labels")
        labels = examples.get_column("label").cast(pl.Int64).to_numpy()
        if labels.size == 0 or labels.max() <= 0:
            raise ModelFitError("no positive labels: nothing to rank")
        if labels.min() < 0 or labels.max() > MAX_LABEL:
            raise ModelFitError(f"labels must be in 0..{MAX_LABEL}")
        train, valid = split(examples, valid_share)
        valid = with_positive_groups(valid)
        if train.is_empty() or not (train.get_column("label") > 0).any():
            raise ModelFitError("no positive labels before the validation cut")
        if valid.is_empty():
            raise ModelFitError("no validation groups with a positive label")

        native = params.lightgbm()
        train_set = _dataset(train, features)
        valid_set = _dataset(valid, features, reference=train_set)
        booster = lgb.train(
            native,
            train_set,
            num_boost_round=params.n_estimators,
            valid_sets=[valid_set],
            valid_names=["valid"],
            callbacks=[
                lgb.early_stopping(
                    params.early_stopping_rounds, first_metric_only=True, verbose=False
                )
            ],
        )
        if booster.num_trees() == 0:
            raise ModelFitError("LightGBM produced no trees")
        self._booster = booster
        self.features = features
        self.params = params
        self.best_iteration = int(booster.best_iteration) or booster.current_iteration()
        self.validation_ndcg = float(booster.best_score["valid"][f"ndcg@{params.eval_at[0]}"])
        return self

    def score(self, frame: pl.DataFrame) -> np.ndarray:
        """Relevance per row (higher is better); only comparable within a user."""
        matrix = feature_matrix(frame, self.features)
        if matrix.shape[0] == 0:
            return np.zeros(0, dtype=np.float64)
        out = self.booster.predict(matrix, num_iteration=self.best_iteration)
        return np.asarray(out, dtype=np.float64)

    def rank(self, frame: pl.DataFrame, n: int) -> pl.DataFrame:
        """Top `n` per user: user_id, rank (1..n), event_id, score, like every candidate model."""
        scored = frame.select("user_id", "event_id").with_columns(
            score=pl.Series(self.score(frame), dtype=pl.Float64)
        )
        return ranked(scored, n)

    def feature_importance(self) -> pl.DataFrame:
        """feature, gain, split over the kept trees, most total gain first."""
        booster = self.booster
        return pl.DataFrame(
            {
                "feature": list(self.features),
                "gain": booster.feature_importance("gain", iteration=self.best_iteration),
                "split": booster.feature_importance("split", iteration=self.best_iteration),
            },
            schema={"feature": pl.Utf8, "gain": pl.Float64, "split": pl.Int64},
        ).sort(["gain", "feature"], descending=[True, False])

    @staticmethod
    def sidecar(path: Path) -> Path:
        """Where the JSON metadata of the model at `path` lives."""
        return path.with_name(path.name + ".json")

    def save(self, path: Path) -> None:
        """Text model (only the kept trees) at `path`, metadata at `sidecar(path)`."""
        path = Path(path)
        self.booster.save_model(str(path), num_iteration=self.best_iteration)
        meta = {
            "features": list(self.features),
            "params": asdict(self.params),
            "best_iteration": self.best_iteration,
            "validation_ndcg": self.validation_ndcg,
            "label_gain": list(LABEL_GAIN),
        }
        self.sidecar(path).write_text(json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> Self:
        path = Path(path)
        meta = json.loads(cls.sidecar(path).read_text())
        params = dict(meta["params"])
        params["eval_at"] = tuple(params["eval_at"])
        model = cls()
        model._booster = lgb.Booster(model_file=str(path))
        model.features = tuple(meta["features"])
        model.params = RankerParams(**params)
        model.best_iteration = int(meta["best_iteration"])
        model.validation_ndcg = float(meta["validation_ndcg"])
        return model
