"""The one `Definitions` of the Godo code location (named in workspace.yaml and pyproject)."""

import dagster as dg
from dagster_duckdb import DuckDBResource
from dagster_duckdb_polars import DuckDBPolarsIOManager

from godo.settings import Settings, get_settings
from pipelines.assets import (
    app_data,
    evaluation,
    features,
    ingest,
    models,
    ranking,
    recommendations,
    synthetic,
    training,
)
from pipelines.partitions import metro_partitions
from pipelines.resources import (
    EventbriteResource,
    GoogleMapsResource,
    LocalStorage,
    MLflowResource,
    PostgresResource,
    RedisResource,
    SyntheticCityResource,
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
]
PARTITIONED_INGEST = dg.AssetSelection.assets(
    "eventbrite_raw_pages", "events", "venues", "event_quarantine", "geocoded_venues"
)

all_assets = dg.load_assets_from_modules(ASSET_MODULES)
all_checks = dg.load_asset_checks_from_modules(ASSET_MODULES)

ingest_job = dg.define_asset_job(
    "ingest_metro",
    selection=PARTITIONED_INGEST,
    description="Fetch one metro's events and venues from Eventbrite and Google Maps.",
)
retrain_job = dg.define_asset_job(
    "retrain_and_evaluate",
    selection=dg.AssetSelection.assets("app_catalogue", "synthetic_oracle")
    | dg.AssetSelection.groups("app_data", "features", "models", "evaluation"),
    description="Extract app data, train before the holdout cutoff, evaluate, gate, promote.",
)
PUBLISH = dg.AssetSelection.groups("recommendations")
publish_job = dg.define_asset_job(
    "publish_feed",
    selection=PUBLISH,
    description="Rank fresh candidates with the champion model and publish every user's feed.",
)


@dg.schedule(
    job=ingest_job,
    cron_schedule="0 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
)
def hourly_ingest(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
    """Every hour, one run per metro: metros ingest independently and fail independently."""
    hour = context.scheduled_execution_time.strftime("%Y-%m-%dT%H")
    return [
        dg.RunRequest(partition_key=metro, run_key=f"{metro}:{hour}")
        for metro in metro_partitions.get_partition_keys()
    ]


nightly_retrain = dg.ScheduleDefinition(
    name="nightly_retrain",
    job=retrain_job,
    cron_schedule="0 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
)


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[retrain_job],
    request_job=publish_job,
    default_status=dg.DefaultSensorStatus.STOPPED,
)
def publish_after_retrain(context: dg.RunStatusSensorContext) -> dg.RunRequest:
    """A promoted champion publishes at once."""
    return dg.RunRequest(run_key=f"publish-after:{context.dagster_run.run_id}")


@dg.run_failure_sensor(
    monitored_jobs=[retrain_job],
    request_job=publish_job,
    default_status=dg.DefaultSensorStatus.STOPPED,
)
def publish_after_rejected_retrain(context: dg.RunFailureSensorContext) -> dg.RunRequest:
    """A challenger the gate rejected fails the retrain run; the champion still republishes
    with tonight's features and candidates, so the feed never goes stale for want of a model."""
    return dg.RunRequest(run_key=f"publish-after:{context.dagster_run.run_id}")


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
        ),
        "city": SyntheticCityResource(enabled=settings.has_synthetic_city),
    }


defs = dg.Definitions(
    assets=all_assets,
    asset_checks=all_checks,
    jobs=[ingest_job, retrain_job, publish_job],
    schedules=[hourly_ingest, nightly_retrain],
    sensors=[publish_after_retrain, publish_after_rejected_retrain],
    resources=build_resources(get_settings()),
    # Steps share one DuckDB file, which takes one writer at a time.
    executor=dg.in_process_executor,
)
