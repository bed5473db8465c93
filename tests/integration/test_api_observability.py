"""`GET /health` and `GET /metrics` end to end, against real Postgres and Redis.

Health depends on real outages and real runs, so a store "down" is a URL pointing at a closed
port and a run is published with `store.publish.publish_run`, as the pipeline does. Metrics are
read back through `/metrics` and parsed with prometheus-client's own parser, i.e. as Prometheus
would scrape them.

`install_observability` is applied to each app here until `create_app` calls it itself (a
second call is a no-op, so these tests keep working after that move).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest
import redis
import sentry_sdk
import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from pydantic import SecretStr

from core.settings import Settings
from serving.app import create_app
from serving.observability import (
    LATENCY_BUCKETS,
    init_sentry,
    install_observability,
    record_cache,
    record_feed_source,
    record_rate_limited,
)
from store.db import copy_frame
from store.keys import RedisKeys
from store.publish import publish_run
from tests.integration.conftest import app_client

RUN_ID = "run-health-test-1"
CLOSED_REDIS = "redis://127.0.0.1:1/0"
CLOSED_POSTGRES = "postgresql://godo@127.0.0.1:1/godo"
DURATION = "godo_http_request_duration_seconds"


@pytest.fixture
def published(engine: sa.Engine, redis_client: redis.Redis, redis_keys: RedisKeys) -> str:
    """One event and a published run recommending it (to one user, and as the fallback)."""
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    with engine.begin() as conn:
        copy_frame(
            conn,
            "venues",
            pl.DataFrame({"id": ["v-1"], "name": ["Hall"], "metro": ["lisbon"], "capacity": [50]}),
        )
        copy_frame(
            conn,
            "events",
            pl.DataFrame(
                {
                    "id": ["ev-1"],
                    "name": ["Jazz"],
                    "category": ["music"],
                    "start_utc": [start],
                    "end_utc": [start + timedelta(hours=2)],
                    "is_free": [True],
                    "price_min_cents": [None],
                    "venue_id": ["v-1"],
                    "metro": ["lisbon"],
                    "status": ["live"],
                    "is_active": [True],
                },
                schema_overrides={
                    "start_utc": pl.Datetime("us", "UTC"),
                    "end_utc": pl.Datetime("us", "UTC"),
                    "price_min_cents": pl.Int64,
                },
            ),
        )
    ranked = {"rank": [1], "event_id": ["ev-1"], "score": [1.0], "reason": ["als"]}
    publish_run(
        engine=engine,
        redis_client=redis_client,
        keys=redis_keys,
        run_id=RUN_ID,
        model="test-model",
        recommendations=pl.DataFrame({"user_id": [1], **ranked}),
        fallback=pl.DataFrame(ranked),
        ttl_seconds=600,
    )
    return RUN_ID


def _samples(client: TestClient, name: str) -> list[Sample]:
    """Every sample called `name` in a scrape of `client`'s `/metrics`."""
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    return [
        sample
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name == name
    ]


