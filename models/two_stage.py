"""The two-stage recommender, I/O-free: the one code path of the nightly feed and `godo evaluate`.

1. **Propose** (`propose`): every candidate generator (a mapping name -> fitted
   `CandidateModel`) proposes its top `per_source` items per user; the union is the
   candidate set and every generator's score is a column (`score_<name>`, null where that
   generator did not propose the item), so the ranker can weigh the evidence of each.
2. **Featurize**: a plug-in (`Featurize`, candidates in, candidates with feature columns out)
   describes each candidate. The nightly run plugs in the app's point-in-time features
   (`features.point_in_time.features_at` as of now); any other dataset the generic ones
   (`features.generic`, assembled in `models.generic`).
3. **Rank** (`scored`, `top_n`): LambdaRank (`models.ranker.LambdaRanker`) scores every
   candidate; an optional re-rank step (`models.rerank`) follows outside this module.

Training replays the same steps in the past (`examples`): generators fitted on the history
before a label cut propose, the same plug-in describes the candidates from that history, and
what users did after the cut labels them. The nightly run cuts by time at weekly snapshots
(`recommender.fitting`); a public dataset carves a label split from its train side with the
evaluation protocol itself (`models.generic`). Either way the ranker learns exactly the task
it serves: ordering the candidates the generators propose.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import polars as pl

from models.base import CandidateModel
from models.ranker import (
    DEFAULT_PARAMS,
    LambdaRanker,
    RankerParams,
    Splitter,
    time_validation_split,
)

Generators = Mapping[str, CandidateModel]
"""Fitted generators by name; the mapping's order is the priority that names `source`."""

Featurize = Callable[[pl.DataFrame], pl.DataFrame]
"""The feature plug-in: the candidate frame in, the same rows with feature columns out."""

KEY = ("user_id", "event_id")
NOT_FEATURES = frozenset(
    {"user_id", "event_id", "source", "label", "created_at", "as_of", "swipe_id", "score", "rank"}
)


def score_columns(names: Iterable[str]) -> tuple[str, ...]:
    """`score_<name>` for every generator name, in order."""
    return tuple(f"score_{name}" for name in names)


def propose(
    generators: Generators,
    *,
    users: pl.DataFrame,
    eligible: pl.DataFrame,
    exclude: pl.DataFrame,
    per_source: int,
) -> pl.DataFrame:
    """Union of every generator's top `per_source`: user_id, event_id, source, score_<name>.

    `users` (user_id, metro), `eligible` (event_id, metro), `exclude` (user_id, event_id):
    the `CandidateModel.recommend` request every generator answers. `source` is the first
    generator (in mapping order) that proposed the pair; the scores of all stay as features.
    """
    names = tuple(generators)
    request = {
        "users": users.select("user_id", "metro"),
        "candidates": eligible,
        "exclude": exclude.select(*KEY),
        "n": per_source,
    }
    proposed = [
        generators[name]
        .recommend(**request)  # type: ignore[arg-type]
        .select(*KEY, "score", pl.lit(priority, dtype=pl.Int32).alias("priority"))
        for priority, name in enumerate(names)
    ]
    union = pl.concat(proposed) if proposed else pl.DataFrame()
    columns = score_columns(names)
    if union.is_empty():
        schema = {"user_id": pl.Int64, "event_id": pl.Utf8, "source": pl.Utf8}
        return pl.DataFrame(schema=schema | dict.fromkeys(columns, pl.Float64))
    # Each generator's score is a feature; null where that generator did not propose.
    scores = union.pivot(
        on="priority", index=list(KEY), values="score", aggregate_function="max"
    ).rename({str(p): f"score_{name}" for p, name in enumerate(names)}, strict=False)
    missing = [c for c in columns if c not in scores.columns]
    scores = scores.with_columns(pl.lit(None, dtype=pl.Float64).alias(c) for c in missing)
    return (
        union.sort(*KEY, "priority")
        .unique(list(KEY), keep="first", maintain_order=True)
        .with_columns(source=pl.col("priority").replace_strict(dict(enumerate(names))))
        .drop("priority", "score")
        .join(scores, on=list(KEY), how="left")
        .select(*KEY, "source", *columns)
    )


def with_labels(frame: pl.DataFrame, labels: pl.DataFrame) -> pl.DataFrame:
    """`label` (Int8) from `labels` (user_id, event_id, label); 0 for an untouched candidate."""
    graded = labels.select(*KEY, pl.col("label").cast(pl.Int8)).unique(list(KEY), keep="last")
    return frame.join(graded, on=list(KEY), how="left").with_columns(
        pl.col("label").fill_null(0).cast(pl.Int8)
    )


def examples(
    generators: Generators,
    featurize: Featurize,
    *,
    users: pl.DataFrame,
    eligible: pl.DataFrame,
    exclude: pl.DataFrame,
    labels: pl.DataFrame,
    per_source: int,
) -> pl.DataFrame:
    """Labelled training rows: the candidates of `generators` (fitted before the label cut),
    described by `featurize` (from the same history), labelled by what came after."""
    proposed = propose(
        generators, users=users, eligible=eligible, exclude=exclude, per_source=per_source
    )
    return with_labels(featurize(proposed), labels)


def feature_columns(frame: pl.DataFrame) -> tuple[str, ...]:
    """Every numeric or boolean column except keys, labels and times, in frame order: the
    ranker features of a plug-in that decides its own columns (the generic one)."""
    return tuple(
        name
        for name, dtype in frame.schema.items()
        if name not in NOT_FEATURES and (dtype.is_numeric() or dtype == pl.Boolean())
    )


def fit_ranker(
    examples: pl.DataFrame,
    *,
    features: tuple[str, ...],
    params: RankerParams = DEFAULT_PARAMS,
    valid_share: float = 0.2,
    split: Splitter = time_validation_split,
) -> LambdaRanker:
    """LambdaRank over labelled query groups (user_id, created_at), early-stopped on the
    `split`'s held-out part: by time for the nightly swipes, by user for a public dataset."""
    return LambdaRanker().fit(
        examples, features=features, params=params, valid_share=valid_share, split=split
    )


def scored(proposed: pl.DataFrame, *, featurize: Featurize, ranker: LambdaRanker) -> pl.DataFrame:
    """The candidates with their features and the ranker's `score`."""
    frame = featurize(proposed)
    return frame.with_columns(score=pl.Series(ranker.score(frame), dtype=pl.Float64))


def top_n(scored: pl.DataFrame, n: int) -> pl.DataFrame:
    """The ranker's order before any re-ranking: user_id, rank (1..n), event_id, score."""
    return (
        scored.sort(["user_id", "score", "event_id"], descending=[False, True, False])
        .with_columns(rank=pl.int_range(1, pl.len() + 1).over("user_id").cast(pl.Int32))
        .filter(pl.col("rank") <= n)
        .select("user_id", "rank", "event_id", "score")
    )
