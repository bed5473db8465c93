"""Full-ranking offline metrics over Polars frames, vectorised per user (no Python user loops).

Inputs
- `recs`: user_id, item_id, rank (1 = top). `event_id` is accepted in place of `item_id`, so a
  candidate model's output (`models.base.RECS_SCHEMA`) can be passed as is. Ranks only order a
  user's list: gaps are closed and duplicate items keep their best rank, so a filtered list is
  scored by the positions the user would actually see.
- `test` (relevance): user_id, item_id, optional graded `relevance` (default 1 for every row).
  Duplicate (user, item) rows keep their highest relevance; rows with relevance <= 0 are not
  relevant (a pass is not a hit).

Averaging: accuracy metrics are the mean over every user with at least one relevant test item.
Such a user with no recommendations at all (or a list that misses everything) counts as 0, so a
model cannot raise its score by staying silent on hard users. Users that have recommendations
but no relevant test item are ignored (there is nothing to find for them).

Definitions followed
- NDCG@k: Jarvelin & Kekalainen, "Cumulated gain-based evaluation of IR techniques" (TOIS
  2002), with the exponential gain 2^rel - 1 of Burges et al., "Learning to Rank using Gradient
  Descent" (ICML 2005), discount 1 / log2(rank + 1); the ideal DCG ranks the user's relevant
  items by relevance, truncated at k. This is what LightGBM's lambdarank optimises.
- Recall@k = hits in top k / all relevant; Precision@k = hits in top k / k (a shorter list is
  not forgiven); HitRate@k = 1 if any hit in top k.
- MAP@k: mean of precision@i at each hit i <= k, normalised by min(k, n_relevant) so a perfect
  list scores 1 even when a user has more relevant items than k (the convention of `ml_metrics`
  `apk` and of RecBole).
- MRR: 1 / rank of the first relevant item (Voorhees, TREC-8 QA track 1999), optionally @k.
- Coverage: distinct recommended items / catalogue size (Ge et al., "Beyond accuracy",
  RecSys 2010).
- Novelty: mean self-information -log2 p(i) of recommended items with p(i) = item's share of
  train interactions (Zhou et al., PNAS 2010; Vargas & Castells, RecSys 2011). Items never seen
  in train count as seen once, so a brand-new event gets the largest finite value log2(N).
- Intra-list diversity: mean pairwise distance within a list (Ziegler et al., WWW 2005), the
  distance being 1 - [same category] or 1 - cosine similarity of embeddings.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import polars as pl

PER_USER_COLUMNS: tuple[str, ...] = ("ndcg", "recall", "precision", "map", "hit_rate", "rr")


# --------------------------------------------------------------------------- input shaping


def standard_columns(frame: pl.DataFrame, name: str, needed: Iterable[str]) -> pl.DataFrame:
    """Rename `event_id` to `item_id` if needed and check the columns; ValueError names them."""
    if "item_id" not in frame.columns and "event_id" in frame.columns:
        frame = frame.rename({"event_id": "item_id"})
    for column in needed:
        if column not in frame.columns:
            raise ValueError(f"{name} is missing column {column!r} (has {frame.columns})")
    return frame


def align_keys(left: pl.DataFrame, right: pl.DataFrame, right_name: str) -> pl.DataFrame:
    """Cast `right`'s id columns to `left`'s when both are integers; refuse silent mismatches."""
    casts = {}
    for column in ("user_id", "item_id"):
        if column not in left.columns or column not in right.columns:
            continue
        a, b = left.schema[column], right.schema[column]
        if a == b:
            continue
        if a.is_integer() and b.is_integer():
            casts[column] = a
        else:
            raise ValueError(f"{right_name} column {column!r} is {b} but recs has {a}")
    return right.cast(casts) if casts else right  # type: ignore[arg-type]


def ranked_lists(recs: pl.DataFrame, k: int | None = None) -> pl.DataFrame:
    """user_id, item_id, pos: each user's list with dense 1-based positions, cut at `k`."""
    if k is not None and k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    frame = standard_columns(recs, "recs", ("user_id", "item_id", "rank"))
    lists = (
        frame.lazy()
        .select("user_id", "item_id", "rank")
        .sort(["user_id", "rank", "item_id"])
        .unique(["user_id", "item_id"], keep="first", maintain_order=True)
        .with_columns(pos=pl.int_range(1, pl.len() + 1, dtype=pl.Int64).over("user_id"))
    )
    if k is not None:
        lists = lists.filter(pl.col("pos") <= k)
    return lists.select("user_id", "item_id", "pos").collect()


