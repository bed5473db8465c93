"""The one `Definitions` of the Godo code location (named in workspace.yaml and pyproject)."""

import dagster as dg
from dagster_duckdb import DuckDBResource
from dagster_duckdb_polars import DuckDBPolarsIOManager

from core.settings import Settings, get_settings
from pipelines.alerts import AlertsResource
from pipelines.assets import (
    app_data,
    email,
    evaluation,
    features,
    impressions,
    ingest,
    models,
    online,
    push,
    ranking,
    recommendations,
    synthetic,
    training,
)
from pipelines.freshness import freshness_checks, freshness_checks_sensor
from pipelines.jobs import (
    impressions_job,
    ingest_job,
    online_metrics_job,
    outreach_job,
    publish_job,
    receipts_job,
    refresh_job,
    retrain_job,
    simulate_job,
)
from pipelines.logs import json_lines_logger
from pipelines.resources import (
    EventbriteResource,
    GoogleMapsResource,
    ImpressionRetentionResource,
    LocalStorage,
    MLflowResource,
    PostgresResource,
    RedisResource,
    SyntheticCityResource,
)
from pipelines.schedules import (
    daily_online_metrics,
    hourly_ingest,
    hourly_notifications,
    impressions_every_minute,
    nightly_retrain,
    push_receipts_every_15_minutes,
)
from pipelines.sensors import (
    publish_after_retrain,
    refresh_sensor,
    report_run_failures,
)
from pipelines.warehouse import SCHEMA as WAREHOUSE_SCHEMA

ASSET_MODULES = [
    synthetic,
    ingest,
    app_data,
    features,
    models,
    training,
    evaluation,
    ranking,
    recommendations,
    push,
    email,
    impressions,
    online,
]


all_assets = dg.load_assets_from_modules(ASSET_MODULES)
all_checks = dg.load_asset_checks_from_modules(ASSET_MODULES)


def build_resources(settings: Settings) -> dict[str, object]:
    """Resources for a deployment: secrets and URLs are read from the environment at launch."""
    return {
        "io_manager": DuckDBPolarsIOManager(
            database=str(settings.warehouse_path), schema=WAREHOUSE_SCHEMA
        ),
        "warehouse": DuckDBResource(database=str(settings.warehouse_path)),
        "postgres": PostgresResource(database_url=dg.EnvVar("DATABASE_URL")),
        "redis": RedisResource(
            url=dg.EnvVar("REDIS_URL"),
            prefix=settings.redis_prefix,
            feed_ttl_seconds=settings.feed_run_ttl_seconds,
        ),
        "eventbrite": EventbriteResource(
            token=dg.EnvVar("EVENTBRITE_TOKEN"),
            base_url=settings.eventbrite_base_url,
            followed_organizations=settings.eventbrite_organizations,
            calls_per_hour=settings.eventbrite_calls_per_hour,
            time_filter=settings.eventbrite_time_filter,
        ),
        "maps": GoogleMapsResource(
            api_key=dg.EnvVar("GOOGLE_MAPS_API_KEY"),
            geocode_base_url=settings.geocode_base_url,
            places_base_url=settings.places_base_url,
        ),
        "storage": LocalStorage(data_dir=str(settings.data_path)),
        "mlflow": MLflowResource(
            tracking_uri=settings.resolved_mlflow_uri,
            artifact_root=settings.resolved_mlflow_artifact_root,
            experiment=settings.mlflow_experiment,
            model_name=settings.mlflow_model_name,
            ui_url=settings.mlflow_ui_url,
        ),
        "city": SyntheticCityResource(metros=settings.metros, enabled=settings.has_synthetic_city),
        "impression_retention": ImpressionRetentionResource(
            retention_days=settings.impression_retention_days,
            partitions_ahead_days=settings.impression_partitions_ahead_days,
        ),
        **push.resources(settings),
        **email.resources(settings),
        "alerts": AlertsResource(
            sentry_dsn=settings.sentry_dsn.get_secret_value() if settings.sentry_dsn else None,
            environment=settings.environment,
        ),
    }


SETTINGS = get_settings()

defs = dg.Definitions(
    assets=all_assets,
    asset_checks=[*all_checks, *freshness_checks],
    jobs=[
        ingest_job,
        simulate_job,
        retrain_job,
        publish_job,
        refresh_job,
        outreach_job,
        receipts_job,
        impressions_job,
        online_metrics_job,
    ],
    schedules=[
        hourly_ingest,
        nightly_retrain,
        hourly_notifications,
        push_receipts_every_15_minutes,
        impressions_every_minute,
        daily_online_metrics,
    ],
    sensors=[
        publish_after_retrain,
        refresh_sensor(SETTINGS.refresh_min_new_swipes),
        report_run_failures,
        freshness_checks_sensor,
    ],
    resources=build_resources(SETTINGS),
    loggers={"console": json_lines_logger},
    # Each step in a process of its own, so independent steps (and several metros' runs)
    # proceed side by side. Steps that write the DuckDB warehouse wait for its single-writer
    # lock (dagster-duckdb retries the connection with backoff). On Kubernetes or Celery the
    # same definitions run with `k8s_job_executor` / `celery_executor` here instead (README,
    # Operations).
    executor=dg.multiprocess_executor.configured({"max_concurrent": SETTINGS.max_concurrent_steps}),
)
