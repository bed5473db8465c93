"""Offline evaluation: split protocols, full-ranking metrics, side-by-side reports.

Pure functions over Polars frames (no Dagster, no MLflow), so the pipeline asset, the
`godo evaluate --interactions FILE` command, notebooks and `bench/quality.py` all score models
the same way.
"""

from models.evaluation.metrics import (
    catalogue_coverage,
    evaluate,
    hit_rate_at_k,
    intra_list_diversity,
    item_popularity,
    map_at_k,
    mrr,
    ndcg_at_k,
    novelty,
    per_user_metrics,
    precision_at_k,
    recall_at_k,
)
from models.evaluation.protocols import (
    Split,
    global_time_split,
    leave_one_out,
    load_interactions,
    random_split,
    time_split,
    validate_interactions,
)
from models.evaluation.report import by_activity_bucket, side_by_side

__all__ = [
    "Split",
    "by_activity_bucket",
    "catalogue_coverage",
    "evaluate",
    "global_time_split",
    "hit_rate_at_k",
    "intra_list_diversity",
    "item_popularity",
    "leave_one_out",
    "load_interactions",
    "map_at_k",
    "mrr",
    "ndcg_at_k",
    "novelty",
    "per_user_metrics",
    "precision_at_k",
    "random_split",
    "recall_at_k",
    "side_by_side",
    "time_split",
    "validate_interactions",
]
