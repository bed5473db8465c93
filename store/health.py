"""Probes of the stores serving depends on, and of the run it serves.

They live in `store` (not in a router) because they are queries, and every query stays out of
`serving`. No probe raises: each returns what it saw (and how long it took) and logs the
cause, so a health endpoint can say which part failed without leaking a connection string.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import redis
import sqlalchemy as sa

from store.breaker import CircuitOpenError
from store.keys import RedisKeys
from store.redis_values import text

log = logging.getLogger(__name__)

# A probe that waits longer than a load balancer's check interval is worse than a failed one:
# checks pile up. Connecting is bounded by the engine's `connect_timeout`; this bounds queries.
POSTGRES_STATEMENT_TIMEOUT_MS = 2000

_LATEST_PUBLISHED_RUN = sa.text(
    "SELECT id, published_at FROM recommendation_runs "
    "WHERE status = 'published' AND published_at IS NOT NULL AND experiment IS NULL "
    "ORDER BY published_at DESC LIMIT 1"
)


@dataclass(frozen=True)
class StoreProbe:
    """Whether a store answered, and how long the attempt took (also when it failed, so a
    timeout is told apart from a refused connection)."""

    ok: bool
    latency_ms: float


@dataclass(frozen=True)
class PublishedRun:
    """The run readers are served: the newest champion's run (not an experiment arm's)
    marked `published` in Postgres."""

    run_id: str
    published_at: datetime

    def age_seconds(self, now: datetime | None = None) -> float:
        """Seconds since publication; never negative, in case the clocks of app and database
        disagree slightly."""
        now = now or datetime.now(UTC)
        return max(0.0, (now - self.published_at).total_seconds())


@dataclass(frozen=True)
class PostgresHealth:
    """The Postgres probe and, when it succeeded, the published run it read."""

    probe: StoreProbe
    published_run: PublishedRun | None


def check_postgres(engine: sa.Engine) -> PostgresHealth:
    """Probe Postgres with `SELECT 1`, then read the newest published run on the same connection.

    Latency is that of the `SELECT 1` round trip (connection checkout included), so it measures
    the database rather than the run query. Both run in one transaction (rolled back on close)
    under a short `statement_timeout`, so a stuck server fails the probe instead of holding the
    request.
    """
    started = time.perf_counter()
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f"SET LOCAL statement_timeout = {POSTGRES_STATEMENT_TIMEOUT_MS}"))
            conn.execute(sa.text("SELECT 1")).scalar_one()
            latency_ms = _elapsed_ms(started)
            row = conn.execute(_LATEST_PUBLISHED_RUN).first()
    except sa.exc.SQLAlchemyError as error:
        log.warning("postgres health probe failed: %s", error.__class__.__name__, exc_info=True)
        return PostgresHealth(StoreProbe(ok=False, latency_ms=_elapsed_ms(started)), None)
    run = None if row is None else PublishedRun(str(row.id), _aware(row.published_at))
    return PostgresHealth(StoreProbe(ok=True, latency_ms=latency_ms), run)


@dataclass(frozen=True)
class RedisHealth:
    """The Redis probe and, when it answered, whether it serves the run Postgres published:
    the run its `feed:current` pointer names, and whether that run's keys are there."""

    probe: StoreProbe
    circuit_open: bool = False
    serving: str | None = None
    complete: bool = False


def check_redis(client: redis.Redis, keys: RedisKeys) -> RedisHealth:
    """Probe Redis by reading the current-run pointer (one round trip with the run's meta):
    it proves Redis answers and says which run it serves. The client's short socket timeout
    and its circuit breaker (`store.breaker`) bound it: an open breaker answers at once."""
    started = time.perf_counter()
    try:
        pointer = client.get(keys.current_run())
        serving = None if pointer is None else text(pointer)
        complete = serving is not None and bool(client.exists(keys.run_meta(serving)))
    except CircuitOpenError:
        return RedisHealth(StoreProbe(ok=False, latency_ms=_elapsed_ms(started)), True)
    except redis.RedisError as error:
        log.warning("redis health probe failed: %s", error.__class__.__name__, exc_info=True)
        return RedisHealth(StoreProbe(ok=False, latency_ms=_elapsed_ms(started)))
    return RedisHealth(
        StoreProbe(ok=True, latency_ms=_elapsed_ms(started)), False, serving, complete
    )


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def _aware(value: datetime) -> datetime:
    """`published_at` is timestamptz, so psycopg returns it aware; guard a naive one anyway."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
