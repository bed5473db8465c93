"""Property-based tests of every documented operation, generated from the app's OpenAPI schema.

Schemathesis (v4) reads the schema FastAPI builds and, for each operation, lets Hypothesis
generate valid and invalid requests (paths, query strings, headers, bodies). Each response is
checked against the schema: no 5xx, a documented status code, a documented content type, a body
matching the documented model, invalid input refused (see `EXCLUDED_CHECKS` for the one
check left out, and why).

The app is the real one (`create_app`, lifespan running, so it opens its own pools) over the
session's real Postgres and Redis, reached in-process through schemathesis' ASGI transport,
with a run published exactly as the pipeline does it. Requests carry a valid bearer token for a
user that exists, so operations get past authentication and reach the stores.

The profile is short and derandomized so CI is reproducible and fast: raise `MAX_EXAMPLES`
locally to fuzz harder (`GODO_SCHEMATHESIS_EXAMPLES=500 uv run pytest tests/integration/
test_api_schemathesis.py`).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
import redis
import schemathesis
import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from pydantic import SecretStr
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import positive_data_acceptance
from starlette.types import ASGIApp, Receive, Scope, Send

from core.settings import Settings
from core.tokens import issue_token
from godo import services
from serving.app import create_app
from sources.resend.fake import FakeResend
from store.db import copy_frame
from store.keys import RedisKeys
from store.publish import publish_run
from store.schema import metadata

API_SECRET = "schemathesis-test-secret-0123456789abcdefgh"
MAX_EXAMPLES = int(os.environ.get("GODO_SCHEMATHESIS_EXAMPLES", "20"))
USER_ID = 1
OTHER_USER_ID = 2
EVENT_IDS = [f"ev-{i}" for i in range(1, 6)]
RUN_ID = "run-schemathesis-1"

# `positive_data_acceptance` expects every schema-valid request to succeed, but the API refuses
# (with its documented 422) requests whose validity the schema cannot express: `lat` without
# `lon` on the feed (a dependency between two query parameters), a `cursor` the API did not
# issue (any string up to 512 characters is schema-valid), and swipes naming an `event_id` that
# is not in the catalogue. Every other check runs, including that invalid input is refused.
EXCLUDED_CHECKS: list[schemathesis.CheckFunction] = [positive_data_acceptance]


class DeferredApp:
    """An ASGI app forwarding to the app the `served_app` fixture builds.

    Schemathesis generates its tests at collection, before any fixture has started the stores,
    and binds each operation to the app given then. So the schema is read (at import) from an
    app that is never started, and bound to this stand-in, which the fixture points at the real
    app; every request, including the variants checks re-send, then reaches the real app.
    """

    def __init__(self) -> None:
        self.target: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.target is None:
            raise RuntimeError("the served_app fixture has not set up the app yet")
        await self.target(scope, receive, send)


DEFERRED_APP = DeferredApp()
# `/metrics` is registered with `include_in_schema=False`: not in the schema, so not fuzzed.
schema = schemathesis.openapi.from_dict(create_app(Settings(_env_file=None)).openapi())  # type: ignore[call-arg]
schema.app = DEFERRED_APP


def _seed(engine: sa.Engine) -> None:
    """Two users, one venue, five upcoming events: enough for every card to hydrate."""
    now = datetime.now(UTC).replace(microsecond=0)
    with engine.begin() as conn:
        copy_frame(
            conn,
            "users",
            pl.DataFrame(
                {"id": [USER_ID, OTHER_USER_ID], "display_name": ["A.", "B."], "metro": ["sf"] * 2}
            ),
        )
        copy_frame(
            conn,
            "venues",
            pl.DataFrame({"id": ["v-1"], "name": ["Hall"], "metro": ["sf"], "capacity": [300]}),
        )
        copy_frame(
            conn,
            "events",
            pl.DataFrame(
                {
                    "id": EVENT_IDS,
                    "name": [f"Event {i}" for i in range(len(EVENT_IDS))],
                    "category": ["music"] * len(EVENT_IDS),
                    "start_utc": [now + timedelta(days=1 + i) for i in range(len(EVENT_IDS))],
                    "end_utc": [
                        now + timedelta(days=1 + i, hours=2) for i in range(len(EVENT_IDS))
                    ],
                    "is_free": [True] * len(EVENT_IDS),
                    "venue_id": ["v-1"] * len(EVENT_IDS),
                    "metro": ["sf"] * len(EVENT_IDS),
                    "status": ["live"] * len(EVENT_IDS),
                    "is_active": [True] * len(EVENT_IDS),
                },
                schema_overrides={
                    "start_utc": pl.Datetime("us", "UTC"),
                    "end_utc": pl.Datetime("us", "UTC"),
                },
            ),
        )


def _ranked(event_ids: list[str]) -> dict[str, list[object]]:
    n = len(event_ids)
    return {
        "rank": list(range(1, n + 1)),
        "event_id": list(event_ids),
        "score": [1.0 - 0.1 * i for i in range(n)],
        "reason": ["als"] * n,
    }


@pytest.fixture(scope="module")
def served_app(
    session_engine: sa.Engine,
    database_url: str,
    service_urls: services.ServiceUrls,
    redis_client: redis.Redis,
) -> Iterator[Settings]:
    """The app over freshly seeded stores with a published run, shared by every operation.

    Module-scoped (one seed, one app, one lifespan for the whole fuzz run), so it builds on the
    session fixtures rather than the per-test `engine`/`redis_keys`, and cleans up the same way.
    The rate limiter stays installed, with a budget the fuzzer cannot exhaust.
    """
    names = ", ".join(t.name for t in metadata.sorted_tables)
    with session_engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {names} CASCADE"))
    keys = RedisKeys(prefix=f"godo-test-{uuid.uuid4().hex[:10]}")
    _seed(session_engine)
    publish_run(
        engine=session_engine,
        redis_client=redis_client,
        keys=keys,
        run_id=RUN_ID,
        model="schemathesis",
        recommendations=pl.DataFrame({"user_id": [USER_ID] * len(EVENT_IDS), **_ranked(EVENT_IDS)}),
        fallback=pl.DataFrame(_ranked(EVENT_IDS[:3])),
        ttl_seconds=600,
    )
    resend = FakeResend().start()
    app_settings = Settings(
        database_url=database_url,
        redis_url=service_urls.redis_url,
        redis_prefix=keys.prefix,
        jwt_secret=SecretStr(API_SECRET),
        rate_limit_per_minute=1_000_000,
        rate_limit_burst=1_000_000,
        # Invitations go to a local fake of Resend, as in the demo.
        resend_base_url=resend.base_url,
        resend_api_key=SecretStr(resend.api_key),
        _env_file=None,  # type: ignore[call-arg]
    )
    DEFERRED_APP.target = create_app(app_settings)
    try:
        yield app_settings
    finally:
        resend.stop()
        # Schemathesis starts the lifespan on the first request and keeps it for the process;
        # stop it here, so the app's pools close before the database is dropped.
        shutdown_lifespans()
        DEFERRED_APP.target = None
        stale = list(redis_client.scan_iter(match=keys.namespace_pattern(), count=1000))
        if stale:
            redis_client.delete(*stale)


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_schema(case: schemathesis.Case, served_app: Settings) -> None:
    token = issue_token(served_app, USER_ID)
    case.call_and_validate(
        headers={"Authorization": f"Bearer {token}"},
        excluded_checks=EXCLUDED_CHECKS,
    )
