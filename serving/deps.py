"""Every FastAPI dependency, as `Annotated` aliases, in one place.

Routers declare what they need (`engine: EngineDep`) and never reach into `app.state`
themselves, so a test can swap any of these with `app.dependency_overrides` and the pools
opened by the lifespan are the only connections serving ever uses.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from typing import Annotated, Any

import redis
import redis.asyncio
import sqlalchemy as sa
from fastapi import Depends, HTTPException, Query, Request, WebSocket
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import State

from core.settings import Settings
from core.tokens import (
    InvalidTokenError,
    SigningKeysUnavailableError,
    TokenVerifier,
    has_role,
    verify_claims,
)
from serving.attribution import ImpressionCheck
from serving.invitations import ResendInvitations
from serving.live_caps import LiveCaps
from serving.problem_types import (
    ACCOUNT_NOT_LINKED,
    EMAIL_UNAVAILABLE,
    SIGNING_KEYS_UNAVAILABLE,
    TOKEN_INVALID,
    TOKEN_MISSING,
    ProblemType,
)
from serving.problems import ProblemError
from sources.resend.client import ResendClient
from store.accounts import AccountDirectory
from store.invites import InvitationMailer
from store.keys import RedisKeys
from store.live_cache import LiveCache
from store.live_events import LiveHub
from store.redis_batch import RedisBatcher

SIGNING_KEYS_RETRY_AFTER_SECONDS = 5
EMAIL_RETRY_AFTER_SECONDS = 60
log = logging.getLogger(__name__)

_bearer = HTTPBearer(
    auto_error=False,  # we raise our own 401, with a reason and the WWW-Authenticate header
    bearerFormat="JWT",
    description="A JWT (Supabase access token, or `core.tokens.issue_token` in development); "
    "its `sub` is the user id.",
)


def _state(request: Request, name: str) -> Any:
    """An attribute the lifespan put on `app.state`, with a clear error if it did not run."""
    try:
        return getattr(request.app.state, name)
    except AttributeError as error:
        raise RuntimeError(
            f"app.state.{name} is missing: was the app started with its lifespan?"
        ) from error


async def _settings(request: Request) -> Settings:
    settings: Settings = _state(request, "settings")
    return settings


SettingsDep = Annotated[Settings, Depends(_settings)]


async def _engine(request: Request) -> sa.Engine:
    engine: sa.Engine = _state(request, "engine")
    return engine


EngineDep = Annotated[sa.Engine, Depends(_engine)]


async def _redis(request: Request) -> redis.Redis:
    client: redis.Redis = _state(request, "redis")
    return client


RedisDep = Annotated[redis.Redis, Depends(_redis)]


async def _live_cache(request: Request) -> LiveCache:
    cache: LiveCache = _state(request, "live_cache")
    return cache


LiveCacheDep = Annotated[LiveCache, Depends(_live_cache)]


async def _impression_key(request: Request) -> bytes:
    key: bytes = _state(request, "impression_key")
    return key


ImpressionKeyDep = Annotated[bytes, Depends(_impression_key)]


async def _impression_check(
    request: Request, settings: SettingsDep, key: ImpressionKeyDep
) -> ImpressionCheck:
    return ImpressionCheck(request, key, timedelta(seconds=settings.impression_max_age_seconds))


ImpressionCheckDep = Annotated[ImpressionCheck, Depends(_impression_check)]


async def _keys(request: Request) -> RedisKeys:
    keys: RedisKeys = _state(request, "keys")  # built once per app from the settings
    return keys


KeysDep = Annotated[RedisKeys, Depends(_keys)]


async def _current_user_id(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> int:
    """The user id of the bearer token, or 401 saying why (RFC 6750 challenge included).

    It reads the verifier and the account directory off `app.state` itself rather than
    through three more dependencies: every authenticated request resolves it, and FastAPI's
    cost is per dependency.
    """
    return await authenticate(request.app.state, credentials.credentials if credentials else None)


async def authenticate(state: State, token: str | None) -> int:
    """The user id of `token`, or the 401/503 `HTTPException` saying why; HTTP and WebSocket
    routes alike (`state` is the app's).

    A token accepted before (by the rate limiter, moments ago) is answered from the
    verifier's memory on the event loop; a real verification runs in the thread pool, since
    a JWKS-signed token may need the key set fetched over the network. A token whose `sub`
    is an account UUID (Supabase) is mapped to the user linked to that account
    (`store.accounts`); an account no user is linked to gets a 401.
    """
    if token is None:
        # RFC 6750 §3.1: a request without credentials gets a bare challenge, no error code.
        raise ProblemError(
            TOKEN_MISSING,
            "Missing bearer token: send 'Authorization: Bearer <token>'.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    verifier: TokenVerifier = state.token_verifier
    subject = verifier.remembered_subject(token)
    try:
        if subject is None:
            subject = await run_in_threadpool(verifier.subject, token)
    except InvalidTokenError as error:
        raise _invalid_token(error.reason) from error
    except SigningKeysUnavailableError as error:
        # The token may be fine: a 401 would make apps drop the session over our outage.
        log.warning("cannot verify a bearer token: %s", error)
        raise _signing_keys_unavailable() from error
    if isinstance(subject, int):
        return subject
    accounts: AccountDirectory = state.accounts
    user_id = accounts.remembered(subject)
    if user_id is None:
        user_id = await run_in_threadpool(accounts.user_id, state.engine, subject)
    if user_id is None:
        raise _invalid_token("no Godo user is linked to the token's account", ACCOUNT_NOT_LINKED)
    return user_id


def _invalid_token(reason: str, kind: ProblemType = TOKEN_INVALID) -> ProblemError:
    return ProblemError(
        kind,
        f"Invalid bearer token: {reason}.",
        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
    )


def _signing_keys_unavailable() -> ProblemError:
    """The token may be fine: a 401 would make apps drop the session over our outage."""
    return ProblemError(
        SIGNING_KEYS_UNAVAILABLE,
        "Token signing keys are temporarily unavailable; retry shortly.",
        headers={"Retry-After": str(SIGNING_KEYS_RETRY_AFTER_SECONDS)},
    )


CurrentUserId = Annotated[int, Depends(_current_user_id)]


@dataclass(frozen=True)
class FeedServices:
    """What a feed read needs, from `app.state` (opened once per process by the lifespan).

    One dependency instead of eight: the feed is the hot path, and FastAPI resolves each
    dependency of each request anew. Redis is the app's `RedisBatcher`, so the read and the
    impressions share pipelines with concurrent requests.
    """

    engine: sa.Engine
    redis: RedisBatcher
    keys: RedisKeys
    settings: Settings
    cache: LiveCache
    impression_key: bytes
    cursor_key: bytes


async def _feed_services(request: Request) -> FeedServices:
    """Gathered from `app.state` per request (a few attribute reads), so whatever the state
    holds now is used: a test or the keeper may swap a pool after startup."""
    state = request.app.state
    return FeedServices(
        engine=state.engine,
        redis=state.redis_batcher,
        keys=state.keys,
        settings=state.settings,
        cache=state.live_cache,
        impression_key=state.impression_key,
        cursor_key=state.cursor_key,
    )


FeedServicesDep = Annotated[FeedServices, Depends(_feed_services)]


@dataclass(frozen=True)
class LiveServices:
    """What the live WebSocket needs, from `app.state`: the process's hub (made by the
    lifespan), the connection caps, the asyncio Redis client, the key layout, and the token
    check every route uses.

    Authentication is a method, not a dependency: a WebSocket must be accepted before it can
    be closed with a code saying why (4401 / 1013), and a dependency runs before that.
    """

    hub: LiveHub
    caps: LiveCaps
    redis: redis.asyncio.Redis
    keys: RedisKeys
    state: State

    async def authenticate(self, token: str | None) -> int:
        """The user id of `token`, or the same 401/503 `HTTPException` an HTTP route gets."""
        return await authenticate(self.state, token)


async def _live_services(websocket: WebSocket) -> LiveServices:
    state = websocket.app.state
    try:
        hub: LiveHub = state.live_hub
    except AttributeError as error:
        raise RuntimeError(
            "app.state.live_hub is missing: was the app started with its lifespan?"
        ) from error
    return LiveServices(
        hub=hub, caps=state.live_caps, redis=state.async_redis, keys=state.keys, state=state
    )


LiveServicesDep = Annotated[LiveServices, Depends(_live_services)]


# --- email -----------------------------------------------------------------------------------


@lru_cache(maxsize=4)
def _resend_client(base_url: str, api_key: str) -> ResendClient:
    """One client (and connection pool) per configuration for the process."""
    # Few attempts and short waits: a person is waiting for the answer.
    return ResendClient(api_key=api_key, base_url=base_url, max_attempts=3, max_backoff_seconds=5.0)


async def _invitation_mailer(settings: SettingsDep) -> InvitationMailer:
    """Invitations through Resend (`resend_base_url`, `RESEND_API_KEY`: tests point the base
    URL at `sources.resend.fake`); a 503 when email is not configured on this server."""
    if settings.resend_api_key is None:
        raise ProblemError(
            EMAIL_UNAVAILABLE,
            "Email is not configured on this server (RESEND_API_KEY is unset).",
            headers={"Retry-After": str(EMAIL_RETRY_AFTER_SECONDS)},
        )
    client = _resend_client(settings.resend_base_url, settings.resend_api_key.get_secret_value())
    return ResendInvitations(client, settings.email_sender)


InvitationMailerDep = Annotated[InvitationMailer, Depends(_invitation_mailer)]


# --- the admin pages --------------------------------------------------------------------------

ADMIN_COOKIE = "godo_admin"
"""Where a browser keeps its admin token (set by `POST /admin/login`, sent only to /admin)."""


async def verify_admin_token(settings: Settings, token: str) -> dict[str, Any]:
    """The claims of `token` when it is valid and carries the admin role; else 401, 403 or
    503 (signing keys unreachable), as `HTTPException`s the problem handlers render."""
    try:
        claims = await run_in_threadpool(verify_claims, settings, token)
    except InvalidTokenError as error:
        raise _invalid_token(error.reason) from error
    except SigningKeysUnavailableError as error:
        log.warning("cannot verify an admin token: %s", error)
        raise _signing_keys_unavailable() from error
    if not has_role(claims, settings.admin_role_claim, settings.admin_role):
        raise HTTPException(
            status_code=403,
            detail=f"The token does not carry the admin role: its "
            f"'{settings.admin_role_claim}' claim must be or contain '{settings.admin_role}'.",
        )
    return claims


async def _admin_claims(
    request: Request,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> dict[str, Any]:
    """The admin caller's claims, from `Authorization: Bearer` or else the admin cookie.

    A header wins over the cookie, so a script can call the pages as the API is called.
    Every request verifies the token in full (signature, audience, expiry, role): the pages
    are rare and the verifier's memory keeps subjects, not roles.
    """
    token = credentials.credentials if credentials else request.cookies.get(ADMIN_COOKIE)
    if not token:
        raise ProblemError(
            TOKEN_MISSING,
            "Missing bearer token: send 'Authorization: Bearer <token>' with the admin "
            "role, or sign in at /admin/login.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return await verify_admin_token(settings, token)


AdminClaims = Annotated[dict[str, Any], Depends(_admin_claims)]


# --- where the caller is (the feed and the event page read it the same way) ----------------


async def _origin(
    lat: Annotated[
        float | None,
        Query(
            ge=-90,
            le=90,
            allow_inf_nan=False,
            description="The caller's latitude in degrees, for `distance_km`; needs `lon`.",
        ),
    ] = None,
    lon: Annotated[
        float | None,
        Query(
            ge=-180,
            le=180,
            allow_inf_nan=False,
            description="The caller's longitude in degrees, for `distance_km`; needs `lat`.",
        ),
    ] = None,
) -> tuple[float, float] | None:
    """Where the caller is, or None; half a position is refused rather than silently ignored.

    Async although it awaits nothing: FastAPI runs a plain `def` dependency in its thread
    pool, a thread hop per request for a few comparisons."""
    if lat is None and lon is None:
        return None
    if lat is None or lon is None:
        missing, given = ("lon", "lat") if lon is None else ("lat", "lon")
        raise RequestValidationError(
            [
                {
                    "loc": ("query", missing),
                    "msg": f"Field required when `{given}` is given",
                    "type": "missing",
                }
            ]
        )
    return lat, lon


OriginDep = Annotated[tuple[float, float] | None, Depends(_origin)]