def _value(samples: list[Sample], **labels: str) -> float | None:
    """The value of the one sample carrying `labels` (others may be present), else None."""
    matches = [s for s in samples if all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(matches) <= 1, matches
    return matches[0].value if matches else None


# --- /health -------------------------------------------------------------------------------


def _assert_probe(body: dict[str, Any], ok: bool) -> None:
    assert body["ok"] is ok
    assert isinstance(body["latency_ms"], int | float) and body["latency_ms"] >= 0


def test_health_is_ok_with_reachable_stores_and_a_fresh_run(
    client: TestClient, published: str
) -> None:
    response = client.get("/health")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok"
    _assert_probe(body["postgres"], ok=True)
    _assert_probe(body["redis"], ok=True)
    run = body["published_run"]
    assert run["run_id"] == published
    assert 0 <= run["age_seconds"] < 60
    published_at = datetime.fromisoformat(run["published_at"])
    assert published_at.tzinfo is not None
    assert abs((datetime.now(UTC) - published_at).total_seconds()) < 60


def test_health_needs_no_authentication_and_is_not_a_problem_document(
    client: TestClient, published: str
) -> None:
    response = client.get("/health")
    assert response.headers["content-type"].startswith("application/json")


def test_health_is_degraded_before_any_run(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "degraded"
    assert body["published_run"] is None
    _assert_probe(body["postgres"], ok=True)
    _assert_probe(body["redis"], ok=True)


def test_health_is_degraded_when_the_run_is_older_than_the_threshold(
    settings: Settings, engine: sa.Engine, published: str
) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE recommendation_runs SET published_at = now() - interval '2 hours' "
                "WHERE id = :id"
            ),
            {"id": published},
        )
    strict = settings.model_copy(update={"health_max_run_age_seconds": 3600})
    with app_client(strict) as client:
        response = client.get("/health")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "degraded"
    assert body["published_run"]["run_id"] == published
    assert 7100 < body["published_run"]["age_seconds"] < 7300
    _assert_probe(body["redis"], ok=True)

    lenient = settings.model_copy(update={"health_max_run_age_seconds": 3 * 3600})
    with app_client(lenient) as client:
        assert client.get("/health").json()["status"] == "ok"


def test_health_is_degraded_not_down_when_redis_is_unreachable(
    settings: Settings, engine: sa.Engine, published: str
) -> None:
    down = settings.model_copy(update={"redis_url": CLOSED_REDIS})
    with app_client(down) as client:
        response = client.get("/health")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "degraded"
    _assert_probe(body["redis"], ok=False)
    _assert_probe(body["postgres"], ok=True)
    assert body["published_run"]["run_id"] == published


def test_health_is_503_down_when_postgres_is_unreachable(settings: Settings) -> None:
    # The lifespan starts anyway: the engine and the Redis client connect lazily.
    down = settings.model_copy(update={"database_url": CLOSED_POSTGRES})
    with app_client(down) as client:
        response = client.get("/health")
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["status"] == "down"
    assert body["published_run"] is None
    _assert_probe(body["postgres"], ok=False)
    _assert_probe(body["redis"], ok=True)
    assert "127.0.0.1" not in response.text and "psycopg" not in response.text


# --- /metrics ------------------------------------------------------------------------------


def test_metrics_is_prometheus_text_without_auth(client: TestClient) -> None:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST
    assert CONTENT_TYPE_LATEST.startswith("text/plain")
    names = {family.name for family in text_string_to_metric_families(response.text)}
    assert {DURATION, "godo_feed_source", "godo_cache_requests", "godo_rate_limited"} <= names
    assert "/metrics" not in client.get("/openapi.json").json()["paths"]


def test_request_durations_are_labelled_by_route_template_and_status_class(
    client: TestClient,
) -> None:
    for _ in range(3):
        assert client.get("/health").status_code == 200
    assert client.get("/v1/feed", params={"limit": 3}).status_code == 401
    assert client.get("/v1/nothing/42").status_code == 404

    counts = _samples(client, f"{DURATION}_count")
    assert _value(counts, method="GET", route="/health", status_class="2xx") == 3
    assert _value(counts, method="GET", route="/v1/feed", status_class="4xx") == 1
    assert _value(counts, method="GET", route="unmatched", status_class="4xx") == 1
    assert not any("42" in s.labels["route"] or "?" in s.labels["route"] for s in counts)

    buckets = [s for s in _samples(client, f"{DURATION}_bucket") if s.labels["route"] == "/health"]
    assert [float(s.labels["le"]) for s in buckets] == [*LATENCY_BUCKETS, float("inf")]
    assert buckets[-1].value == 3
    total = _value(_samples(client, f"{DURATION}_sum"), route="/health", status_class="2xx")
    assert total is not None and total > 0


