"""Fixtures shared by the API tests: settings pointing at this test's stores, and a small
seeded world (with a client of the real app) for the bad-input tests."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import lightgbm
import numpy as np
import polars as pl
import pytest
import redis
import sqlalchemy as sa
from fastapi.testclient import TestClient
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from pydantic import SecretStr

from godo import services
from godo.settings import Settings
from godo.tokens import issue_token
from pipelines.tracking import ModelRegistry
from serving.app import create_app
from sources.resend.fake import FakeResend
from store.db import copy_frame
from store.keys import RedisKeys
from store.publish import publish_run
from store.schema import metadata

API_SECRET = "integration-test-secret-0123456789abcdefgh"


@pytest.fixture
def api_settings(
    database_url: str, service_urls: services.ServiceUrls, redis_keys: RedisKeys
) -> Settings:
    """This test's database and Redis namespace, a test signing secret, no `.env`."""
    return Settings(
        database_url=database_url,
        redis_url=service_urls.redis_url,
        redis_prefix=redis_keys.prefix,
        jwt_secret=SecretStr(API_SECRET),
        _env_file=None,  # type: ignore[call-arg]
    )


@pytest.fixture(scope="session")
def model_registry(tmp_path_factory: pytest.TempPathFactory) -> ModelRegistry:
    """A SQLite MLflow registry with two versions of the ranker, version 1 the `champion`.

    Session-wide: MLflow migrates a new SQLite database for seconds.
    """
    folder = tmp_path_factory.mktemp("mlflow")
    registry = ModelRegistry(
        f"sqlite:///{(folder / 'mlflow.db').resolve()}",
        "godo-tests",
        "godo-feed-ranker",
        artifact_root=str(folder / "artifacts"),
    )
    rng = np.random.default_rng(7)
    data = lightgbm.Dataset(
        rng.normal(size=(40, 3)), label=rng.integers(0, 3, size=40), group=[10] * 4
    )
    params = {"objective": "lambdarank", "verbosity": -1, "min_data_in_leaf": 2, "seed": 7}
    booster = lightgbm.train(params, data, num_boost_round=2)
    for name in ("first", "second"):
        with registry.start_run(name) as run:
            run.register(booster)
    registry.promote(1, reason="test: the first version is the champion")
    return registry


# --- a small world for the bad-input tests ------------------------------------------------

# Hypothesis profiles of the property suite over the API's inputs
# (`test_api_input_properties.py`), chosen with GODO_HYPOTHESIS_PROFILE: `api-ci` (the default)
# is derandomized and bounded so CI runs it in well under a minute; `api-deep` fuzzes harder
# with fresh randomness. The app is shared by every example of a test, hence the health check.
hypothesis_settings.register_profile(
    "api-ci",
    max_examples=15,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
hypothesis_settings.register_profile(
    "api-deep",
    parent=hypothesis_settings.get_profile("api-ci"),
    max_examples=300,
    derandomize=False,
)

INPUT_USER, INPUT_OTHER_USER = 1, 2
INPUT_EVENTS = ("ev-1", "ev-2", "ev-3")
INPUT_RUN_ID = "run-input-1"


def seed_input_world(engine: sa.Engine, redis_client: redis.Redis, keys: RedisKeys) -> None:
    """Two mutual friends, one venue, three upcoming events and a published run: enough for
    every route to reach the stores with a valid request."""
    now = datetime.now(UTC).replace(microsecond=0)
    n = len(INPUT_EVENTS)
    users = [INPUT_USER, INPUT_OTHER_USER]
    with engine.begin() as conn:
        copy_frame(
            conn,
            "users",
            pl.DataFrame({"id": users, "display_name": ["A.", "B."], "metro": ["lisbon"] * 2}),
        )
        copy_frame(conn, "friendships", pl.DataFrame({"user_id": users, "friend_id": users[::-1]}))
        copy_frame(
            conn,
            "venues",
            pl.DataFrame({"id": ["v-1"], "name": ["Hall"], "metro": ["lisbon"], "capacity": [300]}),
        )
        copy_frame(
            conn,
            "events",
            pl.DataFrame(
                {
                    "id": list(INPUT_EVENTS),
                    "name": [f"Event {e}" for e in INPUT_EVENTS],
                    "category": ["music"] * n,
                    "start_utc": [now + timedelta(days=1 + i) for i in range(n)],
                    "is_free": [True] * n,
                    "venue_id": ["v-1"] * n,
                    "metro": ["lisbon"] * n,
                    "status": ["live"] * n,
                    "is_active": [True] * n,
                },
                schema_overrides={"start_utc": pl.Datetime("us", "UTC")},
            ),
        )
    ranked = {
        "rank": list(range(1, n + 1)),
        "event_id": list(INPUT_EVENTS),
        "score": [1.0 - 0.1 * i for i in range(n)],
        "reason": ["als"] * n,
    }
    publish_run(
        engine=engine,
        redis_client=redis_client,
        keys=keys,
        run_id=INPUT_RUN_ID,
        model="bad-input",
        recommendations=pl.DataFrame({"user_id": [INPUT_USER] * n, **ranked}),
        fallback=pl.DataFrame(ranked),
        ttl_seconds=600,
    )


def table_counts(engine: sa.Engine) -> dict[str, int]:
    """Rows in every table of the schema: equal before and after means nothing was stored."""
    tables = metadata.sorted_tables
    counts = [
        sa.select(sa.func.count()).select_from(table).scalar_subquery().label(table.name)
        for table in tables
    ]
    with engine.connect() as conn:  # one round trip: the property suite calls it per example
        row = conn.execute(sa.select(*counts)).one()
    return {table.name: int(n) for table, n in zip(tables, row, strict=True)}


@pytest.fixture
def input_settings(api_settings: Settings) -> Iterator[Settings]:
    """The test's stores, a rate limit nobody reaches, invitations to a local fake Resend."""
    resend = FakeResend().start()
    try:
        yield api_settings.model_copy(
            update={
                "rate_limit_per_minute": 1_000_000,
                "rate_limit_burst": 1_000_000,
                "resend_base_url": resend.base_url,
                "resend_api_key": SecretStr(resend.api_key),
            }
        )
    finally:
        resend.stop()


@pytest.fixture
def input_client(
    input_settings: Settings,
    engine: sa.Engine,
    redis_client: redis.Redis,
    redis_keys: RedisKeys,
) -> Iterator[TestClient]:
    """The real app over the seeded world, lifespan running, as `INPUT_USER` (bearer token)."""
    seed_input_world(engine, redis_client, redis_keys)
    token = issue_token(input_settings, INPUT_USER)
    with TestClient(
        create_app(input_settings),
        headers={"Authorization": f"Bearer {token}"},
        raise_server_exceptions=False,
    ) as client:
        yield client
