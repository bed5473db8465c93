"""The FastAPI application factory.

Nothing is built at import: the CLI runs `uvicorn.run("serving.app:create_app", factory=True)`
after it has resolved (or started) Postgres and Redis, and tests call `create_app(settings)`
with their own servers. Importing this module therefore needs no environment.

Connections are opened once per process in `lifespan` and shared by every request: a SQLAlchemy
pool (thread-safe, used from FastAPI's thread pool), a Redis client (its own pool) and an
asyncio Redis client for the routes that stay on the event loop. Both Redis clients report to
one circuit breaker (`store.breaker`), and the lifespan runs the keeper (`serving.keeper`),
which probes a hung Redis and restores what Redis lost from Postgres. The live WebSocket's hub
(`store.live_events.LiveHub`, one pub/sub subscription per process) is made here too, and
closed on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis
from fastapi import FastAPI
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from core.logs import configure_logging
from core.settings import Settings, get_settings
from core.tokens import TokenVerifier
from serving.body_limit import install_body_limit
from serving.docs import api_description, install_docs, operation_id
from serving.keeper import run_keeper
from serving.live_caps import LiveCaps
from serving.observability import install_observability
from serving.problems import install_problem_handlers
from serving.proxy import install_trusted_proxies
from serving.ratelimit import install_rate_limits
from serving.request_ids import install_request_ids
from serving.routers import (
    admin,
    calendar,
    devices,
    events,
    feed,
    friends,
    health,
    invites,
    live,
    swipes,
)
from serving.security import install_security
from store.accounts import AccountDirectory
from store.breaker import CircuitBreaker, GuardedAsyncRedis, GuardedRedis
from store.db import make_engine
from store.keys import RedisKeys
from store.live_cache import LiveCache
from store.live_events import LiveHub
from store.redis_batch import RedisBatcher

# The feed falls back to Postgres when Redis fails, so failing fast beats waiting: redis-py's
# default (10 retries, backoff up to 1 s) would stall each request for seconds during an
# outage. One quick retry still rides over a connection the server closed while idle; a
# timeout is not retried (a hung server would only make the caller wait twice), and after a
# few failures the breaker stops sending commands at all.
REDIS_HEALTH_CHECK_INTERVAL_SECONDS = 30
API_POOL_SIZE = 20
API_POOL_OVERFLOW = 20
REDIS_RETRY = Retry(
    ExponentialBackoff(cap=0.05, base=0.01), retries=1, supported_errors=(redis.ConnectionError,)
)
ASYNC_REDIS_RETRY = AsyncRetry(
    ExponentialBackoff(cap=0.05, base=0.01), retries=1, supported_errors=(redis.ConnectionError,)
)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open the Postgres pool and Redis client on `app.state`; close them on shutdown."""
    settings: Settings = app.state.settings
    if settings.database_url is None or settings.redis_url is None:
        missing = [
            name
            for name, value in (
                ("DATABASE_URL", settings.database_url),
                ("REDIS_URL", settings.redis_url),
            )
            if value is None
        ]
        raise RuntimeError(
            f"serving needs {' and '.join(missing)}: set them, or start the API with "
            "`godo serve`, which starts embedded servers and passes their URLs in"
        )
    # Sized to FastAPI's thread pool (40 threads run the blocking routes): connections beyond
    # `pool_size` are opened and closed per use, which under load costs more than the query.
    engine = make_engine(
        settings.database_url, pool_size=API_POOL_SIZE, max_overflow=API_POOL_OVERFLOW
    )
    timeout = settings.redis_socket_timeout_seconds
    breaker = CircuitBreaker(
        failure_threshold=settings.redis_breaker_failures,
        open_seconds=settings.redis_breaker_open_seconds,
    )
    redis_client = GuardedRedis.connect(
        settings.redis_url,
        breaker,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=REDIS_HEALTH_CHECK_INTERVAL_SECONDS,
        retry=REDIS_RETRY,
    )
    # The feed's hot path runs on the event loop (`store.steps`), so it has an asyncio client.
    async_redis = GuardedAsyncRedis.connect(
        settings.redis_url,
        breaker,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=REDIS_HEALTH_CHECK_INTERVAL_SECONDS,
        retry=ASYNC_REDIS_RETRY,
    )
    app.state.engine = engine
    app.state.redis = redis_client
    app.state.async_redis = async_redis
    # The hot path's Redis commands (rate limits, feed reads, impressions) go through one
    # batcher, so concurrent requests share pipelines (`store.redis_batch`).
    app.state.redis_batcher = RedisBatcher(async_redis)
    app.state.redis_breaker = breaker
    # The live WebSocket's one subscription per process; it connects with the first client.
    hub = LiveHub(settings.redis_url, app.state.keys.live_notify_channel())
    app.state.live_hub = hub
    keeper = asyncio.create_task(run_keeper(app.state), name="godo-keeper")
    try:
        yield
    finally:
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper
        await hub.aclose()
        await async_redis.aclose()  # type: ignore[attr-defined]  # stubs predate redis 5
        redis_client.close()
        engine.dispose()


def create_app(settings: Settings | None = None) -> FastAPI:
    """A new app; `settings` defaults to the process settings (read from the environment)."""
    settings = settings or get_settings()
    docs = settings.serves_docs  # off by default outside development: no public API map
    app = FastAPI(
        title="Godo API",
        summary="Ranked event feeds for the Godo app.",
        description=api_description(),
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # `serving.docs` serves both pages without a CDN
        redoc_url=None,
        openapi_url="/openapi.json" if docs else None,
        generate_unique_id_function=operation_id,  # `getFeed`, not `get_feed_v1_feed_get`
    )
    app.state.settings = settings
    install_problem_handlers(app)
    docs_paths = install_docs(app)
    app.include_router(health.router)
    app.include_router(feed.router, prefix="/v1")
    app.include_router(swipes.router, prefix="/v1")
    app.include_router(events.router, prefix="/v1")
    app.include_router(calendar.router, prefix="/v1")
    app.include_router(friends.router, prefix="/v1")
    app.include_router(live.router, prefix="/v1")
    app.include_router(devices.router, prefix="/v1")
    app.include_router(invites.router, prefix="/v1")
    app.include_router(admin.router)
    settings = app.state.settings
    # One verifier for the limiter and the routes: each token is verified once per process.
    app.state.token_verifier = TokenVerifier(settings)
    app.state.live_cache = LiveCache(max_age_seconds=settings.card_cache_seconds)
    app.state.impression_key = settings.impression_key  # derived once, used per feed item
    app.state.cursor_key = settings.cursor_key
    app.state.keys = RedisKeys(prefix=settings.redis_prefix)
    app.state.accounts = AccountDirectory()
    app.state.live_caps = LiveCaps.of(settings.live_max_per_user, settings.live_max_per_address)
    # Order matters: each install wraps what came before. The body limit innermost (its 413
    # passes through all the others), rate limits inside the security headers (so a 429
    # carries CORS and the headers), the timing around both (so it counts 429s and CORS
    # refusals too), the request id outermost (so every response has one).
    install_body_limit(app, settings)
    install_rate_limits(app, settings, verifier=app.state.token_verifier)
    install_security(app, settings, docs_paths=docs_paths)
    install_observability(app)
    install_request_ids(app)
    install_trusted_proxies(app, settings.trusted_proxy_hops)
    configure_logging(settings)
    return app