def test_an_unhandled_error_is_counted_as_5xx_on_its_route(settings: Settings) -> None:
    app = create_app(settings)

    def boom() -> None:
        raise RuntimeError("boom")

    app.add_api_route("/boom/{thing}", boom)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/boom/x").status_code == 500
        counts = _samples(client, f"{DURATION}_count")
    assert _value(counts, route="/boom/{thing}", status_class="5xx") == 1


def test_feed_cache_and_rate_limit_counters(settings: Settings) -> None:
    app = create_app(settings)

    def observed(request: Request) -> dict[str, bool]:
        record_feed_source(request, "redis")
        record_feed_source(request, "cold_start")
        record_rate_limited(request, "ip")
        record_cache(request, "calendar", hit=True)
        return {"ok": True}

    app.add_api_route("/observed", observed)
    with TestClient(app) as client:
        assert client.get("/observed").status_code == 200
        record_cache(app, "calendar", hit=False)  # outside a request, through the app
        record_cache(app, "calendar", hit=False)
        sources = _samples(client, "godo_feed_source_total")
        limited = _samples(client, "godo_rate_limited_total")
        cache = _samples(client, "godo_cache_requests_total")
    assert {s.labels["source"]: s.value for s in sources} == {
        "redis": 1,
        "postgres": 0,
        "cold_start": 1,
    }
    assert {s.labels["scope"]: s.value for s in limited} == {"user": 0, "ip": 1}
    assert _value(cache, cache="calendar", result="hit") == 1
    assert _value(cache, cache="calendar", result="miss") == 2


def test_label_values_outside_the_documented_sets_are_refused(settings: Settings) -> None:
    app = create_app(settings)
    with pytest.raises(ValueError, match="feed source"):
        record_feed_source(app, "none")
    with pytest.raises(ValueError, match="rate limit scope"):
        record_rate_limited(app, "tenant")


def test_helpers_do_nothing_on_an_app_without_observability(settings: Settings) -> None:
    app = FastAPI()
    record_cache(app, "calendar", hit=True)
    record_feed_source(app, "postgres")
    assert not hasattr(app.state, "metrics")


def test_two_apps_in_one_process_do_not_share_metrics(
    settings: Settings, engine: sa.Engine
) -> None:
    first, second = create_app(settings), create_app(settings)
    assert first.state.metrics.registry is not second.state.metrics.registry
    with TestClient(first) as one, TestClient(second) as two:
        one.get("/health")
        one.get("/health")
        two.get("/health")
        record_cache(first, "calendar", hit=True)
        first_counts = _samples(one, f"{DURATION}_count")
        second_counts = _samples(two, f"{DURATION}_count")
        second_cache = _samples(two, "godo_cache_requests_total")
    assert _value(first_counts, route="/health") == 2
    assert _value(second_counts, route="/health") == 1
    assert _value(second_cache, cache="calendar", result="hit") is None


def test_installing_twice_is_a_no_op(settings: Settings, engine: sa.Engine) -> None:
    app = create_app(settings)
    metrics = app.state.metrics
    install_observability(app)
    assert app.state.metrics is metrics
    with TestClient(app) as client:
        client.get("/health")
        counts = _samples(client, f"{DURATION}_count")
    assert _value(counts, route="/health") == 1  # one middleware, not two


# --- Sentry --------------------------------------------------------------------------------


def test_sentry_stays_off_without_a_dsn(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(sentry_sdk, "init", lambda **kwargs: calls.append(kwargs))
    assert init_sentry(settings) is False
    create_app(settings)
    assert calls == []


def test_sentry_starts_with_the_dsn_environment_and_no_pii(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # sentry_sdk.init is replaced (it is process-global and would send events); the stores
    # stay real.
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(sentry_sdk, "init", lambda **kwargs: calls.append(kwargs))
    dsn = "https://public@o0.ingest.sentry.io/0"
    configured = settings.model_copy(
        update={"sentry_dsn": SecretStr(dsn), "environment": "staging"}
    )
    create_app(configured)
    assert calls == [
        {
            "dsn": dsn,
            "environment": "staging",
            "traces_sample_rate": 0.0,
            "send_default_pii": False,
        }
    ]