def relevant_items(test: pl.DataFrame, relevance_col: str = "relevance") -> pl.DataFrame:
    """user_id, item_id, relevance (> 0 only, max over duplicate rows)."""
    frame = standard_columns(test, "test", ("user_id", "item_id"))
    if relevance_col in frame.columns:
        if not frame.schema[relevance_col].is_numeric():
            raise ValueError(f"test column {relevance_col!r} must be numeric")
        rel = pl.col(relevance_col).cast(pl.Float64).fill_null(0.0)
    else:
        rel = pl.lit(1.0)
    return (
        frame.select("user_id", "item_id", relevance=rel)
        .group_by("user_id", "item_id")
        .agg(pl.col("relevance").max())
        .filter(pl.col("relevance") > 0)
    )


# --------------------------------------------------------------------------- accuracy


def per_user_metrics(
    recs: pl.DataFrame,
    test: pl.DataFrame,
    k: int | None,
    relevance_col: str = "relevance",
) -> pl.DataFrame:
    """One row per user with a relevant test item: n_relevant, ndcg, recall, precision, map,
    hit_rate, rr (reciprocal rank), all at `k` (`k=None`: the whole list; precision then uses
    the list length and MAP is normalised by n_relevant, i.e. plain average precision).
    """
    lists = ranked_lists(recs, k)
    truth = align_keys(lists, relevant_items(test, relevance_col), "test")
    gain = 2.0 ** pl.col("relevance") - 1.0
    discount = (pl.col("pos").cast(pl.Float64) + 1.0).log(2)

    ideal = truth.sort(["user_id", "relevance"], descending=[False, True]).with_columns(
        pos=pl.int_range(1, pl.len() + 1, dtype=pl.Int64).over("user_id")
    )
    users = ideal.group_by("user_id").agg(
        n_relevant=pl.len(),
        idcg=(gain / discount).filter(pl.col("pos") <= (k if k is not None else pl.len())).sum(),
    )
    list_len = lists.group_by("user_id").agg(list_len=pl.len())
    hits = (
        lists.join(truth, on=["user_id", "item_id"], how="inner")
        .sort(["user_id", "pos"])
        .with_columns(hit_no=pl.int_range(1, pl.len() + 1).over("user_id"))
        .group_by("user_id")
        .agg(
            dcg=(gain / discount).sum(),
            n_hits=pl.len(),
            first=pl.col("pos").min(),
            ap_sum=(pl.col("hit_no") / pl.col("pos")).sum(),
        )
    )
    n_rel = pl.col("n_relevant").cast(pl.Float64)
    cut = pl.lit(float(k)) if k is not None else pl.col("list_len").cast(pl.Float64)
    return (
        users.join(hits, on="user_id", how="left")
        .join(list_len, on="user_id", how="left")
        .with_columns(
            pl.col("dcg", "ap_sum").fill_null(0.0),
            pl.col("n_hits", "list_len").fill_null(0),
        )
        .select(
            "user_id",
            "n_relevant",
            ndcg=pl.col("dcg") / pl.col("idcg"),
            recall=pl.col("n_hits") / n_rel,
            precision=pl.when(cut > 0).then(pl.col("n_hits") / cut).otherwise(0.0),
            map=pl.col("ap_sum") / (pl.min_horizontal(cut, n_rel) if k is not None else n_rel),
            hit_rate=(pl.col("n_hits") > 0).cast(pl.Float64),
            rr=(1.0 / pl.col("first").cast(pl.Float64)).fill_null(0.0),
        )
        .sort("user_id")
    )


def _mean(frame: pl.DataFrame, column: str) -> float:
    if frame.height == 0:
        return 0.0
    value = frame[column].mean()
    return float(value) if isinstance(value, int | float) else 0.0


