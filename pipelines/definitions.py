"""The one `Definitions` of the Godo code location (named in workspace.yaml and pyproject)."""

from __future__ import annotations

import dagster as dg
from dagster_duckdb_polars import DuckDBPolarsIOManager

from godo.settings import Settings, get_settings
from pipelines.assets import app_data, features, ingest, models, recommendations, synthetic
from pipelines.resources import (
    LocalStorage,
    PostgresResource,
    RedisResource,
    SyntheticCityResource,
)

ASSET_MODULES = [synthetic, ingest, app_data, features, models, recommendations]
WAREHOUSE_SCHEMA = "godo"  # not "warehouse": DuckDB names the catalog after the file

all_assets = dg.load_assets_from_modules(ASSET_MODULES)

everything_job = dg.define_asset_job(
    "godo_everything",
    selection=dg.AssetSelection.all(),
    description="Every asset once: ingest, app data, features, models, publish.",
)
retrain_job = dg.define_asset_job(
    "retrain_and_publish",
    selection=dg.AssetSelection.groups("app_data", "features", "models", "recommendations"),
    description="Re-extract app data, retrain the models and publish fresh feeds.",
)
nightly_retrain = dg.ScheduleDefinition(
    job=retrain_job,
    cron_schedule="0 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
)


def build_resources(settings: Settings) -> dict[str, object]:
    """Resources for a deployment: secrets and URLs are read from the environment at launch."""
    data_dir = str(settings.data_path)
    return {
        "io_manager": DuckDBPolarsIOManager(
            database=str(settings.warehouse_path), schema=WAREHOUSE_SCHEMA
        ),
        "postgres": PostgresResource(database_url=dg.EnvVar("DATABASE_URL")),
        "redis": RedisResource(
            url=dg.EnvVar("REDIS_URL"),
            prefix=settings.redis_prefix,
            feed_ttl_seconds=settings.feed_run_ttl_seconds,
        ),
        "storage": LocalStorage(data_dir=data_dir),
        "city": SyntheticCityResource(),
    }


defs = dg.Definitions(
    assets=all_assets,
    jobs=[everything_job, retrain_job],
    schedules=[nightly_retrain],
    resources=build_resources(get_settings()),
    # Steps share one DuckDB file, which takes one writer at a time.
    executor=dg.in_process_executor,
)
