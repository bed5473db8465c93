"""PNG charts of offline-evaluation results, for the MLflow UI and the evaluation asset.

MLflow shows logged images next to a run, so a bar chart of NDCG per model or a histogram of
ranker scores per relevance label is read at a glance where a table of floats is not. The tables
come from `models.evaluation.report` (and LightGBM's gain importance); rendering lives here so
those stay plain DataFrames.

Every function is pure apart from writing one PNG: it takes Polars frames and a path, creates the
parent directories, saves the file and returns the path. Figures are built with matplotlib's object
API (`Figure` + the Agg canvas) and never touch `matplotlib.pyplot`, so there is no global figure
state to leak or close, no display is needed, and plots can be drawn from worker threads. Figures
grow with the number of rows (models, features, buckets) so labels stay readable.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 110
_WIDTH = 7.0  # inches, for charts that grow downwards
_ROW_INCHES = 0.32  # height per bar row
_BASE_INCHES = 1.2  # title, axis labels and margins


def _require(frame: pl.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [name for name in columns if name not in frame.columns]
    if missing:
        raise ValueError(f"{what} is missing column(s) {missing}; has {frame.columns}")


def _require_numeric(frame: pl.DataFrame, column: str, what: str) -> None:
    dtype = frame.schema[column]
    if not (dtype.is_numeric() or dtype == pl.Null):
        raise ValueError(f"{what} column {column!r} must be numeric, got {dtype}")


def _floats(series: pl.Series) -> np.ndarray:
    """Values as float64 with nulls as NaN (plotted as missing, never as 0)."""
    return series.cast(pl.Float64).fill_null(float("nan")).to_numpy()


def _new_axes(width: float, height: float) -> tuple[Figure, Axes]:
    figure = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.set_axisbelow(True)
    return figure, axes


def _rows_height(rows: int) -> float:
    return max(2.5, _BASE_INCHES + _ROW_INCHES * rows)


def _save(figure: Figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=DPI, bbox_inches="tight")
    return path


def metric_by_model(table: pl.DataFrame, metric: str, path: Path) -> Path:
    """Horizontal bars of `metric` per model, in the table's row order (first row on top).

    `table` is `side_by_side` output: a `model` column and one Float64 column per metric. Models
    with a null `metric` are left out; raises ValueError when none is left.
    """
    _require(table, ["model", metric], "metric table")
    _require_numeric(table, metric, "metric table")
    rows = table.select(pl.col("model").cast(pl.Utf8), metric).drop_nulls(metric)
    if rows.is_empty():
        raise ValueError(f"nothing to plot: no model has a value for {metric!r}")
    figure, axes = _new_axes(_WIDTH, _rows_height(rows.height))
    bars = axes.barh(np.arange(rows.height), _floats(rows[metric]), color="tab:blue")
    axes.bar_label(bars, fmt="%.3f", padding=3, fontsize=9)
    axes.set_yticks(np.arange(rows.height), rows["model"].to_list())
    axes.invert_yaxis()
    axes.margins(x=0.15)
    axes.set_xlabel(metric)
    axes.set_title(f"{metric} by model")
    axes.grid(axis="x", alpha=0.3)
    return _save(figure, path)


def metrics_by_model(table: pl.DataFrame, metrics: Sequence[str], path: Path) -> Path:
    """Grouped horizontal bars: the `metrics` of each model side by side, legend names metrics.

    Metrics absent from `table` are skipped (raises ValueError when none is present); models
    with every plotted metric null are left out, a single null metric shows as a missing bar.
    """
    _require(table, ["model"], "metric table")
    present = [name for name in dict.fromkeys(metrics) if name in table.columns]
    if not present:
        raise ValueError(f"none of the metrics {list(metrics)} is a column of {table.columns}")
    for name in present:
        _require_numeric(table, name, "metric table")
    rows = table.select(pl.col("model").cast(pl.Utf8), *present).filter(
        pl.any_horizontal(pl.col(present).is_not_null())
    )
    if rows.is_empty():
        raise ValueError(f"nothing to plot: no model has a value for any of {present}")
    bar_height = 0.8 / len(present)
    group_inches = max(_ROW_INCHES, 0.2 * len(present) + 0.15)
    figure, axes = _new_axes(_WIDTH, max(2.5, _BASE_INCHES + 0.4 + group_inches * rows.height))
    positions = np.arange(rows.height, dtype=float)
    for i, name in enumerate(present):
        offset = (i - (len(present) - 1) / 2) * bar_height
        bars = axes.barh(positions + offset, _floats(rows[name]), height=bar_height, label=name)
        axes.bar_label(bars, fmt="%.3f", padding=2, fontsize=7)
    axes.set_yticks(positions, rows["model"].to_list())
    axes.invert_yaxis()
    axes.margins(x=0.15)
    axes.set_xlabel("value")
    axes.set_title("Metrics by model")
    axes.grid(axis="x", alpha=0.3)
    axes.legend(loc="lower right", fontsize=8)
    return _save(figure, path)


def metric_by_bucket(buckets: pl.DataFrame, metric: str, path: Path) -> Path:
    """Grouped vertical bars of `metric` per user-activity bucket, one colour per model.

    `buckets` is long: `model`, `bucket` (label such as "1-4"), `users` and `metric`, e.g.
    `by_activity_bucket` outputs stacked with a `model` column. Buckets keep first-appearance
    order; tick labels carry the user count of the first row of each bucket. Null values (empty
    buckets) are drawn as missing bars, not as 0; raises ValueError when every value is null.
    """
    _require(buckets, ["model", "bucket", "users", metric], "bucket table")
    _require_numeric(buckets, metric, "bucket table")
    frame = buckets.select(
        pl.col("model").cast(pl.Utf8), pl.col("bucket").cast(pl.Utf8), "users", metric
    )
    if frame[metric].is_null().all():
        raise ValueError(f"nothing to plot: no bucket has a value for {metric!r}")
    axis = frame.unique("bucket", keep="first", maintain_order=True)
    labels = [
        f"{bucket}\n(n={'?' if users is None else users})"
        for bucket, users in zip(axis["bucket"], axis["users"], strict=True)
    ]
    models = frame["model"].unique(maintain_order=True).to_list()
    width = 0.8 / len(models)
    figure, axes = _new_axes(max(6.0, 1.5 + axis.height * (0.3 * len(models) + 0.5)), 4.0)
    for i, model in enumerate(models):
        values = (
            axis.select("bucket")
            .join(
                frame.filter(pl.col("model") == model).unique("bucket", keep="first"),
                on="bucket",
                how="left",
                maintain_order="left",
            )
            .get_column(metric)
        )
        offset = (i - (len(models) - 1) / 2) * width
        axes.bar(np.arange(axis.height) + offset, _floats(values), width=width, label=model)
    axes.set_xticks(np.arange(axis.height), labels)
    axes.set_xlim(-0.5, axis.height - 0.5)  # keep empty (all-null) buckets on the axis
    axes.set_xlabel("user activity (train interactions)")
    axes.set_ylabel(metric)
    axes.set_title(f"{metric} by user-activity bucket")
    axes.grid(axis="y", alpha=0.3)
    axes.legend(fontsize=8)
    return _save(figure, path)


def score_distributions(scores: pl.DataFrame, path: Path, bins: int = 40) -> Path:
    """Overlaid density histograms of `score` per graded relevance `label`, on shared bins.

    A ranker that separates relevance grades shows the label 3 mass to the right of label 0.
    Rows with a null or non-finite score or a null label are dropped; raises ValueError when
    nothing is left.
    """
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    _require(scores, ["score", "label"], "score table")
    _require_numeric(scores, "score", "score table")
    frame = (
        scores.select(pl.col("score").cast(pl.Float64), "label")
        .drop_nulls()
        .filter(pl.col("score").is_finite())
    )
    if frame.is_empty():
        raise ValueError("nothing to plot: no row has both a finite score and a label")
    edges: list[float] = np.histogram_bin_edges(frame["score"].to_numpy(), bins=bins).tolist()
    labels = sorted(frame["label"].unique().to_list())
    colours = [f"C{i % 10}" for i in range(len(labels))]
    figure, axes = _new_axes(_WIDTH, 4.0)
    for label, colour in zip(labels, colours, strict=True):
        values = frame.filter(pl.col("label") == label)["score"].to_numpy()
        axes.hist(values, bins=edges, density=True, histtype="stepfilled", alpha=0.25, color=colour)
        axes.hist(
            values,
            bins=edges,
            density=True,
            histtype="step",
            linewidth=1.5,
            color=colour,
            label=f"label {label} (n={len(values)})",
        )
    axes.set_xlabel("score")
    axes.set_ylabel("density")
    axes.set_title("Score distribution by relevance label")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    return _save(figure, path)


def feature_importance(importance: pl.DataFrame, path: Path, top: int = 20) -> Path:
    """Horizontal bars of the `top` features by LightGBM total gain, largest on top.

    `importance` has `feature` and `gain` columns; null gains are dropped and raises ValueError
    when none is left.
    """
    if top < 1:
        raise ValueError(f"top must be >= 1, got {top}")
    _require(importance, ["feature", "gain"], "importance table")
    _require_numeric(importance, "gain", "importance table")
    rows = (
        importance.select(pl.col("feature").cast(pl.Utf8), pl.col("gain").cast(pl.Float64))
        .drop_nulls("gain")
        .sort("gain", descending=True, maintain_order=True)
        .head(top)
    )
    if rows.is_empty():
        raise ValueError("nothing to plot: no feature has a gain")
    figure, axes = _new_axes(_WIDTH, _rows_height(rows.height))
    bars = axes.barh(np.arange(rows.height), rows["gain"].to_numpy(), color="tab:green")
    axes.bar_label(bars, fmt="%.3g", padding=3, fontsize=8)
    axes.set_yticks(np.arange(rows.height), rows["feature"].to_list())
    axes.invert_yaxis()
    axes.margins(x=0.12)
    axes.set_xlabel("total gain")
    axes.set_title(f"Feature importance (top {rows.height} by gain)")
    axes.grid(axis="x", alpha=0.3)
    return _save(figure, path)
