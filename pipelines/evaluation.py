"""Offline evaluation of the whole feed on a time-based holdout, and the champion gate.

The question the nightly run must answer is "would yesterday's data have predicted today's
likes?", so everything here is cut at one instant, the *cutoff*: models train on what happened
before it, and each stage ranks, for every holdout user, every event it could have shown at the
cutoff (full ranking, no sampled negatives). The likes, superlikes and "going" RSVPs after the
cutoff are the relevance judgements. Every stage and baseline is scored the same way, side by
side: random, popularity, ALS alone, candidates + ranker, the final (re-ranked) feed, the
current champion's final feed, and, on the synthetic city, the oracle ranking by hidden utility.

I/O-free glue over `models/` and `features/` (no Dagster, no MLflow), so the evaluation asset,
`bench/quality.py` and tests run the very same code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import polars as pl

from features.catalogue import upcoming_active
from features.interactions import interactions as build_interactions
from features.point_in_time import LABELS, UTC_US
from features.tables import AppTables
from models.als import ALSModel
from models.evaluation import by_activity_bucket, evaluate, side_by_side
from models.popularity import PopularityModel
from models.ranker import LambdaRanker
from pipelines import ranking

K_VALUES = (10, 20)
LIST_LENGTH = max(K_VALUES)
# Statuses that a later moment cannot undo: ended/completed/started only say time has passed.
NEVER_SHOWABLE = ("canceled", "draft")
GOING_RELEVANCE = 2  # an RSVP "going" counts like a superlike
CHALLENGER = "final_feed"
CHAMPION = "champion"
ORACLE = "oracle"
GATE_METRIC = "ndcg@10"
MIN_GAIN = 0.0  # strictly better is enough: the challenger has also seen newer data


@dataclass(frozen=True)
class Holdout:
    """The world as it stood at `cutoff` (train side) and what users did after it (test)."""

    cutoff: datetime
    swipes: pl.DataFrame
    attendance: pl.DataFrame
    interactions: pl.DataFrame
    events: pl.DataFrame
    eligible: pl.DataFrame
    users: pl.DataFrame
    test: pl.DataFrame
    venues: pl.DataFrame
    friendships: pl.DataFrame


@dataclass(frozen=True)
class StageModels:
    """The learned parts of one feed model: what the registry versions."""

    als: ALSModel
    ranker: LambdaRanker


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    metric: str
    challenger: float
    champion: float | None
    reason: str


def holdout_cutoff(swipes: pl.DataFrame, days: float) -> datetime:
    """`days` before the last swipe: the newest stretch of behaviour is the holdout."""
    if swipes.is_empty():
        raise ValueError("no swipes: nothing to hold out")
    if days <= 0:
        raise ValueError(f"holdout days must be > 0, got {days}")
    last: datetime = swipes.select(pl.col("created_at").cast(UTC_US).max()).item()
    return last - timedelta(days=days)


def catalogue_at(events: pl.DataFrame, cutoff: datetime) -> pl.DataFrame:
    """Events with `is_active` as it was at the cutoff.

    Today's status of an event that started after the cutoff is "ended", which says nothing
    about whether it could have been shown then; only cancelled and draft events could not.
    The catalogue keeps no publish time, so events created after the cutoff stay in the pool:
    every model (and the oracle) faces the same pool, which keeps the comparison fair.
    """
    return events.with_columns(is_active=~pl.col("status").is_in(NEVER_SHOWABLE))


def relevance_after(
    swipes: pl.DataFrame, attendance: pl.DataFrame, cutoff: datetime
) -> pl.DataFrame:
    """user_id, event_id, relevance (1 like, 2 superlike or going) for actions after cutoff."""
    after = pl.lit(cutoff).cast(UTC_US)
    liked = swipes.filter(pl.col("created_at").cast(UTC_US) >= after).select(
        "user_id",
        "event_id",
        relevance=pl.col("action").replace_strict(LABELS, return_dtype=pl.Int64),
    )
    going = attendance.filter(
        (pl.col("updated_at").cast(UTC_US) >= after) & (pl.col("status") == "going")
    ).select("user_id", "event_id", relevance=pl.lit(GOING_RELEVANCE, dtype=pl.Int64))
    return (
        pl.concat([liked, going])
        .group_by("user_id", "event_id")
        .agg(pl.col("relevance").max())
        .filter(pl.col("relevance") > 0)
        .sort("user_id", "event_id")
    )


def split_at(
    cutoff: datetime,
    tables: AppTables,
    *,
    max_users: int | None = None,
    seed: int = 0,
) -> Holdout:
    """Train side strictly before `cutoff`; test = post-cutoff positives on showable events.

    A judged event must have been recommendable at the cutoff (upcoming, not cancelled) and
    not already swiped by the user before it, otherwise no model could have ranked it.
    `max_users` samples test users (seeded) to bound the cost on big datasets.
    """
    train = tables.before(cutoff)
    seen = build_interactions(train.swipes, train.attendance)
    catalogue = catalogue_at(tables.events, cutoff)
    eligible = upcoming_active(catalogue, cutoff)
    judged = (
        relevance_after(tables.swipes, tables.attendance, cutoff)
        .join(eligible.select("event_id", "metro"), on="event_id")
        .join(tables.users.select("user_id", "metro"), on=["user_id", "metro"])
        .join(seen.select("user_id", "event_id"), on=["user_id", "event_id"], how="anti")
        .drop("metro")
    )
    test_users = judged.select("user_id").unique().sort("user_id")
    if max_users is not None and test_users.height > max_users:
        test_users = test_users.sample(max_users, seed=seed).sort("user_id")
        judged = judged.join(test_users, on="user_id", how="semi")
    return Holdout(
        cutoff=cutoff,
        swipes=train.swipes,
        attendance=train.attendance,
        interactions=seen,
        events=catalogue,
        eligible=eligible,
        users=tables.users.join(test_users, on="user_id", how="semi").sort("user_id"),
        test=judged,
        venues=tables.venues,
        friendships=tables.friendships,
    )


def random_lists(holdout: Holdout, n: int = LIST_LENGTH, seed: int = 0) -> pl.DataFrame:
    """`n` random unseen events of the user's metro: the floor every stage must clear."""
    rng = np.random.default_rng(seed)
    pairs = (
        holdout.users.select("user_id", "metro")
        .join(holdout.eligible.select("event_id", "metro"), on="metro")
        .join(
            holdout.interactions.select("user_id", "event_id"),
            on=["user_id", "event_id"],
            how="anti",
        )
    )
    return (
        pairs.with_columns(key=pl.Series(rng.random(pairs.height)))
        .sort("user_id", "key")
        .with_columns(rank=pl.int_range(1, pl.len() + 1).over("user_id").cast(pl.Int32))
        .filter(pl.col("rank") <= n)
        .select("user_id", "rank", "event_id")
    )


