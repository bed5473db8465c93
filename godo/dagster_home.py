"""DAGSTER_HOME for `godo dagster` and `godo demo`: the repo's dagster.yaml over Postgres.

Why Postgres locally too: the instance config is the production one (`dagster.yaml`), so the
UI a developer opens reads the same kind of storage, queue and retry settings that run in
production, rather than a SQLite stand-in that behaves differently (no real run queue
concurrency, no shared event log between webserver and daemon processes).

Production sets `DAGSTER_POSTGRES_URL` itself. Locally it is derived from the app's database
URL: the same server, database `settings.dagster_database`, created on first use.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from core.settings import REPO_ROOT, Settings
from store.db import sqlalchemy_url

INSTANCE_YAML = REPO_ROOT / "dagster.yaml"
ENV_VAR = "DAGSTER_POSTGRES_URL"


# dagster-postgres issues psycopg2-style statements (`NOTIFY channel, %(id)s`), which psycopg 3
# (SQLAlchemy's default for a bare `postgresql://` URL) refuses: name the driver explicitly.
DAGSTER_DRIVER = "postgresql+psycopg2"


def dagster_postgres_url(settings: Settings, database_url: str) -> str:
    """DAGSTER_POSTGRES_URL if set, else `settings.dagster_database` on the app's server
    (created if missing); either way with the psycopg2 driver dagster-postgres needs."""
    configured = os.environ.get(ENV_VAR)
    if configured:
        url = make_url(configured)
    else:
        ensure_database(database_url, settings.dagster_database)
        url = make_url(database_url).set(database=settings.dagster_database)
    return url.set(drivername=DAGSTER_DRIVER).render_as_string(hide_password=False)


def ensure_database(database_url: str, name: str) -> None:
    """Create database `name` on the server of `database_url` unless it exists."""
    admin = sa.create_engine(sqlalchemy_url(database_url), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.execute(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            ).scalar()
            if not exists:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()


def prepare_dagster_home(settings: Settings, database_url: str) -> Path:
    """DAGSTER_HOME with the repo's dagster.yaml, and DAGSTER_POSTGRES_URL set in this
    process's environment (children, such as `dagster dev`, inherit both)."""
    home = settings.data_path.resolve() / "dagster"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(INSTANCE_YAML, home / "dagster.yaml")
    os.environ[ENV_VAR] = dagster_postgres_url(settings, database_url)
    os.environ["DAGSTER_HOME"] = str(home)
    return home
