"""Baselines scored on any interaction table, the same way on every dataset.

`godo evaluate --interactions FILE` runs these so Godo's numbers can sit next to published
tables; the pipeline's own evaluation reuses the same split and metric functions.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from models.als import ALSModel
from models.base import CandidateModel
from models.evaluation import Split, evaluate
from models.popularity import PopularityModel

ONE_METRO = "all"  # generic datasets have no metros: one shared candidate pool


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
    mapped onto that and back, so the models run unchanged.
    """
    users = (
        pl.concat([split.train.select("user_id"), split.test.select("user_id")])
        .unique()
        .sort("user_id")
        .with_row_index("code")
        .with_columns(pl.col("code").cast(pl.Int64))
    )
    train = split.train.join(users, on="user_id").with_columns(
        event_id=pl.col("item_id").cast(pl.Utf8)
    )
    weight = pl.col("weight").cast(pl.Float64) if "weight" in train.columns else pl.lit(1.0)
    interactions = train.select(pl.col("code").alias("user_id"), "event_id", weight.alias("weight"))
    model.fit(interactions)
    test_users = (
        split.test.select("user_id")
        .unique()
        .join(users, on="user_id")
        .select(pl.col("code").alias("user_id"), metro=pl.lit(ONE_METRO))
    )
    candidates = interactions.select("event_id").unique().with_columns(metro=pl.lit(ONE_METRO))
    recs = model.recommend(
        users=test_users,
        candidates=candidates,
        exclude=interactions.select("user_id", "event_id"),
        n=k,
    )
    return recs.join(users, left_on="user_id", right_on="code").select(
        pl.col("user_id_right").alias("user_id"),
        pl.col("event_id").cast(split.train["item_id"].dtype).alias("item_id"),
        "rank",
    )


def evaluate_baselines(
    split: Split, k_values: tuple[int, ...] = (10, 20)
) -> dict[str, dict[str, float]]:
    """Random, popularity and implicit ALS on one split, every metric side by side."""
    k = max(k_values)
    test = split.test.select("user_id", "item_id")
    recs = {
        "random": random_recommendations(split, k),
        "popularity": model_recommendations(PopularityModel(), split, k),
        "implicit_als": model_recommendations(ALSModel(), split, k),
    }
    return {name: evaluate(r, test, k_values, train=split.train) for name, r in recs.items()}
