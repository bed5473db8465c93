"""Per-user and per-IP rate limits: a token bucket in Redis, checked by ASGI middleware.

Each request draws one token from exactly one bucket: the user's (`sub` of a valid bearer
token) when it has one, else its client IP's (IPv6 grouped by /64, which one host usually
owns whole). Buckets refill at `rate_limit_per_minute / 60` tokens per second up to
`rate_limit_burst`. A request finding its bucket empty gets a 429 problem with `Retry-After`
(whole seconds until a token is back, at least 1). `/health` and `/metrics` are exempt so
probes and scrapes never compete with clients.

The bucket lives in Redis, updated by one Lua script (read, refill, take, write in a single
atomic step, timed by the Redis server's clock), so every API instance shares the same budget
and concurrent requests cannot both take the last token. Keys expire once a bucket would be
full again, so idle clients cost nothing.

When Redis is unreachable the limiter fails OPEN: the request is served unlimited and a
warning is logged at most once per `FAIL_OPEN_LOG_INTERVAL_SECONDS`. The feed itself falls back
to Postgres when Redis is down; refusing every request because the limiter's store is down
would turn a cache outage into a full outage. After a failure the limiter skips Redis for
`FAIL_OPEN_RETRY_SECONDS`, so a hanging Redis does not add a socket timeout to every request;
and the app's Redis circuit breaker (`store.breaker`) fails its commands at once while Redis
is unhealthy. Failing closed was rejected: it would make a cache outage a full outage, and what
an abuser could push unlimited meanwhile is idempotent (swipes by `client_id`) or capped in
Postgres (invites per day).

The client IP is the ASGI peer address: behind a load balancer, run uvicorn with
`--proxy-headers --forwarded-allow-ips=<the proxy's address>` so it is the real client's,
or every anonymous client shares the proxy's bucket.

Install with `install_rate_limits(app, settings)` before `install_security`, so the 429s get
CORS and security headers too.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import anyio.to_thread
import redis
from fastapi import FastAPI
from starlette.datastructures import State
from starlette.requests import HTTPConnection, Request
from starlette.types import ASGIApp, Receive, Scope, Send

from core.settings import Settings
from core.tokens import InvalidTokenError, SigningKeysUnavailableError, TokenVerifier
from serving.observability import record_rate_limited
from serving.problems import problem
from serving.security import route_path
from store.redis_batch import RedisBatcher

RateLimitScope = Literal["user", "ip"]
OnLimited = Callable[[HTTPConnection, RateLimitScope], None]

EXEMPT_PATHS = frozenset({"/health", "/metrics"})
FAIL_OPEN_LOG_INTERVAL_SECONDS = 60.0
FAIL_OPEN_RETRY_SECONDS = 5.0
log = logging.getLogger(__name__)

# KEYS[1]: bucket hash {tokens, ts}. ARGV: refill rate (tokens/s), capacity.
# Returns {allowed (0/1), seconds until one token is available (string: Lua numbers returned
# to Redis are truncated to integers)}.
TOKEN_BUCKET_LUA = """
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = capacity
  ts = now
