"""I/O-free glue of the `online_metrics` asset: MLflow metric names and the SRM verdict.

Each model version that served in the window has one MLflow run of its own (tag
`online_metrics_for=<version>`, found again every day), and each day's numbers are logged at
step = days since 1970-01-01 of the window's end, so the run's metric charts are the
version's online metrics over days. Rule arms (e.g. `popularity`) get a run the same way;
impressions without a version go to `unknown`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

import polars as pl

from models.evaluation.online import ARM_KEYS, POSITION, OnlineTables

UNKNOWN_VERSION: Final = "unknown"
NO_EXPERIMENT: Final = "none"  # label of traffic outside every experiment (the champion)
RUN_TAG: Final = "online_metrics_for"
SAMPLE_RATIO_CHECK: Final = "online_metrics_sample_ratio"
_NOT_METRICS: Final = frozenset({*ARM_KEYS, "model_version", "model_versions", POSITION})


def version_label(version: str | None) -> str:
    return UNKNOWN_VERSION if version is None else version


def step_of(end: datetime) -> int:
    """The MLflow step of a window: whole days since the epoch at its end."""
    return int(end.timestamp() // 86400)


def _numbers(row: dict[str, object], prefix: str) -> dict[str, float | None]:
    metrics: dict[str, float | None] = {}
    for name, value in row.items():
        if name in _NOT_METRICS or not isinstance(value, int | float) or isinstance(value, bool):
            continue
        metrics[f"{prefix}{name}"] = None if math.isinf(value) else float(value)
    return metrics


def versions(tables: OnlineTables) -> list[str]:
    """Every version label that served in the window."""
    return sorted({version_label(v) for v in tables.by_version["model_version"].to_list()})


def _arms_serving(tables: OnlineTables, version: str) -> pl.DataFrame:
    return tables.by_arm.filter(
        pl.col("model_versions").str.split(",").list.contains(version)
        | (pl.lit(version == UNKNOWN_VERSION) & (pl.col("model_versions") == ""))
    )


def version_metrics(tables: OnlineTables, version: str) -> dict[str, float | None]:
    """What one version's run logs: its own row (`like_rate`, `like_rate_low`, ...), its
    rank buckets (`position.1-5.like_rate`), the arms it served (`arm.<exp>.<arm>.*`),
    their tests against control (`test.<exp>.<arm>.<metric>.diff|low|high|p_value`) and
    their experiments' sample-ratio p-values (`srm.<exp>.p_value`)."""
    label = pl.col("model_version").fill_null(UNKNOWN_VERSION)
    metrics: dict[str, float | None] = {}
    for row in tables.by_version.filter(label == version).iter_rows(named=True):
        metrics |= _numbers(row, "")
    for row in tables.version_positions.filter(label == version).iter_rows(named=True):
        metrics |= _numbers(row, f"position.{row[POSITION]}.")
    arms = _arms_serving(tables, version)
    for row in arms.iter_rows(named=True):
        experiment = row["experiment"] or NO_EXPERIMENT
        metrics |= _numbers(row, f"arm.{experiment}.{row['arm'] or NO_EXPERIMENT}.")
    served = arms.filter(pl.col("experiment").is_not_null()).select(ARM_KEYS)
    for row in tables.tests.join(served, on=list(ARM_KEYS)).iter_rows(named=True):
        prefix = f"test.{row['experiment']}.{row['arm']}.{row['metric']}."
        for name in ("diff", "low", "high", "p_value"):
            metrics[prefix + name] = row[name]
    srm = tables.sample_ratio.join(served.select("experiment").unique(), on="experiment")
    for row in srm.unique("experiment").iter_rows(named=True):
        metrics[f"srm.{row['experiment']}.p_value"] = row["p_value"]
    return metrics


@dataclass(frozen=True)
class SampleRatioVerdict:
    """The outcome of `online_metrics_sample_ratio`.

    `severity` is "ERROR" for a mismatch (the experiment's assignment or logging is broken,
    so none of its comparisons can be trusted) and "WARN" when an experiment served users
    but no arm weights were known to test it against.
    """

    passed: bool
    severity: str
    description: str
    metadata: dict[str, str | int | float] = field(default_factory=dict)


def sample_ratio_verdict(sample_ratio: pl.DataFrame) -> SampleRatioVerdict:
    """Fails on any experiment whose users per arm do not match its weights."""
    experiments = sample_ratio.unique("experiment", keep="first", maintain_order=True)
    mismatched = experiments.filter(pl.col("mismatch").fill_null(False))["experiment"].to_list()
    untested = experiments.filter(pl.col("mismatch").is_null())["experiment"].to_list()
    metadata: dict[str, str | int | float] = {
        "experiments": experiments.height,
        "mismatched": ", ".join(mismatched) or "none",
        "untested": ", ".join(untested) or "none",
    }
    for row in experiments.iter_rows(named=True):
        if row["p_value"] is not None:
            metadata[f"p_value.{row['experiment']}"] = round(float(row["p_value"]), 6)
    if mismatched:
        return SampleRatioVerdict(
            passed=False,
            severity="ERROR",
            description=f"sample-ratio mismatch in {', '.join(mismatched)}: users per arm "
            "do not follow the weights; do not trust or promote from these experiments",
            metadata=metadata,
        )
    if untested:
        return SampleRatioVerdict(
            passed=False,
            severity="WARN",
            description=f"no arm weights known for {', '.join(untested)}: cannot check "
            "the sample ratio",
            metadata=metadata,
        )
    return SampleRatioVerdict(
        passed=True,
        severity="ERROR",
        description=f"users per arm follow the weights in {experiments.height} experiment(s)",
        metadata=metadata,
    )
