"""Training the learned parts of the feed (ALS and the ranker) as of a cutoff.

The ranker orders the candidates the generators propose by how much the user will like each
one. It learns that from the cards users were actually shown and swiped, each with its
point-in-time features as of the swipe: pass 0, like 1, superlike 2, and 2 when the user also
RSVP'd "going" before the cutoff. One query group is one user on one day.

Why swipes and not "what did the user do with each candidate later": a candidate nobody showed
can never be liked, so labelling untouched candidates 0 teaches the ranker to predict what the
old feed would show (popular events), not what people like. That model won on the logged
holdout, which has the same exposure bias (NDCG@10 0.106 against 0.088 for swipes), and lost
where it counts: served in simulation to the same users it reached 0.69x the oracle's session
value, the swipe-trained ranker 0.83x (`bench/quality.py`, 2026-12-02). Examined cards are
swiped whatever their rank (the simulator's, and the app's, position bias decides how *many*
cards are seen, not which), so a like among swipes is an unbiased signal of preference.

The generator scores (`score_als`, ...) are not features: they exist only for candidates, and
swiped cards were mostly not candidates of today's generators. I/O-free, like
`recommender.feed` and `recommender.holdout`, so the assets, the benchmarks and the tests
train the same way.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl

from features.point_in_time import TRAINING_SCHEMA, UTC_US, features_at, labels
from features.tables import AppTables
from models import two_stage
from models.als import ALSModel
from models.ranker import DEFAULT_PARAMS, FEATURES, LambdaRanker, RankerParams
from recommender.holdout import Holdout, StageModels

WINDOW_DAYS = 28.0
# The newest swipes of the window, at most: bounds the feature frame at the nightly scale.
MAX_EXAMPLES = 1_000_000
GOING_LABEL = 2
VALID_SHARE = 0.2


def ranker_examples(
    cutoff: datetime,
    tables: AppTables,
    *,
    window_days: float = WINDOW_DAYS,
    max_examples: int = MAX_EXAMPLES,
) -> pl.DataFrame:
    """Every swipe of the `window_days` before `cutoff` (the newest `max_examples`), with
    features as of the swipe and a graded label; `created_at` is the swipe's day.

    History features read everything before the cutoff; nothing at or after it is used.
    Sorted by (user_id, created_at, event_id): contiguous query groups for LambdaRank.
    """
    train = tables.before(cutoff)
    start = pl.lit(cutoff - timedelta(days=window_days)).cast(UTC_US)
    recent = (
        train.swipes.filter(pl.col("created_at").cast(UTC_US) >= start)
        .sort("created_at", descending=True)
        .head(max_examples)
    )
    if recent.is_empty():
        raise ValueError(f"no swipes in the {window_days} days before {cutoff}")
    going = (
        train.attendance.filter(pl.col("status") == "going")
        .select(pl.col("user_id").cast(pl.Int64), pl.col("event_id").cast(pl.Utf8))
        .unique()
        .with_columns(going=pl.lit(True))
    )
    queries = (
        labels(recent)
        .join(going, on=["user_id", "event_id"], how="left")
        .with_columns(
            label=pl.when(pl.col("going") & (pl.col("label") > 0))
            .then(pl.lit(GOING_LABEL, dtype=pl.Int8))
            .otherwise(pl.col("label"))
        )
        .drop("going")
    )
    frame = features_at(
        queries,
        swipes=train.swipes,
        attendance=train.attendance,
        friendships=train.friendships,
        events=train.events,
        users=train.users,
        venues=train.venues,
    )
    return (
        frame.rename({"as_of": "created_at"})
        .select(TRAINING_SCHEMA.keys())
        .cast(TRAINING_SCHEMA)  # type: ignore[arg-type]
        .with_columns(pl.col("created_at").dt.truncate("1d"))
        .sort("user_id", "created_at", "event_id")
    )


def fit_ranker(examples: pl.DataFrame, params: RankerParams | None = None) -> LambdaRanker:
    """LambdaRank on the point-in-time features, early-stopped on the newest days (the
    two-stage core's `fit_ranker`, which `godo evaluate` uses with held-out users)."""
    return two_stage.fit_ranker(
        examples,
        features=FEATURES,
        params=params or DEFAULT_PARAMS,
        valid_share=VALID_SHARE,
    )


def train(holdout: Holdout, tables: AppTables) -> StageModels:
    """Both learned parts as of the holdout's cutoff: what the nightly run registers."""
    examples = ranker_examples(holdout.cutoff, tables)
    return StageModels(als=ALSModel().fit(holdout.interactions), ranker=fit_ranker(examples))
