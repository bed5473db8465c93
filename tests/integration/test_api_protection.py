"""Security headers, CORS, compression and rate limits, through the real app.

The app is `create_app(settings)`, which installs the rate limits and the security headers, over the
session's real Postgres and this test's own Redis key prefix (so buckets never leak between
tests, and the `redis_keys` fixture deletes them afterwards). Redis "down" is a URL to a
closed port, never a mock.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from core.settings import Settings
from serving.security import API_CSP, DOCS_CSP, HSTS
from store.keys import RedisKeys
from tests.integration.conftest import account_token_headers, app_client, auth_headers

CLOSED_REDIS = "redis://127.0.0.1:1/0"
PROBLEM = "application/problem+json"
APP_ORIGIN = "https://app.godo.example"
OTHER_ORIGIN = "https://evil.example"
BURST = 3


@pytest.fixture
def settings(api_settings: Settings) -> Settings:
    return api_settings.model_copy(
        update={
            "jwt_audience": "authenticated",
            "cors_origins": [APP_ORIGIN],
            "rate_limit_per_minute": 60,
            "rate_limit_burst": BURST,
        }
    )


def _assert_security_headers(response: Any, csp: str = API_CSP) -> None:
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["content-security-policy"] == csp


def _assert_rate_limited(response: Any, scope_words: str) -> int:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["title"] == "Too Many Requests"
    assert body["status"] == 429
    assert scope_words in body["detail"]
    retry_after = response.headers["retry-after"]
    assert retry_after.isdigit() and int(retry_after) >= 1
    return int(retry_after)


# --- security headers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "authenticated", "status"),
    [
        ("/health", False, 200),
        ("/v1/feed", True, 200),
        ("/v1/feed", False, 401),
        ("/v1/nothing-here", False, 404),
    ],
    ids=["health", "feed", "401-problem", "404-problem"],
)
def test_every_response_carries_the_security_headers(
    client: TestClient, settings: Settings, path: str, authenticated: bool, status: int
) -> None:
    headers = auth_headers(settings, 1) if authenticated else {}
    response = client.get(path, headers=headers)
    assert response.status_code == status, response.text
    _assert_security_headers(response)
    assert "strict-transport-security" not in response.headers  # development


def test_hsts_outside_development(settings: Settings, engine: sa.Engine) -> None:
    staging = settings.model_copy(update={"environment": "staging"})
    with app_client(staging) as client:
        response = client.get("/health")
    assert response.headers["strict-transport-security"] == HSTS
    _assert_security_headers(response)


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/docs/assets/swagger-ui-bundle.js"])
def test_docs_pages_get_a_csp_allowing_only_this_origin(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200, response.text
    _assert_security_headers(response, csp=DOCS_CSP)
    assert "frame-ancestors 'none'" in DOCS_CSP
    # The pages load everything from the app (test_api_docs.py), so no other host is allowed.
    assert "http" not in DOCS_CSP


def test_openapi_document_gets_the_api_csp(client: TestClient) -> None:
    _assert_security_headers(client.get("/openapi.json"))


# --- CORS ----------------------------------------------------------------------------------


def _preflight(client: TestClient, origin: str) -> Any:
    return client.options(
        "/v1/feed",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )


def test_preflight_from_the_app_origin_is_allowed(client: TestClient) -> None:
    response = _preflight(client, APP_ORIGIN)
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == APP_ORIGIN
    assert "authorization" in response.headers["access-control-allow-headers"].lower()
    assert "GET" in response.headers["access-control-allow-methods"]
    assert "access-control-allow-credentials" not in response.headers


def test_preflight_from_another_origin_is_refused(client: TestClient) -> None:
    response = _preflight(client, OTHER_ORIGIN)
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers


def test_simple_request_exposes_retry_after_to_the_app_origin(
    client: TestClient, settings: Settings
) -> None:
    headers = {**auth_headers(settings, 1), "Origin": APP_ORIGIN}
    response = client.get("/v1/feed", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == APP_ORIGIN
    assert "retry-after" in response.headers["access-control-expose-headers"].lower()
    other = client.get("/v1/feed", headers={**auth_headers(settings, 2), "Origin": OTHER_ORIGIN})
    assert "access-control-allow-origin" not in other.headers


# --- compression ---------------------------------------------------------------------------


def test_large_responses_are_gzipped(client: TestClient) -> None:
    response = client.get("/openapi.json", headers={"Accept-Encoding": "gzip"})
    assert response.status_code == 200
    assert response.headers["content-encoding"] == "gzip"
    assert "accept-encoding" in response.headers["vary"].lower()
    assert response.json()["info"]["title"] == "Godo API"  # httpx decompressed it


def test_small_responses_are_not(client: TestClient) -> None:
    response = client.get("/health", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in response.headers


# --- rate limits ---------------------------------------------------------------------------


def test_user_over_the_burst_gets_a_429_problem(
    client: TestClient, settings: Settings, redis_client: redis.Redis, redis_keys: RedisKeys
) -> None:
    headers = {**auth_headers(settings, 1), "Origin": APP_ORIGIN}
    for _ in range(BURST):
        response = client.get("/v1/feed", headers=headers)
        assert response.status_code == 200, response.text
    limited = client.get("/v1/feed", headers=headers)
    assert _assert_rate_limited(limited, "this user") == 1  # 1 token/s
    assert limited.json()["instance"] == "/v1/feed"
    # the 429 passes through CORS and the security headers, so browser code can read it
    _assert_security_headers(limited)
    assert limited.headers["access-control-allow-origin"] == APP_ORIGIN
    bucket = f"{redis_keys.prefix}:ratelimit:user:1"
    assert 0 < redis_client.pttl(bucket) <= (BURST + 1) * 1000


def test_limits_hold_after_redis_forgets_the_script(
    client: TestClient, settings: Settings, redis_client: redis.Redis
) -> None:
    """The limiter sends only the script's digest; a Redis that lost its scripts (a restart,
    `SCRIPT FLUSH`) gets the text again instead of failing open."""
    client.get("/v1/feed", headers=auth_headers(settings, 1))
    redis_client.script_flush()
    for _ in range(BURST - 1):
        assert client.get("/v1/feed", headers=auth_headers(settings, 1)).status_code == 200
    _assert_rate_limited(client.get("/v1/feed", headers=auth_headers(settings, 1)), "this user")


def test_another_user_has_a_bucket_of_their_own(client: TestClient, settings: Settings) -> None:
    for _ in range(BURST):
        client.get("/v1/feed", headers=auth_headers(settings, 1))
    _assert_rate_limited(client.get("/v1/feed", headers=auth_headers(settings, 1)), "this user")
    response = client.get("/v1/feed", headers=auth_headers(settings, 2))
    assert response.status_code == 200, response.text


def test_bucket_refills_at_the_configured_rate(client: TestClient, settings: Settings) -> None:
    for _ in range(BURST):
        client.get("/v1/feed", headers=auth_headers(settings, 1))
    retry_after = _assert_rate_limited(
        client.get("/v1/feed", headers=auth_headers(settings, 1)), "this user"
    )
    time.sleep(retry_after + 0.1)
    assert client.get("/v1/feed", headers=auth_headers(settings, 1)).status_code == 200


def test_unauthenticated_requests_are_limited_per_ip(
    client: TestClient, settings: Settings
) -> None:
    for _ in range(BURST):
        assert client.get("/v1/feed").status_code == 401
    _assert_rate_limited(client.get("/v1/feed"), "this client IP")
    # an invalid token is not a user: it draws from the same (empty) IP bucket
    invalid = {"Authorization": "Bearer not.a.token"}
    _assert_rate_limited(client.get("/v1/feed", headers=invalid), "this client IP")
    # a valid user is not held back by their IP's anonymous traffic
    assert client.get("/v1/feed", headers=auth_headers(settings, 1)).status_code == 200


def test_health_and_metrics_are_never_rate_limited(client: TestClient) -> None:
    for _ in range(BURST):
        client.get("/v1/feed")
    _assert_rate_limited(client.get("/v1/feed"), "this client IP")  # this IP is out of tokens
    for _ in range(BURST * 3):
        assert client.get("/health").status_code == 200
        assert client.get("/metrics").status_code != 429


def test_refusals_are_counted_in_the_metrics(settings: Settings, engine: sa.Engine) -> None:
    with app_client(settings) as client:
        for _ in range(BURST + 1):
            client.get("/v1/feed", headers=auth_headers(settings, 1))
        for _ in range(BURST + 1):
            client.get("/v1/feed")
        metrics = client.get("/metrics").text
    refused = {
        sample.labels["scope"]: sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name == "godo_rate_limited_total"
    }
    assert refused == {"user": 1.0, "ip": 1.0}


def test_redis_down_fails_open_with_one_warning(
    settings: Settings, engine: sa.Engine, caplog: pytest.LogCaptureFixture
) -> None:
    down = settings.model_copy(update={"redis_url": CLOSED_REDIS})
    with (
        caplog.at_level(logging.WARNING, logger="serving.ratelimit"),
        app_client(down) as client,
    ):
        statuses = [
            client.get("/v1/feed", headers=auth_headers(settings, 1)).status_code
            for _ in range(BURST * 2)
        ]
        anonymous = [client.get("/v1/feed").status_code for _ in range(BURST * 2)]
    assert statuses == [200] * (BURST * 2)
    assert anonymous == [401] * (BURST * 2)
    warnings = [r for r in caplog.records if r.name == "serving.ratelimit"]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "unlimited" in warnings[0].getMessage()


# --- Supabase-style account UUIDs ----------------------------------------------------------

ACCOUNT = uuid.UUID("0b5c8a6e-3f0e-4c1e-9a53-2f8f4b7d6e10")


def test_an_account_uuid_acts_as_the_user_linked_to_it(
    client: TestClient, settings: Settings, engine: sa.Engine
) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO users (id, display_name, metro, auth_id) VALUES "
                "(41, 'Ana', 'lisbon', :account), (42, 'Ben', 'lisbon', NULL)"
            ),
            {"account": ACCOUNT},
        )
    # Ben asks Ana (by user id); Ana, signed in with her account UUID, sees the request.
    assert client.post("/v1/friends/41", headers=auth_headers(settings, 42)).status_code == 201
    response = client.get("/v1/me/friends", headers=account_token_headers(settings, ACCOUNT))
    assert response.status_code == 200, response.text
    assert [r["user_id"] for r in response.json()["incoming"]] == [42]


def test_an_account_no_user_is_linked_to_is_a_401_saying_so(
    client: TestClient, settings: Settings
) -> None:
    response = client.get("/v1/me/friends", headers=account_token_headers(settings, uuid.uuid4()))
    assert response.status_code == 401
    assert response.headers["content-type"].startswith(PROBLEM)
    assert "no Godo user is linked" in response.json()["detail"]
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'


# --- what production exposes, and who the client is -----------------------------------------


def test_production_serves_no_docs_and_no_public_metrics(
    settings: Settings, engine: sa.Engine
) -> None:
    production = settings.model_copy(update={"environment": "production", "rate_limit_burst": 50})
    with app_client(production) as client:
        docs_asset = "/docs/assets/redoc.standalone.js"
        for path in ("/docs", "/redoc", docs_asset, "/openapi.json", "/metrics"):
            response = client.get(path)
            assert response.status_code == 404, path
            assert response.headers["content-type"].startswith(PROBLEM), path
        assert client.get("/health").status_code == 200
    opened = production.model_copy(update={"api_docs": True})
    with app_client(opened) as client:
        assert client.get("/openapi.json").status_code == 200
        assert client.get("/docs").status_code == 200
        assert client.get("/docs/assets/redoc.standalone.js").status_code == 200


def test_metrics_behind_a_token_answer_only_the_scraper(
    settings: Settings, engine: sa.Engine
) -> None:
    token = "scrape-token-Vq3nL8xR2mZ7wK4pT9sB6yH1cF5g"
    production = settings.model_copy(
        update={"environment": "production", "metrics_token": SecretStr(token)}
    )
    with app_client(production) as client:
        assert client.get("/metrics").status_code == 401
        wrong = client.get("/metrics", headers={"Authorization": "Bearer " + token[:-1]})
        assert wrong.status_code == 401
        assert wrong.headers["www-authenticate"].startswith("Bearer")
        scraped = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert scraped.status_code == 200
        assert "godo_http_request_duration_seconds" in scraped.text


def test_a_spoofed_forwarded_for_entry_does_not_buy_a_new_bucket(
    settings: Settings, engine: sa.Engine
) -> None:
    """Behind one trusted proxy (Fly), only the entry it appends names the client."""
    behind_fly = settings.model_copy(update={"trusted_proxy_hops": 1})
    with app_client(behind_fly) as client:
        for i in range(BURST):
            spoofed = {"X-Forwarded-For": f"10.0.0.{i}, 203.0.113.7"}
            assert client.get("/v1/feed", headers=spoofed).status_code == 401
        rotated = {"X-Forwarded-For": "10.9.9.9, 203.0.113.7"}
        _assert_rate_limited(client.get("/v1/feed", headers=rotated), "this client IP")
        # another real client (another address appended by the proxy) has its own bucket
        other = {"X-Forwarded-For": "10.0.0.0, 198.51.100.4"}
        assert client.get("/v1/feed", headers=other).status_code == 401
