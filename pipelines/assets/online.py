"""Online metrics: what users did with what each experiment arm and model version served.

`online_metrics` reads a window of logged impressions with their attributed swipes and RSVPs
from Postgres (`store.online`), computes the tables of `models.evaluation.online`, logs them to
MLflow (one run per model version, a point per day: `recommender.online_report`) and rewrites the
Prometheus textfile (`textfile_metrics.online`). Its check `online_metrics_sample_ratio` fails
with severity ERROR on a sample-ratio mismatch: it means assignment or impression logging is
broken for that experiment, so its comparisons are biased in an unknown direction and must
not be used (a WARN would read as "look when convenient"). It is not blocking: nothing
downstream in the graph reads these tables; whoever promotes an arm must look at it.

Arms and weights: the stored experiments (`godo experiment create`), or the asset's config
`arms` (experiment, arm, weight, control) when given, which replaces them (to analyse a
past or external split). They are what the sample-ratio test and the choice of control
read; an experiment seen in the impressions without weights is reported as untested (a WARN).
"""

from datetime import UTC, datetime, timedelta

import dagster as dg
import polars as pl

from models.evaluation.online import OnlineTables, arms_frame, online_tables
from pipelines.resources import LocalStorage, MLflowResource, PostgresResource
from pipelines.tracking import ModelRegistry
from recommender.online_report import (
    RUN_TAG,
    SAMPLE_RATIO_CHECK,
    sample_ratio_verdict,
    step_of,
    version_metrics,
    versions,
)
from store.experiments import arm_weights
from store.online import read_online_window
from textfile_metrics import online

SUMMARY_COLUMNS = (
    "experiment",
    "arm",
    "model_version",
    "model_versions",
    "users",
    "impressions",
    "like_rate",
    "like_rate_low",
    "like_rate_high",
    "going_rate",
    "going_rate_low",
    "going_rate_high",
    "swipes_per_session",
    "coverage",
    "novelty",
)


class ArmWeight(dg.Config):
    experiment: str
    arm: str
    weight: float
    control: bool = False


class OnlineMetricsConfig(dg.Config):
    window_days: float = 7.0
    end: str | None = None  # ISO-8601 with a zone; unset means now
    arms: list[ArmWeight] = []


def window_of(
    config: OnlineMetricsConfig, now: datetime | None = None
) -> tuple[datetime, datetime]:
    """[start, end) of the run: `window_days` ending at `end` (default now), in UTC."""
    end = datetime.fromisoformat(config.end) if config.end else (now or datetime.now(UTC))
    if end.tzinfo is None:
        raise dg.Failure(description=f"end {config.end!r} needs a time zone")
    if config.window_days <= 0:
        raise dg.Failure(description=f"window_days must be positive, got {config.window_days}")
    end = end.astimezone(UTC)
    return end - timedelta(days=config.window_days), end


def _markdown(table: pl.DataFrame) -> str:
    columns = [c for c in SUMMARY_COLUMNS if c in table.columns]
    if table.is_empty():
        return "no impressions in the window"
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in table.select(columns).iter_rows():
        cells = ["" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def log_to_mlflow(
    registry: ModelRegistry,
    tables: OnlineTables,
    start: datetime,
    end: datetime,
    dagster_run_id: str,
) -> dict[str, str]:
    """One point per version at the window's step, plus the day's tables as JSON; returns
    version -> MLflow run id."""
    runs: dict[str, str] = {}
    document = {"window_start": start.isoformat(), "window_end": end.isoformat()}
    for version in versions(tables):
        with registry.resume_run(f"online-{version}", {RUN_TAG: version}) as run:
            run.set_tags(
                {
                    "window_start": start.isoformat(),
                    "window_end": end.isoformat(),
                    "dagster_run_id": dagster_run_id,
                }
            )
            run.log_metrics(version_metrics(tables, version), step=step_of(end))
            run.log_dict(
                {**document, **tables.as_dict()},
                f"online/{end.strftime('%Y-%m-%dT%H%M%SZ')}.json",
            )
            runs[version] = run.run_id
    return runs


@dg.asset(
    group_name="online",
    kinds={"postgres", "mlflow", "polars"},
    check_specs=[
        dg.AssetCheckSpec(
            SAMPLE_RATIO_CHECK,
            asset="online_metrics",
            description="Distinct users per experiment arm follow the arm weights "
            "(chi-square, p >= 0.001).",
        )
    ],
)
def online_metrics(
    context: dg.AssetExecutionContext,
    config: OnlineMetricsConfig,
    postgres: PostgresResource,
    mlflow: MLflowResource,
    storage: LocalStorage,
) -> dg.MaterializeResult:
    """Per arm and model version: impressions, like/superlike/going rates overall and by
    position, swipes per session, coverage and novelty with 95% user-clustered intervals,
    each arm tested against control; logged to MLflow and exported for Prometheus."""
    start, end = window_of(config)
    with postgres.engine().connect() as conn:
        window = read_online_window(conn, start, end)
    configured = [arm.model_dump() for arm in config.arms]
    arms = arms_frame(configured or arm_weights(postgres.engine()))
    tables = online_tables(
        window.impressions,
        arms,
        catalogue_size=window.catalogue_size,
        popularity=window.popularity,
    )
    runs = log_to_mlflow(mlflow.registry(), tables, start, end, context.run.run_id)
    textfile = online.write(storage.data_dir, tables, end)
    verdict = sample_ratio_verdict(tables.sample_ratio)
    context.log.info(
        "online metrics of %s to %s: %d impressions, %d versions",
        start.isoformat(),
        end.isoformat(),
        window.impressions.height,
        len(runs),
    )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": tables.by_arm.height,
            "window_start": start.isoformat(),
            "window_end": end.isoformat(),
            "impressions": window.impressions.height,
            "users": window.impressions["user_id"].n_unique(),
            "catalogue_size": window.catalogue_size,
            "mlflow_runs": ", ".join(f"{v}: {r}" for v, r in runs.items()) or "none",
            "textfile": dg.MetadataValue.path(str(textfile)),
            "by_arm": dg.MetadataValue.md(_markdown(tables.by_arm)),
            "by_version": dg.MetadataValue.md(_markdown(tables.by_version)),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=SAMPLE_RATIO_CHECK,
                passed=verdict.passed,
                severity=dg.AssetCheckSeverity(verdict.severity),
                description=verdict.description,
                metadata=verdict.metadata,
            )
        ],
    )
