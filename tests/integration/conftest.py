"""Fixtures shared by the API tests: settings pointing at this test's stores."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from godo import services
from godo.settings import Settings
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
