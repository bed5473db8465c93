"""Every registered problem kind, provoked through the real app, carries its `type` and `code`.

One case per kind of `serving.problem_types.PROBLEM_TYPES` (a test fails when a kind has no
case here), each the real app over the seeded world (`seed_input_world`), real Postgres and
Redis, with only the settings the case needs changed: a tiny body limit, a rate limit of one,
a JWKS URL nobody serves, a database that is down. The body must be the documented problem:
its kind's `type`, `code`, status and status phrase.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any

import httpx
import pytest
import redis
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from core.links import issue_invite_token
from core.settings import Settings
from core.tokens import issue_token
from serving import cursors
from serving.app import create_app
from serving.problem_types import PROBLEM_TYPES, ProblemType
from serving.problems import PROBLEM_MEDIA_TYPE
from store.keys import RedisKeys
from tests.integration.conftest import (
    CLOSED_POSTGRES,
    INPUT_USER,
    account_token_headers,
    admin_token,
    seed_input_world,
)

Request = Callable[[TestClient, Settings], httpx.Response]
METRICS_TOKEN = "scrape-token-Vq3nL8xR2mZ7wK4pT9sB6yH1cF5g"


@dataclass(frozen=True)
class Case:
    """How to provoke one kind: settings to change, an app change, then the request."""

    request: Request
    settings: Mapping[str, Any] = field(default_factory=dict)
    prepare: Callable[[FastAPI], None] | None = None


def _auth(settings: Settings, user_id: int = INPUT_USER) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(settings, user_id)}"}


def _twice(method: str, path: str, first: dict[str, Any], second: dict[str, Any]) -> Request:
    """The second of two requests; the first must have succeeded (it sets up the refusal)."""

    def request(client: TestClient, settings: Settings) -> httpx.Response:
        before = client.request(method, path, json=first, headers=_auth(settings))
        assert before.status_code < 300, before.text
        return client.request(method, path, json=second, headers=_auth(settings))

    return request


def _feed(**params: str) -> Request:
    return lambda client, settings: client.get("/v1/feed", params=params, headers=_auth(settings))


def _jwks_signed_token(client: TestClient, settings: Settings) -> httpx.Response:
    """An ES256 token naming a key: verifying it needs the JWKS, which cannot be fetched."""

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    token = f"{part({'alg': 'ES256', 'kid': 'key-1', 'typ': 'JWT'})}.{part({'sub': '1'})}.c2ln"
    return client.get("/v1/feed", headers={"Authorization": f"Bearer {token}"})


def _expired_invite(client: TestClient, settings: Settings) -> httpx.Response:
    expired = datetime.now(UTC) - timedelta(days=1)
    token = issue_invite_token(
        settings, invite_id=uuid.uuid4(), inviter_id=INPUT_USER, expires_at=expired
    )
    return client.get(f"/v1/invites/{token}")


def _gone_cursor(client: TestClient, settings: Settings) -> httpx.Response:
    gone = cursors.encode(cursors.Cursor(run_id="run-long-gone", after_rank=1), settings.cursor_key)
    return _feed(cursor=gone)(client, settings)


def _add_a_failing_route(app: FastAPI) -> None:
    def boom() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/v1/boom", boom)


CASES: dict[str, Case] = {
    "bad-request": Case(
        lambda client, settings: client.post(
            "/v1/swipes",
            content=b'{"swipes": ["\xff"]}',  # not UTF-8 (JSON syntax errors are 422s)
            headers={**_auth(settings), "Content-Type": "application/json"},
        )
    ),
    "token-missing": Case(lambda client, settings: client.get("/v1/feed")),
    "token-invalid": Case(
        lambda client, settings: client.get(
            "/v1/feed", headers={"Authorization": "Bearer not-a-jwt"}
        )
    ),
    "account-not-linked": Case(
        lambda client, settings: client.get(
            "/v1/feed", headers=account_token_headers(settings, uuid.uuid4())
        )
    ),
    "unauthorized": Case(
        lambda client, settings: client.get(
            "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN[:-1]}"}
        ),
        settings={"metrics_token": SecretStr(METRICS_TOKEN)},
    ),
    "forbidden": Case(
        lambda client, settings: client.get(
            "/admin/experiments",
            headers={"Authorization": f"Bearer {admin_token(settings, admin=False)}"},
        )
    ),
    "not-found": Case(
        lambda client, settings: client.get("/v1/events/no-such-event", headers=_auth(settings))
    ),
    "method-not-allowed": Case(
        lambda client, settings: client.delete("/v1/feed", headers=_auth(settings))
    ),
    "already-invited": Case(
        _twice("POST", "/v1/invites", {"email": "rui@example.com"}, {"email": "rui@example.com"})
    ),
    "feed-cursor-expired": Case(_gone_cursor),
    "invite-expired": Case(_expired_invite),
    "body-too-large": Case(
        lambda client, settings: client.post(
            "/v1/swipes", json={"swipes": ["x" * 200]}, headers=_auth(settings)
        ),
        settings={"max_body_bytes": 100},
    ),
    "validation-error": Case(_feed(limit="0")),
    "rate-limited": Case(
        _twice("GET", "/v1/me/friends", {}, {}),
        settings={"rate_limit_per_minute": 1, "rate_limit_burst": 1},
    ),
    "invite-limit-reached": Case(
        _twice("POST", "/v1/invites", {"email": "rui@example.com"}, {"email": "eva@example.com"}),
        settings={"invite_daily_limit": 1},
    ),
    "internal-error": Case(
        lambda client, settings: client.get("/v1/boom", headers=_auth(settings)),
        prepare=_add_a_failing_route,
    ),
    "store-unavailable": Case(
        lambda client, settings: client.get("/v1/me/friends", headers=_auth(settings)),
        settings={"database_url": CLOSED_POSTGRES},
    ),
    "signing-keys-unavailable": Case(
        _jwks_signed_token, settings={"jwks_url": "http://127.0.0.1:1/jwks.json"}
    ),
    "email-unavailable": Case(
        lambda client, settings: client.post(
            "/v1/invites", json={"email": "rui@example.com"}, headers=_auth(settings)
        ),
        settings={"resend_api_key": None},
    ),
}


def test_every_registered_kind_has_a_case() -> None:
    assert set(CASES) == {kind.code for kind in PROBLEM_TYPES}


@pytest.mark.parametrize("kind", PROBLEM_TYPES, ids=lambda kind: kind.code)
def test_each_kind_carries_its_type_and_code(
    kind: ProblemType,
    input_settings: Settings,
    engine: sa.Engine,
    redis_client: redis.Redis,
    redis_keys: RedisKeys,
) -> None:
    seed_input_world(engine, redis_client, redis_keys)
    case = CASES[kind.code]
    settings = input_settings.model_copy(update=dict(case.settings))
    app = create_app(settings)
    if case.prepare is not None:
        case.prepare(app)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = case.request(client, settings)
    assert response.status_code == kind.status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE)
    body = response.json()
    assert (body["type"], body["code"]) == (kind.uri, kind.code), body
    assert body["status"] == kind.status
    assert body["title"] == HTTPStatus(kind.status).phrase
    assert body["detail"] and body["instance"].startswith("/")