def by_score(scored: pl.DataFrame, n: int = LIST_LENGTH) -> pl.DataFrame:
    """The ranker's order before any re-ranking: user_id, rank, event_id, score."""
    return (
        scored.sort(["user_id", "score", "event_id"], descending=[False, True, False])
        .with_columns(rank=pl.int_range(1, pl.len() + 1).over("user_id").cast(pl.Int32))
        .filter(pl.col("rank") <= n)
        .select("user_id", "rank", "event_id", "score")
    )


def feed_lists(
    holdout: Holdout, models: StageModels, *, per_source: int, n: int = LIST_LENGTH
) -> dict[str, pl.DataFrame]:
    """What one model would have served at the cutoff: candidates, every candidate's score,
    the ranker's order and the final feed.

    Content, geo and popularity are refitted on the train side here exactly as the publish
    step refits them on everything; only ALS and the ranker are the versioned artifacts.
    """
    proposed = ranking.candidates(
        als=models.als,
        users=holdout.users,
        events=holdout.events,
        venues=holdout.venues,
        interactions=holdout.interactions,
        eligible=holdout.eligible,
        per_source=per_source,
    )
    scored = ranking.scored(
        proposed,
        ranker=models.ranker,
        now=holdout.cutoff,
        swipes=holdout.swipes,
        attendance=holdout.attendance,
        friendships=holdout.friendships,
        events=holdout.events,
        users=holdout.users,
        venues=holdout.venues,
    )
    final = ranking.feed(
        scored,
        now=holdout.cutoff,
        events=holdout.events,
        venues=holdout.venues,
        users=holdout.users,
        interactions=holdout.interactions,
        n=n,
    )
    return {
        "candidates": proposed,
        "scored": scored.select("user_id", "event_id", "score"),
        "ranker": by_score(scored, n),
        "final_feed": final,
    }


