"""What the notebooks share: the pipeline's outputs, opened the way the pipelines open them.

Not a notebook (the leading underscore keeps it out of the tests' notebook list). Every location
comes from Godo's settings (`core.settings`: `GODO_*` variables and `.env`), so by default the
notebooks read what `godo demo` left under `<repo>/.godo/` (a relative `GODO_DATA_DIR` is taken
from the repository root too, so a kernel started in notebooks/ finds it); the tests point the
same variables at a tiny city instead.

Where each thing is (unset means the `godo demo` default in brackets):

- `GODO_DATA_DIR`: the folder of generated data [`<repo>/.godo`]
- `GODO_WAREHOUSE`: the DuckDB warehouse, opened read-only [`GODO_DATA_DIR/warehouse.duckdb`]
- `GODO_MLFLOW_TRACKING_URI`: MLflow tracking, also the model registry [`GODO_DATA_DIR/mlflow.db`]
- `GODO_MLFLOW_EXPERIMENT`, `GODO_MLFLOW_MODEL_NAME`: [`godo-ranking`, `godo-feed-ranker`]
- `DATABASE_URL`, `REDIS_URL`: the app's Postgres and Redis [the embedded servers]
- `GODO_REDIS_PREFIX`: the namespace of the Redis keys [`godo`]
- `DAGSTER_HOME`: the Dagster instance and its run history [`GODO_DATA_DIR/dagster`]
- `GODO_NOTEBOOK_FIGURES`: a folder every figure is also saved to as PNG [none: displayed only]
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import matplotlib
import polars as pl
import sqlalchemy as sa

from core.settings import REPO_ROOT, Settings, get_settings
from pipelines.warehouse import SCHEMA

if TYPE_CHECKING:  # Dagster, MLflow and Redis load only in the notebooks that use them.
    import dagster as dg
    import redis
    from matplotlib.figure import Figure
    from mlflow import MlflowClient

    from store.keys import RedisKeys

WAREHOUSE_ENV = "GODO_WAREHOUSE"
FIGURES_ENV = "GODO_NOTEBOOK_FIGURES"


def use_agg_without_display() -> None:
    """Jupyter shows figures inline; a script on a machine without a display renders with Agg.

    Called on import, before any figure exists. An explicit `MPLBACKEND` always wins.
    """
    if "ipykernel" in sys.modules or os.environ.get("MPLBACKEND"):
        return
    headless = not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    if sys.platform.startswith("linux") and headless:
        matplotlib.use("Agg")


use_agg_without_display()


def settings() -> Settings:
    """Godo's settings, read once from the environment (and `.env`)."""
    return get_settings()


# --- the DuckDB warehouse -----------------------------------------------------------------


def warehouse_path() -> Path:
    """`GODO_WAREHOUSE` (relative to the repository root, like `GODO_DATA_DIR`), else the
    warehouse in the data folder."""
    configured = os.environ.get(WAREHOUSE_ENV)
    if configured:
        return REPO_ROOT / Path(configured).expanduser()
    return settings().warehouse_path


def open_warehouse() -> duckdb.DuckDBPyConnection:
    """The warehouse, read-only (a running pipeline keeps writing), with times in UTC."""
    path = warehouse_path()
    if not path.exists():
        raise FileNotFoundError(f"no warehouse at {path}: run `godo demo` or set {WAREHOUSE_ENV}")
    con = duckdb.connect(str(path), read_only=True)
    # Timestamps come back in the session's zone, which is the machine's unless told.
    con.execute("SET TimeZone = 'UTC'")
    return con


def read_table(con: duckdb.DuckDBPyConnection, name: str) -> pl.DataFrame:
    """One table the pipeline wrote (`godo.<name>`), as Polars."""
    return con.sql(f"SELECT * FROM {SCHEMA}.{name}").pl()


def row_count(con: duckdb.DuckDBPyConnection, name: str) -> int:
    row = con.sql(f"SELECT count(*) FROM {SCHEMA}.{name}").fetchone()
    return int(row[0]) if row else 0


