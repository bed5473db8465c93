"""The online metrics as Prometheus gauges in a node_exporter textfile.

Why a file: the asset runs in a short-lived Dagster run process no Prometheus can scrape (the
same reason as `textfile_metrics.notifications`). Each run rewrites
`<data_dir>/metrics/online_metrics.prom` whole, atomically (temp file + rename), from a fresh
registry: these are gauges of the latest window, so an arm that stopped serving drops out
instead of freezing at its last value. node_exporter's textfile collector (or any sidecar
reading the folder) exposes it; `godo_online_window_end_timestamp_seconds` lets an alert
catch a file that stopped being refreshed.

Labels: `by` is "arm" (one series per experiment arm; `experiment="none", arm="none"` is the
traffic outside every experiment) or "model_version" (`experiment` and `arm` empty);
`model_version` on an arm row lists the versions it served. Rank buckets stay in MLflow
(four times the series for a chart nobody alerts on).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Final

import polars as pl
from prometheus_client import CollectorRegistry, Gauge

from models.evaluation.online import RATES, OnlineTables
from recommender.online_report import NO_EXPERIMENT, UNKNOWN_VERSION
from textfile_metrics.writer import write_textfile

FILE_NAME: Final = "online_metrics.prom"
ROW_LABELS: Final = ("by", "experiment", "arm", "model_version")


def metrics_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / "metrics" / FILE_NAME


def _rows(tables: OnlineTables) -> Iterator[tuple[dict[str, str], dict[str, object]]]:
    for row in tables.by_arm.iter_rows(named=True):
        labels = {
            "by": "arm",
            "experiment": row["experiment"] or NO_EXPERIMENT,
            "arm": row["arm"] or NO_EXPERIMENT,
            "model_version": row["model_versions"] or UNKNOWN_VERSION,
        }
        yield labels, row
    for row in tables.by_version.iter_rows(named=True):
        labels = {
            "by": "model_version",
            "experiment": "",
            "arm": "",
            "model_version": row["model_version"] or UNKNOWN_VERSION,
        }
        yield labels, row


def _set(gauge: Gauge, labels: dict[str, str], value: object) -> None:
    """Set a labelled gauge unless the value is missing (no series beats a fake 0)."""
    if value is None:
        return
    number = float(value)  # type: ignore[arg-type]
    if math.isnan(number):
        return
    gauge.labels(**labels).set(number)


def registry_of(tables: OnlineTables, end: datetime) -> CollectorRegistry:
    """A fresh registry holding the window's gauges."""
    registry = CollectorRegistry()

    def gauge(name: str, text: str, labels: tuple[str, ...] = ROW_LABELS) -> Gauge:
        return Gauge(name, text, list(labels), registry=registry)

    window = Gauge(
        "godo_online_window_end_timestamp_seconds",
        "End of the window the online metrics were computed over (Unix time).",
        registry=registry,
    )
    window.set(end.timestamp())
    counts = {
        name: gauge(
            f"godo_online_{name}", f"{name.capitalize()} in the window, per arm or version."
        )
        for name in ("impressions", "users", "sessions")
    }
    rate_labels = (*ROW_LABELS, "outcome")
    rate = gauge("godo_online_rate", "Outcomes per impression (user-clustered).", rate_labels)
    rate_low = gauge("godo_online_rate_low", "Lower 95% bound of godo_online_rate.", rate_labels)
    rate_high = gauge("godo_online_rate_high", "Upper 95% bound of godo_online_rate.", rate_labels)
    per_session = {
        suffix: gauge(f"godo_online_swipes_per_session{suffix}", f"Swipes per session{text}.")
        for suffix, text in (
            ("", ""),
            ("_low", ", lower 95% bound"),
            ("_high", ", upper 95% bound"),
        )
    }
    coverage = gauge("godo_online_coverage", "Distinct events shown / eligible catalogue.")
    novelty = gauge("godo_online_novelty", "Mean -log2 popularity of what was shown.")
    for labels, row in _rows(tables):
        for name, counter in counts.items():
            _set(counter, labels, row[name])
        for name in RATES:
            outcome = {**labels, "outcome": name.removesuffix("_rate")}
            _set(rate, outcome, row[name])
            _set(rate_low, outcome, row[f"{name}_low"])
            _set(rate_high, outcome, row[f"{name}_high"])
        for suffix, target in per_session.items():
            _set(target, labels, row[f"swipes_per_session{suffix}"])
        _set(coverage, labels, row["coverage"])
        _set(novelty, labels, row["novelty"])

    test_labels = ("experiment", "arm", "control", "metric")
    gain = {
        suffix: gauge(f"godo_online_gain{suffix}", f"Arm minus control{text}.", test_labels)
        for suffix, text in (
            ("", ""),
            ("_low", ", lower 95% bound"),
            ("_high", ", upper 95% bound"),
            ("_p_value", ": two-sided p-value"),
        )
    }
    for row in tables.tests.iter_rows(named=True):
        labels = {name: str(row[name]) for name in test_labels}
        for suffix, column in (("", "diff"), ("_low", "low"), ("_high", "high")):
            _set(gain[suffix], labels, row[column])
        _set(gain["_p_value"], labels, row["p_value"])

    srm = gauge("godo_online_srm_p_value", "Sample-ratio chi-square p-value.", ("experiment",))
    mismatch = gauge(
        "godo_online_srm_mismatch",
        "1 when users per arm do not follow the weights.",
        ("experiment",),
    )
    experiments = tables.sample_ratio.unique("experiment", keep="first", maintain_order=True)
    for row in experiments.filter(pl.col("mismatch").is_not_null()).iter_rows(named=True):
        labels = {"experiment": str(row["experiment"])}
        _set(srm, labels, row["p_value"])
        _set(mismatch, labels, 1.0 if row["mismatch"] else 0.0)
    return registry


def write(data_dir: str | Path, tables: OnlineTables, end: datetime) -> Path:
    """Rewrite the textfile from `tables`, atomically; returns its path."""
    return write_textfile(metrics_path(data_dir), registry_of(tables, end))