def baseline_lists(
    holdout: Holdout, als: ALSModel, n: int = LIST_LENGTH
) -> dict[str, pl.DataFrame]:
    """Random, popularity by metro and ALS alone, each over the same eligible pool."""
    request = {
        "users": holdout.users.select("user_id", "metro"),
        "candidates": holdout.eligible,
        "exclude": holdout.interactions.select("user_id", "event_id"),
        "n": n,
    }
    return {
        "random": random_lists(holdout, n),
        "popularity": PopularityModel().fit(holdout.interactions).recommend(**request),  # type: ignore[arg-type]
        "als": als.recommend(**request),  # type: ignore[arg-type]
    }


def candidate_recall(proposed: pl.DataFrame, test: pl.DataFrame) -> dict[str, float]:
    """Share of each user's judged events that reach the ranker, per source and for the union.

    Averaged over test users, like recall@K with K = the candidate list; a source that proposes
    nothing for a user counts 0 for that user.
    """
    users = test.group_by("user_id").agg(relevant=pl.len())

    def recall(frame: pl.DataFrame) -> float:
        hits = (
            test.join(frame.select("user_id", "event_id").unique(), on=["user_id", "event_id"])
            .group_by("user_id")
            .agg(hits=pl.len())
        )
        share = (
            users.join(hits, on="user_id", how="left")
            .select((pl.col("hits").fill_null(0) / pl.col("relevant")).mean())
            .item()
        )
        return float(share or 0.0)

    result = {"candidate_recall": recall(proposed)}
    for source in proposed["source"].unique().sort().to_list():
        result[f"candidate_recall.{source}"] = recall(proposed.filter(pl.col("source") == source))
    result["candidates_per_user"] = float(proposed.height / max(1, proposed["user_id"].n_unique()))
    return result


def score_table(
    lists: dict[str, pl.DataFrame], holdout: Holdout, versions: dict[str, int] | None = None
) -> pl.DataFrame:
    """Every metric of every list side by side (see `models.evaluation.evaluate`), best first.

    Coverage is over the eligible pool, novelty against train popularity, intra-list
    diversity by category. `versions` adds the registry version of models that have one.
    """
    item_features = holdout.events.select("event_id", "category")
    train = holdout.interactions.filter(pl.col("liked"))
    results = {
        name: evaluate(
            recs,
            holdout.test,
            K_VALUES,
            train=train,
            catalogue_size=max(1, holdout.eligible.height),
            item_features=item_features,
        )
        for name, recs in lists.items()
    }
    table = side_by_side(results)
    versions = versions or {}
    return table.with_columns(
        version=pl.col("model").replace_strict(versions, default=None, return_dtype=pl.Int64)
    )


def activity_buckets(lists: dict[str, pl.DataFrame], holdout: Holdout, k: int = 10) -> pl.DataFrame:
    """NDCG@k per user-activity bucket for every list, long format with a `model` column."""
    train = holdout.interactions.filter(pl.col("n_swipes") > 0)
    frames = [
        by_activity_bucket(recs, holdout.test, train, k=k).select(
            pl.lit(name).alias("model"), pl.all()
        )
        for name, recs in lists.items()
    ]
    return pl.concat(frames)


def ranker_scores(scored: pl.DataFrame, test: pl.DataFrame) -> pl.DataFrame:
    """The ranker's score of every candidate and its holdout label (0 when untouched).

    Separated label distributions mean the score carries signal; overlapping ones mean not.
    """
    return (
        scored.select("user_id", "event_id", "score")
        .join(test, on=["user_id", "event_id"], how="left")
        .select("score", label=pl.col("relevance").fill_null(0))
    )


def gate(
    table: pl.DataFrame,
    metric: str = "ndcg@10",
    min_gain: float = 0.0,
    challenger: str = CHALLENGER,
    champion: str = CHAMPION,
) -> GateDecision:
    """Promote the challenger only if it beats the champion by more than `min_gain`.

    Both rows come from the same holdout in the same table, so the comparison is like for
    like. No champion row means there is no champion yet: the first model is promoted.
    """
    values = dict(zip(table["model"].to_list(), table[metric].to_list(), strict=True))
    new = values.get(challenger)
    if new is None or (isinstance(new, float) and math.isnan(new)):
        return GateDecision(False, metric, float("nan"), None, f"no {metric} for {challenger}")
    old = values.get(champion)
    if old is None:
        return GateDecision(True, metric, float(new), None, "no champion yet")
    passed = float(new) > float(old) + min_gain
    verdict = "beats" if passed else "does not beat"
    reason = f"challenger {metric} {new:.4f} {verdict} champion {old:.4f} (+{min_gain} needed)"
    return GateDecision(passed, metric, float(new), float(old), reason)