# --- the app's Postgres and Redis ---------------------------------------------------------


@dataclass(frozen=True)
class AppStores:
    """The app's Postgres and Redis as the API opens them (`store.db`, `store.keys`)."""

    engine: sa.Engine
    redis_client: redis.Redis
    keys: RedisKeys


def app_stores() -> AppStores:
    """Configured URLs win; otherwise the embedded servers `godo demo` started (or starts).

    The same engine, client and key layout `pipelines.resources` hands the publishing asset,
    built directly: importing the resources would load the whole pipeline (MLflow included).
    """
    import redis

    from godo import services
    from store.db import make_engine
    from store.keys import RedisKeys

    config = settings()
    urls = services.resolve(config.data_path, config.database_url, config.redis_url)
    return AppStores(
        engine=make_engine(urls.database_url),
        redis_client=redis.Redis.from_url(urls.redis_url, socket_timeout=30),
        keys=RedisKeys(prefix=config.redis_prefix),
    )


def postgres_frame(
    engine: sa.Engine,
    sql: str,
    schema: Mapping[str, pl.DataType | type[pl.DataType]],
    **params: object,
) -> pl.DataFrame:
    """A small parameterised query as Polars (bulk reads go through `store.db.read_frame`)."""
    with engine.connect() as conn:
        rows = [dict(row) for row in conn.execute(sa.text(sql), params).mappings()]
    return pl.DataFrame(rows, schema=schema, orient="row")


# --- MLflow and Dagster ---------------------------------------------------------------------


def mlflow_uri() -> str:
    """The configured tracking store (also the model registry); it must exist already."""
    from sqlalchemy.engine import make_url

    uri = settings().resolved_mlflow_uri
    if uri.startswith("sqlite:"):
        database = make_url(uri).database
        if database and database != ":memory:" and not Path(database).exists():
            # MLflow would silently create an empty store here.
            raise FileNotFoundError(f"no MLflow store at {database}: run `godo demo` first")
    return uri


def mlflow_client() -> MlflowClient:
    """A client of the configured tracking store, which is also the model registry."""
    from mlflow import MlflowClient

    uri = mlflow_uri()
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def use_mlflow_store() -> str:
    """Point MLflow's global tracking and registry URIs at the configured store; returns it.

    What `mlflow.pyfunc.load_model("models:/...")` reads. Unset, MLflow would open (and
    create) `./mlflow.db` in the kernel's working directory and find no model there.
    """
    import mlflow

    uri = mlflow_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def dagster_instance() -> dg.DagsterInstance:
    """The instance under `DAGSTER_HOME`, else the demo's own (`godo dagster` opens the same
    one): the repo's dagster.yaml over the app's Postgres server (`godo.dagster_home`)."""
    import dagster as dg

    from godo import services
    from godo.dagster_home import prepare_dagster_home

    if os.environ.get("DAGSTER_HOME"):
        return dg.DagsterInstance.get()
    config = settings()
    if not (config.data_path / "dagster").is_dir():
        raise FileNotFoundError("no Dagster instance yet: run `godo demo`, or set DAGSTER_HOME")
    urls = services.resolve(config.data_path, config.database_url, config.redis_url)
    return dg.DagsterInstance.from_config(str(prepare_dagster_home(config, urls.database_url)))


# --- figures ----------------------------------------------------------------------------


def figures_folder() -> Path | None:
    folder = os.environ.get(FIGURES_ENV)
    return Path(folder) if folder else None


@dataclass
class Figures:
    """The notebook's figures by name; each also saved as `<name>.png` when a folder is set."""

    folder: Path | None = field(default_factory=figures_folder)
    figures: dict[str, Figure] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)

    def keep(self, name: str, figure: Figure) -> Figure:
        figure.tight_layout()
        self.figures[name] = figure
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            path = self.folder / f"{name}.png"
            figure.savefig(path, dpi=100)
            self.files.append(path)
        return figure
