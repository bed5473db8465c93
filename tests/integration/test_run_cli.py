"""`godo run JOB` against real PostgreSQL and Redis: the API records a page of impressions in
Redis, `godo run move_impressions` moves it into Postgres, and the run is in the local Dagster
instance under the job's name with the job's tags (what the run queue and the UI key on)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import redis
import sqlalchemy as sa
from typer.testing import CliRunner

from core.settings import get_settings
from godo.cli import app
from godo.dagster_home import ENV_VAR

# Imported here, before any test's environment: `defs` is built with the settings of that
# moment, as it is in a process that imported it earlier. `godo run` must still run on the
# settings of the moment it is invoked (its resources rebound), not those.
from pipelines import definitions  # noqa: F401
from pipelines.jobs import PIPELINE_TAG
from store.db import sqlalchemy_url
from store.feed import read_feed
from store.impressions import record_impressions
from store.keys import RedisKeys
from store.publish import publish_run
from tests.integration.conftest import seed_upcoming_events

EVENTS = ["ev-a", "ev-b", "ev-c"]
USER = 5


@pytest.fixture
def dagster_database(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A scratch database for the Dagster instance `godo run` writes to, dropped afterwards."""
    name = f"godo_dagster_run_{uuid.uuid4().hex[:8]}"
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.setenv("GODO_DAGSTER_DATABASE", name)
    yield name
    admin = sa.create_engine(sqlalchemy_url(database_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def cli(dagster_database: str, cli_environment: None) -> CliRunner:
    """`godo` on this test's database, Redis namespace, data folder and Dagster database."""
    return CliRunner()


def _record_a_page(engine: sa.Engine, redis_client: redis.Redis, keys: RedisKeys) -> None:
    """Publish a run with one user's list and record the page the API would serve them."""
    with engine.begin() as conn:
        seed_upcoming_events(conn, EVENTS, datetime.now(UTC))
    publish_run(
        engine=engine,
        redis_client=redis_client,
        keys=keys,
        run_id="run-cli-1",
        model="test-model",
        recommendations=pl.DataFrame(
            {
                "user_id": [USER] * len(EVENTS),
                "rank": [1, 2, 3],
                "event_id": EVENTS,
                "score": [0.9, 0.8, 0.7],
                "reason": ["als"] * len(EVENTS),
            }
        ),
        fallback=pl.DataFrame(
            {"rank": [1], "event_id": EVENTS[:1], "score": [1.0], "reason": ["popular"]}
        ),
        ttl_seconds=600,
    )
    feed = read_feed(engine=engine, redis_client=redis_client, keys=keys, user_id=USER)
    assert [item.event_id for item in feed.items] == EVENTS
    page = record_impressions(
        redis_client=redis_client, keys=keys, key=get_settings().impression_key, feed=feed
    )
    assert page.ids is not None


def test_run_moves_impressions_and_the_run_is_the_named_job_with_its_tags(
    cli: CliRunner,
    engine: sa.Engine,
    redis_client: redis.Redis,
    redis_keys: RedisKeys,
    tmp_path: Path,
    dagster_database: str,
) -> None:
    _record_a_page(engine, redis_client, redis_keys)

    result = cli.invoke(app, ["run", "move_impressions"])

    assert result.exit_code == 0, result.output
    assert "move_impressions succeeded" in result.stdout
    assert f"{PIPELINE_TAG}=impressions" in result.stdout
    assert "impression_log\t3" in result.stdout, result.stdout  # the table, plain in a pipe
    with engine.connect() as conn:
        moved = conn.execute(
            sa.text("SELECT event_id FROM impressions WHERE user_id = :u ORDER BY rank"),
            {"u": USER},
        ).scalars()
        assert list(moved) == EVENTS
    home = tmp_path / "dagster"
    assert get_settings().dagster_database == dagster_database
    with dg.DagsterInstance.from_config(str(home)) as instance:
        (run,) = instance.get_runs()
    assert run.job_name == "move_impressions"
    assert run.tags[PIPELINE_TAG] == "impressions"
    assert run.status == dg.DagsterRunStatus.SUCCESS
