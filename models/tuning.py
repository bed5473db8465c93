"""Per-dataset hyper-parameters for ALS and EASE, chosen on the training side only.

Published defaults travel badly between catalogues (EASE's λ scales with item counts, ALS's
regularisation with users' activity), so each dataset gets a small search. The validation
split is carved from the frame given, which callers must restrict to their training data: a
seeded per-user random share of each user's positive (user, event) pairs is held out, the
model is fit on the rest (passes included), and it ranks every item of the fit frame for up
to `max_users` validation users, their fit pairs excluded (full ranking, NDCG@10, the same
metric code as every report). The test side is never an argument, so it cannot leak.

The search is coordinate-wise: start from the defaults, then for each parameter in turn try
its grid values with the others at their best so far, moving only on a strict improvement.
That is 1 + Σ(len(values) - 1) fits (8 for the default ALS grid, 6 for EASE), plus a few
steps past a grid edge when the best value sits on one, instead of the product: that keeps a
100k-interaction dataset well inside a minute on 2 cores.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np
import polars as pl

from models.als import ALSModel, ALSParams
from models.base import CandidateModel
from models.ease import EASEModel, EASEParams
from models.evaluation import ndcg_at_k, random_split

P = TypeVar("P")

K = 10
METRO = "all"  # tuning ignores metros: every training item is a candidate for everyone

# Regularization first: more factors only pay off once it is strong enough (on
# MovieLens-100K, 64 factors lose to 16 at 0.5 and beat them at 50), and implicit's
# regularization is absolute, so its scale follows the dataset's activity.
ALS_GRID: dict[str, tuple[Any, ...]] = {
    "regularization": (0.5, 5.0, 50.0),
    "factors": (16, 64, 128),
    "alpha": (3.0, 10.0, 30.0),
    "iterations": (12, 30),
}
EASE_GRID: dict[str, tuple[Any, ...]] = {"l2": (50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0)}


@dataclass(frozen=True)
class Tuned(Generic[P]):
    """The chosen params, their validation NDCG@10, and every point tried (in order)."""

    params: P
    validation_ndcg: float
    results: list[tuple[dict[str, Any], float]] = field(default_factory=list)

    def as_frame(self) -> pl.DataFrame:
        """One row per point tried: its params and "ndcg@10", ready to print or log."""
        return pl.DataFrame([{**params, f"ndcg@{K}": ndcg} for params, ndcg in self.results])


@dataclass(frozen=True)
class Validation:
    """A training frame cut for tuning: `fit` (what models see) and `held_out` pairs."""

    fit: pl.DataFrame  # user_id, event_id, weight
    held_out: pl.DataFrame  # user_id, event_id


def validation_split(
    interactions: pl.DataFrame, *, share: float = 0.2, seed: int = 0
) -> Validation:
    """Hold out a seeded random `share` of each user's positive (user, event) pairs.

    Pairs, not rows, are split, so a like and an RSVP of the same event never land on both
    sides; every row of a held-out pair (a pass of it included) leaves the fit frame. Users
    with one positive pair keep it (see `random_split`).
    """
    pairs = (
        interactions.filter(pl.col("weight") > 0)
        .select("user_id", pl.col("event_id").alias("item_id"))
        .unique()
        .with_columns(timestamp=pl.lit(0))
    )
    held_out = (
        random_split(pairs, test_share=share, seed=seed)
        .test.select("user_id", pl.col("item_id").alias("event_id"))
        .sort("user_id", "event_id")
    )
    fit = interactions.select("user_id", "event_id", "weight").join(
        held_out, on=["user_id", "event_id"], how="anti"
    )
    return Validation(fit=fit, held_out=held_out)


def validation_ndcg(
    model: CandidateModel, validation: Validation, *, max_users: int | None = None, seed: int = 0
) -> float:
    """NDCG@10 of `model` fit on `validation.fit`, ranking every fit item (fit pairs excluded)."""
    users = validation.held_out["user_id"].unique().sort()
    if max_users is not None and users.len() > max_users:
        rng = np.random.default_rng(seed)
        users = pl.Series("user_id", np.sort(rng.choice(users.to_numpy(), max_users, False)))
    model.fit(validation.fit)
    fit = validation.fit.filter(pl.col("user_id").is_in(users.to_list()))
    recs = model.recommend(
        users=pl.DataFrame({"user_id": users, "metro": METRO}),
        candidates=validation.fit.select("event_id").unique().with_columns(metro=pl.lit(METRO)),
        exclude=fit.select("user_id", "event_id"),
        n=K,
    )
    truth = validation.held_out.filter(pl.col("user_id").is_in(users.to_list()))
    return ndcg_at_k(recs, truth, K)


def coordinate_search(
    start: P,
    grid: Mapping[str, Sequence[Any]],
    score: Callable[[P], float],
    *,
    extend: int = 2,
) -> Tuned[P]:
    """Tune one parameter at a time from `start` (see the module docstring).

    When a positive float parameter's winner is the smallest or largest value tried, up to
    `extend` more values are tried beyond it, stepping by the ratio of the grid's last two
    values, while they keep improving: λ's useful range moves with the weights' scale (binary
    MovieLens likes 500, the weighted synthetic city 10x more), and a grid edge is a guess.
    Integer parameters (factors, iterations) are never extended: they set the cost, and more
    of them was not better anywhere we looked. Each distinct point is scored once; ties keep
    the earlier point.
    """
    names = {f.name for f in dataclasses.fields(start)}  # type: ignore[arg-type]
    unknown = set(grid) - names
    if unknown:
        raise ValueError(f"unknown parameters in grid: {sorted(unknown)} (known: {sorted(names)})")
    seen: dict[str, float] = {}
    results: list[tuple[dict[str, Any], float]] = []

    def evaluate(params: P) -> float:
        values = dataclasses.asdict(params)  # type: ignore[call-overload]
        key = repr(sorted(values.items()))
        if key not in seen:
            seen[key] = score(params)
            results.append((values, seen[key]))
        return seen[key]

    best, best_score = start, evaluate(start)
    for name, values in grid.items():
        incumbent = best
        for value in values:
            candidate = dataclasses.replace(incumbent, **{name: value})  # type: ignore[type-var]
            candidate_score = evaluate(candidate)
            if candidate_score > best_score:
                best, best_score = candidate, candidate_score
        for value in _beyond_edge(getattr(best, name), values, extend):
            candidate = dataclasses.replace(best, **{name: value})  # type: ignore[type-var]
            candidate_score = evaluate(candidate)
            if candidate_score <= best_score:
                break
            best, best_score = candidate, candidate_score
    return Tuned(params=best, validation_ndcg=best_score, results=results)


def _beyond_edge(winner: Any, values: Sequence[Any], steps: int) -> list[float]:
    """Up to `steps` geometric steps past `winner` if it ends a positive float grid."""
    if steps < 1 or not all(isinstance(v, float) and v > 0 for v in values):
        return []
    ordered = sorted(set(values))
    if len(ordered) < 2 or winner not in (ordered[0], ordered[-1]):
        return []
    ratio = ordered[-1] / ordered[-2] if winner == ordered[-1] else ordered[0] / ordered[1]
    return [winner * ratio**step for step in range(1, steps + 1)]


def tune_als(
    interactions: pl.DataFrame,
    *,
    seed: int = 0,
    grid: Mapping[str, Sequence[Any]] | None = None,
    max_users: int | None = 5_000,
    share: float = 0.2,
    start: ALSParams | None = None,
    extend: int = 2,
) -> Tuned[ALSParams]:
    """ALS params for this training frame (factors, regularization, alpha, iterations)."""
    validation = validation_split(interactions, share=share, seed=seed)
    return coordinate_search(
        start or ALSParams(),
        ALS_GRID if grid is None else grid,
        lambda p: validation_ndcg(ALSModel(p), validation, max_users=max_users, seed=seed),
        extend=extend,
    )


def tune_ease(
    interactions: pl.DataFrame,
    *,
    seed: int = 0,
    grid: Mapping[str, Sequence[Any]] | None = None,
    max_users: int | None = 5_000,
    share: float = 0.2,
    start: EASEParams | None = None,
    extend: int = 2,
) -> Tuned[EASEParams]:
    """EASE's l2 for this training frame; `start` carries `max_items` and the precision."""
    validation = validation_split(interactions, share=share, seed=seed)
    return coordinate_search(
        start or EASEParams(),
        EASE_GRID if grid is None else grid,
        lambda p: validation_ndcg(EASEModel(p), validation, max_users=max_users, seed=seed),
        extend=extend,
    )