def ndcg_at_k(
    recs: pl.DataFrame, test: pl.DataFrame, k: int, relevance_col: str = "relevance"
) -> float:
    """Mean NDCG@k with gains 2^rel - 1 (binary relevance: gain 1)."""
    return _mean(per_user_metrics(recs, test, k, relevance_col), "ndcg")


def recall_at_k(recs: pl.DataFrame, test: pl.DataFrame, k: int) -> float:
    """Mean share of each user's relevant items found in their top k."""
    return _mean(per_user_metrics(recs, test, k), "recall")


def precision_at_k(recs: pl.DataFrame, test: pl.DataFrame, k: int) -> float:
    """Mean share of each user's top k that is relevant (denominator k, always)."""
    return _mean(per_user_metrics(recs, test, k), "precision")


def map_at_k(recs: pl.DataFrame, test: pl.DataFrame, k: int) -> float:
    """Mean average precision@k, normalised by min(k, n_relevant)."""
    return _mean(per_user_metrics(recs, test, k), "map")


def mrr(recs: pl.DataFrame, test: pl.DataFrame, k: int | None = None) -> float:
    """Mean reciprocal rank of the first relevant item (0 if none within `k` / the list)."""
    return _mean(per_user_metrics(recs, test, k), "rr")


def hit_rate_at_k(recs: pl.DataFrame, test: pl.DataFrame, k: int) -> float:
    """Share of users with at least one relevant item in their top k."""
    return _mean(per_user_metrics(recs, test, k), "hit_rate")


# --------------------------------------------------------------------------- beyond accuracy


def catalogue_coverage(recs: pl.DataFrame, catalogue_size: int, k: int | None = None) -> float:
    """Distinct items recommended to anyone (in the top `k`) over the catalogue size."""
    if catalogue_size < 1:
        raise ValueError(f"catalogue_size must be >= 1, got {catalogue_size}")
    return ranked_lists(recs, k)["item_id"].n_unique() / catalogue_size


def item_popularity(train: pl.DataFrame) -> pl.DataFrame:
    """item_id, count: interactions per item in `train` (the input `novelty` expects)."""
    frame = standard_columns(train, "train", ("item_id",))
    return frame.group_by("item_id").agg(count=pl.len())


def novelty(recs: pl.DataFrame, popularity: pl.DataFrame, k: int | None = None) -> float:
    """Mean self-information -log2(count_i / N) of recommended items, per list then per user.

    `popularity` is item_id, count (see `item_popularity`); N is the sum of counts. Items absent
    from it count as 1 (see the module docstring). 0.0 when there are no lists.
    """
    pop = standard_columns(popularity, "popularity", ("item_id", "count"))
    total = float(pop["count"].sum())
    if total <= 0:
        raise ValueError("popularity column 'count' must sum to a positive number")
    lists = ranked_lists(recs, k)
    pop = align_keys(lists, pop.select("item_id", "count"), "popularity")
    per_user = (
        lists.join(pop, on="item_id", how="left")
        .with_columns(
            info=-(
                pl.col("count").cast(pl.Float64).fill_null(1.0).clip(lower_bound=1.0) / total
            ).log(2)
        )
        .group_by("user_id")
        .agg(pl.col("info").mean())
    )
    return _mean(per_user, "info")


