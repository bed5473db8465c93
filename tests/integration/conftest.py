"""Fixtures shared by the API tests: settings pointing at this test's stores."""

from __future__ import annotations

import lightgbm
import numpy as np
import pytest
from pydantic import SecretStr

from godo import services
from godo.settings import Settings
from pipelines.tracking import ModelRegistry
from store.keys import RedisKeys

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