end
tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate)
local allowed = 0
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((capacity - tokens) / rate * 1000) + 1000)
return {allowed, tostring(wait)}
"""
TOKEN_BUCKET_SHA = hashlib.sha1(TOKEN_BUCKET_LUA.encode(), usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class Refusal:
    """Why a request was refused: which bucket ran out, and when to come back."""

    scope: RateLimitScope
    retry_after_seconds: int


class TokenBucketLimiter:
    """The Redis side: which bucket a request draws from, and whether it had a token."""

    def __init__(self, settings: Settings, verifier: TokenVerifier | None = None) -> None:
        self.settings = settings
        self.verifier = verifier or TokenVerifier(settings)
        self.rate = settings.rate_limit_per_minute / 60
        self.capacity = settings.rate_limit_burst
        self._lock = threading.Lock()
        self._skip_redis_until = 0.0
        self._last_warning = -math.inf

    def key(self, scope: RateLimitScope, identity: str) -> str:
        return f"{self.settings.redis_prefix}:ratelimit:{scope}:{identity}"

    async def check(
        self, redis_client: RedisBatcher, token: str | None, client_ip: str | None
    ) -> Refusal | None:
        """None to serve the request, else the refusal.

        On the event loop: the bucket is one awaited script call, and a token seen before is
        recognised from memory; only a token never seen is verified in a worker thread (its
        key set may have to be fetched).
        """
        if time.monotonic() < self._skip_redis_until:
            return None  # Redis failed moments ago: failing open, don't wait on it again
        scope, identity = await self._bucket(token, client_ip)
        try:
            allowed, wait = await self._take(redis_client, self.key(scope, identity))
        except redis.RedisError as error:
            self._fail_open(error)
            return None
        if allowed:
            return None
        return Refusal(scope=scope, retry_after_seconds=max(1, math.ceil(wait)))

    async def _bucket(self, token: str | None, client_ip: str | None) -> tuple[RateLimitScope, str]:
        if token:
            # The token's subject (a user id or an account UUID) names the bucket: no
            # database lookup, and the two spellings can never collide.
            subject = self.verifier.remembered_subject(token)
            if subject is not None:
                return "user", str(subject)
            try:
                return "user", str(await anyio.to_thread.run_sync(self.verifier.subject, token))
            except (InvalidTokenError, SigningKeysUnavailableError):
                pass  # not a user we know: the route answers 401/503, the IP pays for it
        return "ip", _ip_identity(client_ip)

    async def _take(self, redis_client: RedisBatcher, key: str) -> tuple[bool, float]:
        """One EVALSHA, in a pipeline shared with concurrent requests (`RedisBatcher`); the
        script's text only when Redis does not have it (first use, or after a restart)."""
        args = (1, key, self.rate, self.capacity)
        try:
            ((allowed, wait),) = await redis_client.send([("EVALSHA", TOKEN_BUCKET_SHA, *args)])
        except redis.exceptions.NoScriptError:
            ((allowed, wait),) = await redis_client.send([("EVAL", TOKEN_BUCKET_LUA, *args)])
        return int(allowed) == 1, float(wait)

    def _fail_open(self, error: redis.RedisError) -> None:
        now = time.monotonic()
        with self._lock:
            self._skip_redis_until = now + FAIL_OPEN_RETRY_SECONDS
            if now - self._last_warning < FAIL_OPEN_LOG_INTERVAL_SECONDS:
                return
            self._last_warning = now
        log.warning(
            "rate limiter cannot reach Redis, serving requests unlimited (next warning in "
            "%.0f s at the earliest): %r",
            FAIL_OPEN_LOG_INTERVAL_SECONDS,
            error,
        )


class RateLimitMiddleware:
    """Pure ASGI middleware applying `TokenBucketLimiter` before the app sees the request."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        limiter: TokenBucketLimiter,
        state: State,
        on_limited: OnLimited | None = None,
    ) -> None:
        self.app = app
        self.limiter = limiter
        self.state = state  # the app's: `redis_batcher` is put there by the lifespan
        self.on_limited = on_limited

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or route_path(scope) in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        connection = HTTPConnection(scope)
        client_ip = scope["client"][0] if scope.get("client") else None
        refusal = await self.limiter.check(
            self.state.redis_batcher, _bearer_token(connection), client_ip
        )
        if refusal is None:
            await self.app(scope, receive, send)
            return
        if self.on_limited is not None:
            try:
                self.on_limited(connection, refusal.scope)
            except Exception:  # a metrics bug must not turn a 429 into a 500
                log.exception("rate limit hook failed")
        who = "this user" if refusal.scope == "user" else "this client IP"
        response = problem(
            Request(scope),
            429,
            f"Rate limit exceeded for {who} ({self.limiter.settings.rate_limit_per_minute} "
            f"requests per minute, bursts of {self.limiter.capacity}); retry in "
            f"{refusal.retry_after_seconds} s.",
            headers={"Retry-After": str(refusal.retry_after_seconds)},
        )
        await response(scope, receive, send)


def install_rate_limits(
    app: FastAPI,
    settings: Settings,
    *,
    verifier: TokenVerifier | None = None,
    on_limited: OnLimited | None = None,
) -> None:
    """Rate-limit `app` (before it starts serving).

    `verifier` should be the app's own, so a token checked here is not checked again by the
    route. `on_limited(request, scope)` is called for each refused request; by default it
    counts the refusal in the app's Prometheus metrics.
    """
    app.add_middleware(
        RateLimitMiddleware,
        limiter=TokenBucketLimiter(settings, verifier),
        state=app.state,
        on_limited=on_limited or record_rate_limited,
    )


def _bearer_token(connection: HTTPConnection) -> str | None:
    scheme, _, credentials = connection.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credentials.strip() or None


def _ip_identity(client_ip: str | None) -> str:
    """The IP as bucket key; IPv6 by its /64, since one host gets a whole /64 to rotate in."""
    if not client_ip:
        return "unknown"
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return client_ip  # e.g. "testclient", or a unix socket peer
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)