def intra_list_diversity(
    recs: pl.DataFrame, item_features: pl.DataFrame, k: int | None = None
) -> float:
    """Mean over users of the mean pairwise distance between items of their top-k list.

    `item_features` is item_id plus either `category` (distance 1 - [same category]) or
    `embedding` (a list of floats; distance 1 - cosine). Items without a category/embedding are
    left out of the pairs rather than counted as maximally different, so unknown items cannot
    inflate diversity. Lists with fewer than 2 known items are undefined and skipped. Both forms
    avoid the O(k^2) self-join: same-category pairs are sum c(c-1)/2 over category counts, and
    the sum of pairwise cosines is ||sum of unit vectors||^2 - (number of unit vectors).
    """
    features = standard_columns(item_features, "item_features", ("item_id",))
    lists = ranked_lists(recs, k)
    if "category" in features.columns:
        features = align_keys(lists, features.select("item_id", "category"), "item_features")
        per_user = (
            lists.join(features.unique("item_id"), on="item_id", how="inner")
            .filter(pl.col("category").is_not_null())
            .group_by("user_id", "category")
            .agg(c=pl.len().cast(pl.Float64))
            .group_by("user_id")
            .agg(n=pl.col("c").sum(), same=(pl.col("c") * (pl.col("c") - 1) / 2).sum())
            .filter(pl.col("n") >= 2)
            .select(ild=1.0 - pl.col("same") / (pl.col("n") * (pl.col("n") - 1) / 2))
        )
        return _mean(per_user, "ild")
    if "embedding" in features.columns:
        return _cosine_ild(lists, align_keys(lists, features, "item_features"))
    raise ValueError("item_features needs a 'category' or an 'embedding' column")


def _cosine_ild(lists: pl.DataFrame, features: pl.DataFrame) -> float:
    known = features.select("item_id", "embedding").unique("item_id").drop_nulls()
    if known.height == 0:
        return 0.0
    matrix = np.asarray(known["embedding"].to_list(), dtype=np.float64)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    unit = np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)
    index = known.select("item_id").with_row_index("row")
    rows = lists.join(index, on="item_id", how="inner").with_columns(
        user_code=pl.col("user_id").rank("dense").cast(pl.Int64) - 1
    )
    if rows.height == 0:
        return 0.0
    codes = rows["user_code"].to_numpy()
    vectors = unit[rows["row"].to_numpy()]
    n_users = int(codes.max()) + 1
    sums = np.zeros((n_users, unit.shape[1]))
    np.add.at(sums, codes, vectors)
    counts = np.bincount(codes, minlength=n_users).astype(np.float64)
    self_sim = np.bincount(codes, weights=(vectors**2).sum(axis=1), minlength=n_users)
    valid = counts >= 2
    if not valid.any():
        return 0.0
    pair_sim = ((sums**2).sum(axis=1) - self_sim)[valid] / (counts[valid] * (counts[valid] - 1))
    return float(np.mean(1.0 - pair_sim))


# --------------------------------------------------------------------------- all at once


def evaluate(
    recs: pl.DataFrame,
    test: pl.DataFrame,
    k_values: Iterable[int] = (10, 20),
    *,
    train: pl.DataFrame | None = None,
    catalogue_size: int | None = None,
    item_features: pl.DataFrame | None = None,
    relevance_col: str = "relevance",
) -> dict[str, float]:
    """Every metric for one model, named "ndcg@10", "recall@20", "map@10", "mrr", ...

    Per k: ndcg, recall, precision, map, hit_rate and (with `item_features`) ild. Once: mrr
    over the whole list, "coverage" and (with `train`) "novelty" over the top max(k), and
    "users", the number of users averaged over. `catalogue_size` defaults to the distinct items
    in train, test and recs together.
    """
    ks = sorted(set(k_values))
    if not ks:
        raise ValueError("k_values must not be empty")
    result: dict[str, float] = {}
    for k in ks:
        per_user = per_user_metrics(recs, test, k, relevance_col)
        for column in ("ndcg", "recall", "precision", "map", "hit_rate"):
            result[f"{column}@{k}"] = _mean(per_user, column)
        if item_features is not None:
            result[f"ild@{k}"] = intra_list_diversity(recs, item_features, k)
    full = per_user_metrics(recs, test, None, relevance_col)
    result["mrr"] = _mean(full, "rr")
    result["users"] = float(full.height)
    top = max(ks)
    if catalogue_size is None:
        frames = [
            standard_columns(f, "frame", ("item_id",)) for f in (recs, test, train) if f is not None
        ]
        lists = ranked_lists(recs)
        catalogue_size = max(
            1,
            pl.concat(
                [align_keys(lists, f.select("item_id"), "items")["item_id"] for f in frames]
            ).n_unique(),
        )
    result["coverage"] = catalogue_coverage(recs, catalogue_size, top)
    if train is not None:
        result["novelty"] = novelty(recs, item_popularity(train), top)
    return result
