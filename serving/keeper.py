"""The API's keeper: a background task per process that gets serving back to normal after a
Redis fault without a human, and without Dagster's daemon.

Two jobs, on one loop started by the app's lifespan:

- **Probing** (every second, while the Redis circuit breaker is not closed): a PING on a
  client of its own, outside the breaker. Success closes the breaker; failure keeps it open.
  So users' requests never wait on a hung Redis to find out whether it is back.
- **Reconciling** (every `feed_keeper_seconds`, while the breaker is closed):
  `store.recovery.reconcile_feed` sweeps abandoned publishes and makes Redis serve the runs
  Postgres published, restoring them from Postgres when Redis lost them (a Redis lock makes
  one process do the writing). It runs in a worker thread: it is blocking I/O; shutting
  down waits for it.

Nothing here raises: a store that is down is logged and tried again on the next tick.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from functools import partial

import redis
import redis.asyncio
import sqlalchemy as sa
from starlette.datastructures import State

from core.settings import Settings
from store.breaker import CircuitBreaker
from store.keys import RedisKeys
from store.recovery import reconcile_feed

PROBE_SECONDS = 1.0
log = logging.getLogger(__name__)


async def run_keeper(state: State) -> None:
    """Probe and reconcile until cancelled (by the lifespan, at shutdown)."""
    settings: Settings = state.settings
    breaker: CircuitBreaker = state.redis_breaker
    assert settings.redis_url is not None
    timeout = settings.redis_socket_timeout_seconds
    probe_client = redis.asyncio.Redis.from_url(
        settings.redis_url, socket_timeout=timeout, socket_connect_timeout=timeout
    )
    reconcile = partial(
        reconcile_feed,
        engine=state.engine,
        redis_client=state.redis,
        keys=RedisKeys(prefix=settings.redis_prefix),
        ttl_seconds=settings.feed_run_ttl_seconds,
    )
    next_reconcile = 0.0
    try:
        while True:
            if breaker.state != "closed":
                await _probe(probe_client, breaker)
            now = time.monotonic()
            if breaker.state == "closed" and now >= next_reconcile:
                next_reconcile = now + settings.feed_keeper_seconds
                await _reconcile(reconcile)
            await asyncio.sleep(min(PROBE_SECONDS, settings.feed_keeper_seconds))
    finally:
        await probe_client.aclose()  # type: ignore[attr-defined]  # stubs predate redis 5


async def _probe(client: redis.asyncio.Redis, breaker: CircuitBreaker) -> None:
    try:
        await client.ping()
    except (redis.RedisError, OSError):
        breaker.failure()
        return
    if breaker.state != "closed":
        log.warning("redis answers again: closing the circuit breaker")
    breaker.success()


async def _reconcile(reconcile: Callable[[], object]) -> None:
    """Run `reconcile` in a worker thread and wait for it, also when cancelled: shutdown then
    waits for the thread, so no query outlives the app's engine (a thread cannot be stopped)."""
    done = asyncio.get_running_loop().run_in_executor(None, reconcile)
    try:
        await asyncio.shield(done)
    except asyncio.CancelledError:
        await asyncio.wait([done])
        if not done.cancelled() and done.exception() is not None:
            log.warning("keeper's last reconcile failed: %r", done.exception())
        raise
    except (redis.RedisError, sa.exc.SQLAlchemyError) as error:
        log.warning("keeper could not reconcile the feed: %r", error)
    except Exception:  # the keeper must outlive any bug: it is what brings Redis back
        log.exception("keeper failed to reconcile the feed")
