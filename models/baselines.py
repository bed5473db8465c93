"""Every model `godo evaluate --interactions FILE` scores, the same way on every dataset.

Rows: `random` (the floor), `popularity`, `als` (implicit ALS), `ease`, `item_knn` and
`pipeline` (the project's own two-stage recommender, `models.generic`). ALS and EASE are
tuned per dataset on a validation split carved from the train side (`models.tuning`), and the
pipeline's generators use the same tuned params, so every row gets the same chance. Every
model ranks every train item it has not seen for each test user (full ranking), so the
numbers sit next to published tables.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import polars as pl

from models.als import ALSModel, ALSParams
from models.base import CandidateModel
from models.ease import EASEModel, EASEParams
from models.evaluation import Split, evaluate
from models.generic import (
    Items,
    PipelineConfig,
    UserCodes,
    pipeline_recommendations,
    pool,
    request_users,
)
from models.item_knn import ItemKNNModel, ItemKNNParams
from models.popularity import PopularityModel
from models.tuning import tune_als, tune_ease

K_VALUES = (10, 20)
MODELS = ("random", "popularity", "als", "ease", "item_knn", "pipeline")
TUNING_STEPS = ("tune als", "tune ease")


def comparison_steps(*, tune: bool) -> tuple[str, ...]:
    """The step names `compare` reports to its `progress` callback, in order (a bar's total)."""
    return (*TUNING_STEPS, *MODELS) if tune else MODELS


def random_recommendations(split: Split, k: int, seed: int = 0) -> pl.DataFrame:
    """k unseen items per test user, uniformly at random: the floor every model must clear."""
    rng = np.random.default_rng(seed)
    items = split.train["item_id"].unique().sort().to_numpy()
    seen = split.train.group_by("user_id").agg(pl.col("item_id"))
    seen_by_user = dict(zip(seen["user_id"].to_list(), seen["item_id"].to_list(), strict=True))
    rows: list[dict[str, object]] = []
    for user in split.test["user_id"].unique().sort().to_list():
        exclude = set(seen_by_user.get(user, []))
        # Enough draws that k survive the exclusions, without shuffling the whole catalogue.
        draws = rng.choice(len(items), size=min(len(items), k + len(exclude)), replace=False)
        picked = [items[i] for i in draws if items[i] not in exclude][:k]
        rows.extend(
            {"user_id": user, "item_id": item, "rank": r + 1} for r, item in enumerate(picked)
        )
    return pl.DataFrame(
        rows,
        schema={
            "user_id": split.train["user_id"].dtype,
            "item_id": split.train["item_id"].dtype,
            "rank": pl.Int32,
        },
    )


def model_recommendations(model: CandidateModel, split: Split, k: int) -> pl.DataFrame:
    """Fit on train and rank every unseen item for each test user (full ranking).

    Godo's models key users by integer id and items by string id; any dataset's ids are
    mapped onto that and back (`models.generic.UserCodes`), so the models run unchanged.
    """
    codes = UserCodes.of(split.train, split.test)
    interactions = codes.encode(split.train)
    model.fit(interactions)
    recs = model.recommend(
        users=request_users(codes.encode(split.test)),
        candidates=pool(interactions),
        exclude=interactions.select("user_id", "event_id"),
        n=k,
    )
    return codes.decode(recs, split.train.schema["item_id"])


@dataclass(frozen=True)
class Comparison:
    """Every model's metrics, what was chosen on the validation split, and seconds per step."""

    results: dict[str, dict[str, float]]
    chosen: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def compare(
    split: Split,
    *,
    items: Items | None = None,
    k_values: tuple[int, ...] = K_VALUES,
    rerank: bool = False,
    seed: int = 0,
    label_share: float = 0.2,
    tune: bool = True,
    progress: Callable[[str], None] | None = None,
) -> Comparison:
    """Tune ALS and EASE on the train side, then score every model of `MODELS` on `split`.

    `label_share` is the share the pipeline carves from the train side for its ranker's
    labels (`godo evaluate` passes its test share, so the replay mirrors the test cut).
    """
    k = max(k_values)
    test = split.test.select("user_id", "item_id")
    seconds: dict[str, float] = {}

    def step(name: str, fn: Callable[[], Any]) -> Any:
        if progress is not None:
            progress(name)
        started = time.perf_counter()
        out = fn()
        seconds[name] = round(time.perf_counter() - started, 2)
        return out

    als_params, ease_params = ALSParams(), EASEParams()
    chosen: dict[str, dict[str, Any]] = {}
    if tune:
        train = UserCodes.of(split.train).encode(split.train)
        tuned_als = step(TUNING_STEPS[0], lambda: tune_als(train, seed=seed))
        tuned_ease = step(TUNING_STEPS[1], lambda: tune_ease(train, seed=seed))
        als_params, ease_params = tuned_als.params, tuned_ease.params
        chosen["als"] = {**asdict(als_params), "validation ndcg@10": tuned_als.validation_ndcg}
        chosen["ease"] = {**asdict(ease_params), "validation ndcg@10": tuned_ease.validation_ndcg}
    knn_params = ItemKNNParams()
    recs = {
        "random": step("random", lambda: random_recommendations(split, k, seed)),
        "popularity": step(
            "popularity", lambda: model_recommendations(PopularityModel(), split, k)
        ),
        "als": step("als", lambda: model_recommendations(ALSModel(als_params), split, k)),
        "ease": step("ease", lambda: model_recommendations(EASEModel(ease_params), split, k)),
        "item_knn": step(
            "item_knn", lambda: model_recommendations(ItemKNNModel(knn_params), split, k)
        ),
    }
    config = PipelineConfig(
        protocol=split.protocol,
        label_share=label_share,
        als=als_params,
        ease=ease_params,
        item_knn=knn_params,
        rerank=rerank,
        seed=seed,
    )
    run = step("pipeline", lambda: pipeline_recommendations(split, k, config=config, items=items))
    recs["pipeline"] = run.recs
    ranker = run.trained.ranker
    chosen["pipeline"] = {
        "generators": ", ".join(run.generators),
        "features": len(run.features),
        "ranker rows": run.trained.rows,
        "ranker trees": ranker.best_iteration,
        "ranker validation ndcg@10": ranker.validation_ndcg,
        "rerank": rerank,
    }
    results = {name: evaluate(r, test, k_values, train=split.train) for name, r in recs.items()}
    return Comparison(results=results, chosen=chosen, seconds=seconds)
