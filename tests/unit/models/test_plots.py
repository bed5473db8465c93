"""Evaluation plots: each writes a real PNG, sized by its rows, and rejects bad input clearly."""

from __future__ import annotations

import ast
import struct
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from models.evaluation import plots
from models.evaluation.plots import (
    feature_importance,
    metric_by_bucket,
    metric_by_model,
    metrics_by_model,
    score_distributions,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """Width and height in pixels, after checking the file is a non-trivial PNG."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert data[12:16] == b"IHDR"
    assert len(data) > 2_000
    width, height = struct.unpack(">II", data[16:24])
    assert 200 <= width <= 4_000
    assert 150 <= height <= 4_000
    return width, height


def models_table(n: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "model": [f"model_{i}" for i in range(n)],
            "ndcg@10": [0.5 - 0.03 * i for i in range(n)],
            "recall@20": [0.7 - 0.04 * i for i in range(n)],
        },
        schema={"model": pl.Utf8, "ndcg@10": pl.Float64, "recall@20": pl.Float64},
    )


def bucket_table(labels: list[str], models: list[str]) -> pl.DataFrame:
    rows = [
        {
            "model": model,
            "bucket": label,
            "users": 0 if label == "0" else 10 * (j + 1),
            "ndcg@10": None if label == "0" else 0.1 * (j + 1) + 0.01 * i,
        }
        for i, model in enumerate(models)
        for j, label in enumerate(labels)
    ]
    schema = {"model": pl.Utf8, "bucket": pl.Utf8, "users": pl.Int64, "ndcg@10": pl.Float64}
    return pl.DataFrame(rows, schema=schema, orient="row")


def scores_table(n: int = 400) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "score": [(i % 97) / 10 + (i % 4) for i in range(n)],
            "label": [i % 4 for i in range(n)],
        },
        schema={"score": pl.Float64, "label": pl.Int64},
    )


def importance_table(n: int) -> pl.DataFrame:
    return pl.DataFrame(
        {"feature": [f"feature_{i}" for i in range(n)], "gain": [float(i * i) for i in range(n)]},
        schema={"feature": pl.Utf8, "gain": pl.Float64},
    )


def test_module_never_imports_pyplot() -> None:
    tree = ast.parse(Path(plots.__file__).read_text())
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names.append(node.module or "")
        if isinstance(node, ast.Import | ast.ImportFrom):
            names.extend(alias.name for alias in node.names)
    assert names
    assert not [name for name in names if "pyplot" in name]


# metric_by_model


def test_metric_by_model_writes_png_and_grows_with_models(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "few.png"
    assert metric_by_model(models_table(2), "ndcg@10", path) == path
    _, few = png_size(path)
    _, many = png_size(metric_by_model(models_table(15), "ndcg@10", tmp_path / "many.png"))
    assert many > few


def test_metric_by_model_skips_null_rows(tmp_path: Path) -> None:
    table = models_table(3).with_columns(
        pl.when(pl.col("model") == "model_1")
        .then(None)
        .otherwise(pl.col("ndcg@10"))
        .alias("ndcg@10")
    )
    with_null = png_size(metric_by_model(table, "ndcg@10", tmp_path / "null.png"))
    without = png_size(
        metric_by_model(table.drop_nulls("ndcg@10"), "ndcg@10", tmp_path / "dropped.png")
    )
    assert with_null == without


def test_metric_by_model_all_null_raises(tmp_path: Path) -> None:
    table = models_table(2).with_columns(pl.lit(None, dtype=pl.Float64).alias("ndcg@10"))
    with pytest.raises(ValueError, match="nothing to plot"):
        metric_by_model(table, "ndcg@10", tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_metric_by_model_empty_raises(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nothing to plot"):
        metric_by_model(models_table(0), "ndcg@10", tmp_path / "x.png")


def test_metric_by_model_non_numeric_metric_raises(tmp_path: Path) -> None:
    table = models_table(2).with_columns(pl.col("ndcg@10").cast(pl.Utf8))
    with pytest.raises(ValueError, match="numeric"):
        metric_by_model(table, "ndcg@10", tmp_path / "x.png")


# metrics_by_model


def test_metrics_by_model_writes_png_and_grows_with_models(tmp_path: Path) -> None:
    metrics = ["ndcg@10", "recall@20"]
    _, few = png_size(metrics_by_model(models_table(2), metrics, tmp_path / "few.png"))
    _, many = png_size(metrics_by_model(models_table(12), metrics, tmp_path / "many.png"))
    assert many > few


def test_metrics_by_model_skips_absent_metrics_and_nulls(tmp_path: Path) -> None:
    table = models_table(3).with_columns(
        pl.when(pl.col("model") == "model_0")
        .then(None)
        .otherwise(pl.col("recall@20"))
        .alias("recall@20")
    )
    path = metrics_by_model(table, ["ndcg@10", "mrr", "recall@20"], tmp_path / "some.png")
    png_size(path)


def test_metrics_by_model_none_present_raises(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mrr"):
        metrics_by_model(models_table(2), ["mrr", "map@10"], tmp_path / "x.png")


def test_metrics_by_model_all_null_raises(tmp_path: Path) -> None:
    table = models_table(2).with_columns(
        pl.lit(None, dtype=pl.Float64).alias("ndcg@10"),
        pl.lit(None, dtype=pl.Float64).alias("recall@20"),
    )
    with pytest.raises(ValueError, match="nothing to plot"):
        metrics_by_model(table, ["ndcg@10", "recall@20"], tmp_path / "x.png")


# metric_by_bucket

LABELS = ["0", "1-4", "5-19", "20-99", "100+"]


def test_metric_by_bucket_grows_with_buckets_null_bucket_included(tmp_path: Path) -> None:
    models = ["als", "ranker", "popular"]
    few, _ = png_size(
        metric_by_bucket(bucket_table(LABELS[:2], models), "ndcg@10", tmp_path / "a.png")
    )
    many, _ = png_size(
        metric_by_bucket(
            bucket_table([*LABELS, "500+", "1000+"], models), "ndcg@10", tmp_path / "b.png"
        )
    )
    assert many > few


def test_metric_by_bucket_all_null_raises(tmp_path: Path) -> None:
    table = bucket_table(["0"], ["als"])
    with pytest.raises(ValueError, match="nothing to plot"):
        metric_by_bucket(table, "ndcg@10", tmp_path / "x.png")


def test_metric_by_bucket_empty_raises(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nothing to plot"):
        metric_by_bucket(bucket_table([], ["als"]), "ndcg@10", tmp_path / "x.png")


# score_distributions


def test_score_distributions_writes_png(tmp_path: Path) -> None:
    png_size(score_distributions(scores_table(), tmp_path / "scores.png"))


def test_score_distributions_drops_null_and_non_finite(tmp_path: Path) -> None:
    extra = pl.DataFrame(
        {"score": [None, float("nan"), float("inf"), 1.0], "label": [0, 1, 2, None]},
        schema={"score": pl.Float64, "label": pl.Int64},
    )
    path = score_distributions(pl.concat([scores_table(40), extra]), tmp_path / "s.png", bins=5)
    png_size(path)


def test_score_distributions_empty_raises(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nothing to plot"):
        score_distributions(scores_table(0), tmp_path / "x.png")


def test_score_distributions_bad_bins_raises(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="bins"):
        score_distributions(scores_table(), tmp_path / "x.png", bins=0)


# feature_importance


def test_feature_importance_top_sets_height(tmp_path: Path) -> None:
    _, top5 = png_size(feature_importance(importance_table(30), tmp_path / "t5.png", top=5))
    _, top20 = png_size(feature_importance(importance_table(30), tmp_path / "t20.png", top=20))
    assert top20 > top5


def test_feature_importance_fewer_features_than_top(tmp_path: Path) -> None:
    png_size(feature_importance(importance_table(3), tmp_path / "few.png", top=20))


def test_feature_importance_empty_raises(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nothing to plot"):
        feature_importance(importance_table(0), tmp_path / "x.png")


# shared: a missing column is named in the error

Plot = Callable[[pl.DataFrame, Path], Path]

CASES: list[tuple[str, Plot, pl.DataFrame, str]] = [
    ("metric_model", lambda f, p: metric_by_model(f, "ndcg@10", p), models_table(2), "model"),
    ("metric_metric", lambda f, p: metric_by_model(f, "ndcg@10", p), models_table(2), "ndcg@10"),
    (
        "metrics_model",
        lambda f, p: metrics_by_model(f, ["ndcg@10"], p),
        models_table(2),
        "model",
    ),
    (
        "bucket_users",
        lambda f, p: metric_by_bucket(f, "ndcg@10", p),
        bucket_table(LABELS, ["als"]),
        "users",
    ),
    (
        "bucket_bucket",
        lambda f, p: metric_by_bucket(f, "ndcg@10", p),
        bucket_table(LABELS, ["als"]),
        "bucket",
    ),
    (
        "bucket_metric",
        lambda f, p: metric_by_bucket(f, "ndcg@10", p),
        bucket_table(LABELS, ["als"]),
        "ndcg@10",
    ),
    ("scores_label", score_distributions, scores_table(10), "label"),
    ("scores_score", score_distributions, scores_table(10), "score"),
    ("importance_gain", feature_importance, importance_table(5), "gain"),
    ("importance_feature", feature_importance, importance_table(5), "feature"),
]


@pytest.mark.parametrize(
    ("plot", "frame", "column"), [case[1:] for case in CASES], ids=[case[0] for case in CASES]
)
def test_missing_column_is_named(
    tmp_path: Path, plot: Plot, frame: pl.DataFrame, column: str
) -> None:
    with pytest.raises(ValueError, match=f"'{column}'"):
        plot(frame.drop(column), tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
