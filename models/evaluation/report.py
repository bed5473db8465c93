"""Tables that put models next to each other, for the evaluation asset, MLflow and bench.

Kept as plain DataFrames (no plotting here) so the pipeline decides how to render and log them.
"""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl

from models.evaluation.metrics import align_keys, per_user_metrics, standard_columns


def side_by_side(results: dict[str, dict[str, float]], sort_by: str = "ndcg@10") -> pl.DataFrame:
    """One row per model (column `model`), one column per metric, best `sort_by` first.

    Metrics missing for a model are null (e.g. novelty for the oracle without train data);
    column order follows first appearance, so the table reads the same every run. When no model
    has `sort_by`, rows keep the order of `results`.
    """
    columns: list[str] = []
    for metrics in results.values():
        columns.extend(name for name in metrics if name not in columns)
    schema: dict[str, pl.DataType] = {"model": pl.Utf8()}
    schema.update({name: pl.Float64() for name in columns})
    rows = [
        {"model": model, **{name: metrics.get(name) for name in columns}}
        for model, metrics in results.items()
    ]
    table = pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)
    if sort_by in table.columns:
        table = table.sort(sort_by, descending=True, nulls_last=True, maintain_order=True)
    return table


def _bucket_labels(edges: list[int]) -> list[str]:
    labels = []
    for low, high in zip(edges, [*edges[1:], None], strict=True):
        if high is None:
            labels.append(f"{low}+")
        elif high - low == 1:
            labels.append(str(low))
        else:
            labels.append(f"{low}-{high - 1}")
    return labels


def by_activity_bucket(
    recs: pl.DataFrame,
    test: pl.DataFrame,
    train: pl.DataFrame,
    buckets: Iterable[int] = (1, 5, 20, 100),
    k: int = 10,
) -> pl.DataFrame:
    """NDCG@k per user-activity bucket: bucket, min_interactions, users, ndcg@k.

    Activity is a user's number of train interactions; `buckets` are the lower edges, so
    (1, 5, 20, 100) gives "1-4", "5-19", "20-99", "100+", plus "0" (or "0-(first edge - 1)")
    for users below the first edge, e.g. users absent from train. Every bucket is listed, empty
    ones with 0 users and a null NDCG, so plots keep a fixed x axis. This shows whether a model
    only wins on heavy users, which an overall mean hides.
    """
    edges = sorted(set(buckets))
    if not edges or edges[0] < 0:
        raise ValueError(f"buckets must be non-negative lower edges, got {list(buckets)}")
    if edges[0] > 0:
        edges = [0, *edges]
    labels = _bucket_labels(edges)
    per_user = per_user_metrics(recs, test, k).select("user_id", "ndcg")
    activity = align_keys(
        per_user,
        standard_columns(train, "train", ("user_id",)).group_by("user_id").agg(activity=pl.len()),
        "train",
    )
    bucket_index = pl.lit(0, dtype=pl.Int64)
    for i, edge in enumerate(edges[1:], start=1):
        bucket_index = pl.when(pl.col("activity") >= edge).then(i).otherwise(bucket_index)
    scored = (
        per_user.join(activity, on="user_id", how="left")
        .with_columns(pl.col("activity").fill_null(0))
        .with_columns(_bucket=bucket_index)
        .group_by("_bucket")
        .agg(users=pl.len(), ndcg=pl.col("ndcg").mean())
    )
    frame = pl.DataFrame(
        {
            "_bucket": list(range(len(edges))),
            "bucket": labels,
            "min_interactions": edges,
        },
        schema={"_bucket": pl.Int64, "bucket": pl.Utf8, "min_interactions": pl.Int64},
    )
    return (
        frame.join(scored, on="_bucket", how="left")
        .with_columns(pl.col("users").fill_null(0).cast(pl.Int64))
        .sort("_bucket")
        .select("bucket", "min_interactions", "users", pl.col("ndcg").alias(f"ndcg@{k}"))
    )
