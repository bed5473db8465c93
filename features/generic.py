"""Ranker features for any interaction log, where the app's own tables do not exist.

The nightly run describes a candidate with swipes, RSVPs, friends and venues
(`features.point_in_time`); a public dataset (`godo evaluate --interactions FILE`) has only who
interacted with what, usually when, and maybe an item file. These are the features every such
log supports, computed from the *history the generators were fitted on* (never from the
labels or the test side):

- user activity: the user's interactions relative to the mean user, and its percentile;
- item popularity: the item's share of all interactions, share of users, and percentile;
- item recency (when timestamps exist): days from the item's last and first interaction to the
  end of the history, and the share of its interactions in the newest tenth of the history;
- generator evidence: each generator's score rescaled per user, its per-user rank, how
  many generators proposed the candidate and their reciprocal-rank fusion;
- item categories (with an item file): one-hot of the catalogue's most common categories, and
  how much of the user's history falls in the candidate's categories (share, and lift over
  the share of all interactions).

Counts enter as shares, ranks and percentiles, not raw numbers, on purpose: the ranker is
trained on generators fitted on part of the train side and applied to generators fitted on
all of it, so a raw count would shift by the ratio of the two sides while a share does not.
Pure Polars, no model code: `models.generic` assembles these into the feature plug-in.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import polars as pl

MICROS_PER_DAY = 86_400_000_000
RECENT_SHARE = 0.1  # "recent" = the newest tenth of the history's time span
TOP_CATEGORIES = 20  # one-hot columns: more would mostly add noise to a tree model
KEY = ("user_id", "event_id")
RRF_K = 60.0  # the constant of reciprocal-rank fusion, as published


def user_activity(history: pl.DataFrame) -> pl.DataFrame:
    """user_id, user_activity (interactions / mean per user), user_activity_pct (0..1]."""
    counts = history.group_by("user_id").agg(n=pl.len())
    return counts.select(
        "user_id",
        user_activity=pl.col("n") / pl.col("n").mean(),
        user_activity_pct=pl.col("n").rank("average") / pl.len(),
    )


def item_popularity(history: pl.DataFrame) -> pl.DataFrame:
    """event_id, item_share (of interactions), item_user_share (of users), item_pop_pct."""
    users = max(1, history["user_id"].n_unique())
    counts = history.group_by("event_id").agg(n=pl.len(), users=pl.col("user_id").n_unique())
    return counts.select(
        "event_id",
        item_share=pl.col("n") / pl.col("n").sum(),
        item_user_share=pl.col("users") / users,
        item_pop_pct=pl.col("n").rank("average") / pl.len(),
    )


def item_recency(history: pl.DataFrame) -> pl.DataFrame | None:
    """event_id, item_days_since_last, item_days_since_first, item_recent_share; None
    without a `timestamp` column.

    "Since" is measured to the end of the history, the moment the generators were fitted.
    """
    if "timestamp" not in history.columns:
        return None
    stamps = history.select(pl.col("timestamp").dt.epoch("us")).to_series()
    end, start = stamps.max(), stamps.min()
    if not isinstance(end, int) or not isinstance(start, int):
        return None
    recent = end - int((end - start) * RECENT_SHARE)
    micros = pl.col("timestamp").dt.epoch("us")
    return history.group_by("event_id").agg(
        item_days_since_last=(end - micros.max()) / MICROS_PER_DAY,
        item_days_since_first=(end - micros.min()) / MICROS_PER_DAY,
        item_recent_share=(micros >= recent).mean(),
    )


def generator_evidence(candidates: pl.DataFrame, names: Iterable[str]) -> pl.DataFrame:
    """Each generator's evidence in a form that keeps its meaning from one fit to the next.

    - score_<name> is rescaled per user to 0..1 over the items that generator proposed (1 =
      its best for the user): raw scales (ALS dot products, EASE weights, cosines, counts)
      change between the fit the ranker learns on and the fit it is applied to;
    - rank_<name>: 1 = the generator's best for the user, null where it did not propose;
    - n_sources: how many generators proposed the item;
    - rrf: reciprocal-rank fusion, the sum of 1 / (RRF_K + rank) over the generators that
      proposed it (Cormack, Clarke & Buettcher, SIGIR 2009), a strong unsupervised
      combination the trees can start from.
    """
    names = list(names)
    scores = [pl.col(f"score_{name}") for name in names]
    span = [s.max().over("user_id") - s.min().over("user_id") for s in scores]
    rescaled = [
        pl.when(d > 0)
        .then((s - s.min().over("user_id")) / d)
        .otherwise(pl.when(s.is_not_null()).then(1.0))
        .alias(f"score_{name}")
        for s, d, name in zip(scores, span, names, strict=True)
    ]
    ranks = [
        s.rank("ordinal", descending=True).over("user_id").cast(pl.Float64).alias(f"rank_{name}")
        for s, name in zip(scores, names, strict=True)
    ]
    frame = candidates.with_columns(*ranks).with_columns(*rescaled)
    if not names:
        return frame.with_columns(n_sources=pl.lit(0, pl.Int8), rrf=pl.lit(0.0))
    return frame.with_columns(
        n_sources=pl.sum_horizontal(s.is_not_null().cast(pl.Int8) for s in scores),
        rrf=pl.sum_horizontal(
            (1.0 / (RRF_K + pl.col(f"rank_{name}"))).fill_null(0.0) for name in names
        ),
    )


def category_slug(category: str) -> str:
    """A category as a safe column-name fragment ("Children's" -> "children_s")."""
    return re.sub(r"[^a-z0-9]+", "_", category.lower()).strip("_") or "blank"


def top_categories(item_categories: pl.DataFrame, n: int = TOP_CATEGORIES) -> tuple[str, ...]:
    """The `n` categories with the most items in the catalogue (ties by name).

    Taken from the item file, not from a history, so the training and the scoring side of
    the ranker get the very same one-hot columns.
    """
    ordered = (
        item_categories.group_by("category")
        .agg(items=pl.len())
        .sort(["items", "category"], descending=[True, False])["category"]
        .to_list()
    )
    by_slug: dict[str, str] = {}
    for category in ordered:  # two spellings of one slug would collide as columns
        by_slug.setdefault(category_slug(category), category)
    return tuple(by_slug.values())[:n]


def category_profile(history: pl.DataFrame, item_categories: pl.DataFrame) -> pl.DataFrame:
    """user_id, category, share (of the user's interactions with an item of that category),
    lift (share over the same share across all interactions)."""
    tagged = history.select("user_id", "event_id").join(item_categories, on="event_id")
    users = history.group_by("user_id").agg(_n=pl.len())
    overall = (
        tagged.group_by("category")
        .agg(_all=pl.len())
        .with_columns(_global=pl.col("_all") / max(1, history.height))
    )
    return (
        tagged.group_by("user_id", "category")
        .agg(_hits=pl.len())
        .join(users, on="user_id")
        .join(overall, on="category")
        .select(
            "user_id",
            "category",
            share=pl.col("_hits") / pl.col("_n"),
            lift=(pl.col("_hits") / pl.col("_n")) / pl.col("_global"),
        )
    )


def category_features(
    candidates: pl.DataFrame,
    item_categories: pl.DataFrame,
    profile: pl.DataFrame,
    onehot: tuple[str, ...],
) -> pl.DataFrame:
    """cat_<slug> one-hot (Int8) for `onehot`, and category_match_mean/max and
    category_lift_mean: the user's share and lift over the candidate's categories (0 where
    the user has none of them, null for an item without a category)."""
    pairs = candidates.select(*KEY).unique()
    matched = (
        pairs.join(item_categories, on="event_id")
        .join(profile, on=["user_id", "category"], how="left")
        .group_by(*KEY)
        .agg(
            category_match_mean=pl.col("share").fill_null(0.0).mean(),
            category_match_max=pl.col("share").fill_null(0.0).max(),
            category_lift_mean=pl.col("lift").fill_null(0.0).mean(),
        )
    )
    flags = (
        item_categories.filter(pl.col("category").is_in(list(onehot)))
        .with_columns(pl.lit(1, dtype=pl.Int8).alias("_flag"))
        .pivot(on="category", index="event_id", values="_flag", aggregate_function="max")
    )
    columns = {c: f"cat_{category_slug(c)}" for c in onehot if c in flags.columns}
    flags = flags.rename(columns).select("event_id", *columns.values())
    out = candidates.join(matched, on=list(KEY), how="left").join(flags, on="event_id", how="left")
    return out.with_columns(
        pl.col(name).fill_null(0).cast(pl.Int8)
        if name in out.columns
        else pl.lit(0, dtype=pl.Int8).alias(name)
        for name in (f"cat_{category_slug(c)}" for c in onehot)
    )


@dataclass(frozen=True)
class HistoryFeatures:
    """Every table the features need, computed once from one history; call it on candidates.

    Built once per history and applied chunk by chunk, so scoring many users never
    recomputes the per-user and per-item tables.
    """

    users: pl.DataFrame
    items: pl.DataFrame
    recency: pl.DataFrame | None
    item_categories: pl.DataFrame | None
    profile: pl.DataFrame | None
    onehot: tuple[str, ...]
    generators: tuple[str, ...]

    def __call__(self, candidates: pl.DataFrame) -> pl.DataFrame:
        """The candidates (user_id, event_id, score_<generator>...) with every feature."""
        frame = generator_evidence(candidates, self.generators)
        frame = frame.join(self.users, on="user_id", how="left").join(
            self.items, on="event_id", how="left"
        )
        if self.recency is not None:
            frame = frame.join(self.recency, on="event_id", how="left")
        if self.item_categories is not None and self.profile is not None:
            frame = category_features(frame, self.item_categories, self.profile, self.onehot)
        return frame


def history_features(
    history: pl.DataFrame,
    *,
    generators: Iterable[str],
    item_categories: pl.DataFrame | None = None,
    onehot: int = TOP_CATEGORIES,
) -> HistoryFeatures:
    """The generic feature plug-in for one history (user_id, event_id[, timestamp]).

    `item_categories` is long (event_id, category; several rows for a multi-category item).
    """
    categories = None
    profile = None
    columns: tuple[str, ...] = ()
    if item_categories is not None and item_categories.height:
        categories = item_categories.select(
            pl.col("event_id").cast(pl.Utf8), pl.col("category").cast(pl.Utf8)
        ).unique()
        profile = category_profile(history, categories)
        columns = top_categories(categories, onehot)
    return HistoryFeatures(
        users=user_activity(history),
        items=item_popularity(history),
        recency=item_recency(history),
        item_categories=categories,
        profile=profile,
        onehot=columns,
        generators=tuple(generators),
    )
