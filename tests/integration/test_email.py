"""Invitations, unsubscribe and the weekly digest, end to end.

Real Postgres and Redis, the real API over HTTP, and the real Resend client talking to the
local fake (`sources.resend.fake`), which records what would have been delivered. The links
are taken out of the delivered emails themselves, so these prove the email a person gets
carries a link the API accepts.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest
import redis
import sqlalchemy as sa
from fastapi.testclient import TestClient
from pydantic import SecretStr

from core.links import issue_invite_token, issue_unsubscribe_token
from core.settings import Settings
from core.tokens import issue_token
from godo import services
from pipelines.assets.email import weekly_digest_email
from pipelines.resources import LocalStorage, PostgresResource, RedisResource, ResendResource
from sources.resend.fake import DEFAULT_API_KEY, FakeResend
from store.keys import RedisKeys
from store.notifications import MAX_EMAIL_ATTEMPTS
from store.publish import publish_run
from store.schema import events, invites, notification_log, notification_preferences, users
from tests.integration.conftest import API_SECRET, app_client, auth_headers

PROBLEM = "application/problem+json"
ANA, BEN, CAT = 1, 2, 3
NOW = datetime.now(UTC).replace(microsecond=0)
WEEK = "2026-W48"
_LINK = re.compile(r"http://127\.0\.0\.1:8000/v1/invites/([A-Za-z0-9_\-.]+)")


@pytest.fixture
def seeded(engine: sa.Engine) -> sa.Engine:
    with engine.begin() as conn:
        conn.execute(
            sa.insert(users),
            [
                {"id": ANA, "display_name": "Ana", "metro": "lisbon"},
                {"id": BEN, "display_name": "Ben", "metro": "lisbon"},
                {"id": CAT, "display_name": "Cat", "metro": "lisbon"},
            ],
        )
        conn.execute(
            sa.insert(events),
            [
                {
                    "id": event_id,
                    "name": name,
                    "metro": "lisbon",
                    "category": "music",
                    "start_utc": NOW + timedelta(days=days),
                    "timezone": "Europe/Lisbon",
                    "is_free": True,
                    "status": "live",
                    "is_active": True,
                }
                for event_id, name, days in (("ev-1", "Fado & Wine", 1), ("ev-2", "Jazz", 2))
            ],
        )
    return engine


def _settings(api_settings: Settings, resend: FakeResend, **overrides: Any) -> Settings:
    return api_settings.model_copy(
        update={
            "resend_base_url": resend.base_url,
            "resend_api_key": SecretStr(DEFAULT_API_KEY),
            "email_sender": "Godo <no-reply@godo.example>",
            **overrides,
        }
    )


@pytest.fixture
def settings(api_settings: Settings, resend: FakeResend) -> Settings:
    return _settings(api_settings, resend)


@pytest.fixture
def app_data(seeded: sa.Engine) -> None:
    """`client` starts on the `seeded` world."""


def _problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    return body


def _invite_rows(engine: sa.Engine) -> list[Any]:
    with engine.connect() as conn:
        return conn.execute(sa.select(invites).order_by(invites.c.created_at)).all()


# --------------------------------------------------------------------------------------------
# Invites
# --------------------------------------------------------------------------------------------


def test_invite_sends_one_email_whose_link_validates(
    client: TestClient, settings: Settings, resend: FakeResend, engine: sa.Engine
) -> None:
    response = client.post(
        "/v1/invites", json={"email": "  Rui@Example.COM "}, headers=auth_headers(settings, ANA)
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["email"] == "rui@example.com" and body["send_status"] == "sent"

    assert len(resend.messages) == 1
    message = resend.messages[0]
    assert message.to == ["rui@example.com"]
    assert message.body["subject"] == "Ana invited you to Godo"
    assert message.headers["idempotency-key"] == f"godo-invite-{body['id']}"
    html_tokens = set(_LINK.findall(message.html))
    text_tokens = set(_LINK.findall(message.text))
    assert len(html_tokens) == 1 and html_tokens == text_tokens

    check = client.get(f"/v1/invites/{html_tokens.pop()}")  # no Authorization header
    assert check.status_code == 200, check.text
    assert check.json()["inviter"] == {"user_id": ANA, "display_name": "Ana"}
    assert check.json()["accepted"] is False

    (row,) = _invite_rows(engine)
    assert (str(row.id), row.inviter_id, row.email) == (body["id"], ANA, "rui@example.com")
    assert (row.send_status, row.provider_message_id) == ("sent", message.id)
    assert row.expires_at - row.created_at == timedelta(days=settings.invite_ttl_days)

    # Counted in the API's metrics under the pipelines' counter name.
    metrics = client.get("/metrics").text
    assert 'godo_notifications_total{channel="email",kind="invite",outcome="sent"} 1.0' in metrics


@pytest.mark.parametrize("address", ["not-an-address", "rui@localhost", "a b@example.com", ""])
def test_a_bad_address_is_a_422_naming_the_field(
    client: TestClient, settings: Settings, resend: FakeResend, engine: sa.Engine, address: str
) -> None:
    body = _problem(
        client.post("/v1/invites", json={"email": address}, headers=auth_headers(settings, ANA)),
        422,
    )
    assert [error["field"] for error in body["errors"]] == ["body.email"]
    assert resend.requests == 0 and _invite_rows(engine) == []


def test_invites_need_a_login(client: TestClient) -> None:
    _problem(client.post("/v1/invites", json={"email": "rui@example.com"}), 401)


def test_one_pending_invite_per_address_and_inviter(
    client: TestClient, settings: Settings, resend: FakeResend
) -> None:
    ana = auth_headers(settings, ANA)
    assert client.post("/v1/invites", json={"email": "rui@example.com"}, headers=ana).is_success
    again = client.post("/v1/invites", json={"email": "RUI@example.com"}, headers=ana)
    assert "already invited" in _problem(again, 409)["detail"]
    other = client.post(
        "/v1/invites", json={"email": "rui@example.com"}, headers=auth_headers(settings, BEN)
    )
    assert other.status_code == 201  # another inviter may
    assert len(resend.messages) == 2


def test_daily_limit_per_inviter_is_a_429_with_retry_after(
    api_settings: Settings, resend: FakeResend, seeded: sa.Engine
) -> None:
    settings = _settings(api_settings, resend, invite_daily_limit=2)
    with app_client(settings) as client:
        ana = auth_headers(settings, ANA)
        for n in range(2):
            sent = client.post("/v1/invites", json={"email": f"f{n}@example.com"}, headers=ana)
            assert sent.status_code == 201
        refused = client.post("/v1/invites", json={"email": "f9@example.com"}, headers=ana)
        body = _problem(refused, 429)
        assert "at most 2 invitations" in body["detail"]
        assert 86_000 < int(refused.headers["Retry-After"]) <= 86_400
        # Ben's budget is his own.
        ben = client.post(
            "/v1/invites", json={"email": "f9@example.com"}, headers=auth_headers(settings, BEN)
        )
        assert ben.status_code == 201
    assert len(resend.messages) == 3


def test_one_address_cannot_be_flooded_by_many_inviters(
    api_settings: Settings, resend: FakeResend, seeded: sa.Engine
) -> None:
    settings = _settings(api_settings, resend, invite_recipient_daily_limit=2)
    with app_client(settings) as client:
        for user in (ANA, BEN):
            ok = client.post(
                "/v1/invites", json={"email": "x@example.com"}, headers=auth_headers(settings, user)
            )
            assert ok.status_code == 201
        refused = client.post(
            "/v1/invites", json={"email": "x@example.com"}, headers=auth_headers(settings, CAT)
        )
        assert "received 2 invitations" in _problem(refused, 429)["detail"]
        assert "Retry-After" in refused.headers
    assert len(resend.messages) == 2


def test_a_provider_outage_is_a_503_and_inviting_again_works(
    client: TestClient, settings: Settings, resend: FakeResend, engine: sa.Engine
) -> None:
    resend.server_errors(10)
    ana = auth_headers(settings, ANA)
    failed = client.post("/v1/invites", json={"email": "rui@example.com"}, headers=ana)
    assert _problem(failed, 503) and failed.headers["Retry-After"]
    assert [r.send_status for r in _invite_rows(engine)] == ["failed"]
    resend.reset()
    retried = client.post("/v1/invites", json={"email": "rui@example.com"}, headers=ana)
    assert retried.status_code == 201
    assert [r.send_status for r in _invite_rows(engine)] == ["failed", "sent"]
    assert len(resend.messages) == 1


def test_expired_invite_is_410_and_forged_ones_404(
    client: TestClient, settings: Settings, engine: sa.Engine
) -> None:
    invite_id = uuid.uuid4()
    with engine.begin() as conn:
        conn.execute(
            sa.insert(invites).values(
                id=invite_id,
                inviter_id=ANA,
                email="rui@example.com",
                created_at=NOW - timedelta(days=20),
                expires_at=NOW - timedelta(days=6),
                send_status="sent",
            )
        )
    expired = issue_invite_token(
        settings, invite_id=invite_id, inviter_id=ANA, expires_at=NOW - timedelta(days=6)
    )
    assert "expired" in _problem(client.get(f"/v1/invites/{expired}"), 410)["detail"]

    future = NOW + timedelta(days=1)
    forged = issue_invite_token(
        "another-secret-0123456789abcdef0123456789",  # type: ignore[arg-type]
        invite_id=invite_id,
        inviter_id=ANA,
        expires_at=future,
    )
    unknown = issue_invite_token(
        settings, invite_id=uuid.uuid4(), inviter_id=ANA, expires_at=future
    )
    api_token = issue_token(settings, ANA)  # a login token is not an invite
    for token in (forged, unknown, api_token, "garbage"):
        _problem(client.get(f"/v1/invites/{token}"), 404)


# --------------------------------------------------------------------------------------------
# Unsubscribe
# --------------------------------------------------------------------------------------------


def _unsubscribed_at(engine: sa.Engine, user_id: int) -> datetime | None:
    with engine.connect() as conn:
        value: datetime | None = conn.execute(
            sa.select(notification_preferences.c.email_unsubscribed_at).where(
                notification_preferences.c.user_id == user_id
            )
        ).scalar_one_or_none()
    return value


def test_unsubscribe_works_without_login_and_is_idempotent(
    client: TestClient, settings: Settings, engine: sa.Engine
) -> None:
    token = issue_unsubscribe_token(settings, BEN)
    first = client.get("/v1/email/unsubscribe", params={"token": token})
    assert first.status_code == 200, first.text
    assert first.json()["unsubscribed"] is True
    stored = _unsubscribed_at(engine, BEN)
    assert stored is not None
    again = client.get("/v1/email/unsubscribe", params={"token": token})
    one_click = client.post(
        "/v1/email/unsubscribe",
        params={"token": token},
        content="List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert again.json() == first.json() == one_click.json()
    assert _unsubscribed_at(engine, BEN) == stored
    assert _unsubscribed_at(engine, ANA) is None


def test_bad_unsubscribe_links(client: TestClient, settings: Settings) -> None:
    _problem(client.get("/v1/email/unsubscribe"), 422)
    _problem(client.get("/v1/email/unsubscribe", params={"token": "nope"}), 404)
    invite_like = issue_token(settings, ANA)  # another audience: refused
    _problem(client.post("/v1/email/unsubscribe", params={"token": invite_like}), 404)


# --------------------------------------------------------------------------------------------
# Weekly digest
# --------------------------------------------------------------------------------------------


@pytest.fixture
def digest_world(seeded: sa.Engine, redis_client: redis.Redis, redis_keys: RedisKeys) -> sa.Engine:
    """Ana and Ben want the digest (Ben has unsubscribed since); Cat never asked for it."""
    with seeded.begin() as conn:
        conn.execute(
            sa.insert(notification_preferences),
            [  # every row names every column: executemany takes the keys of the first
                {
                    "user_id": user,
                    "email": f"{name}@example.com",
                    "weekly_digest_email": on,
                    "email_unsubscribed_at": unsubscribed,
                }
                for user, name, on, unsubscribed in (
                    (ANA, "ana", True, None),
                    (BEN, "ben", True, NOW),
                    (CAT, "cat", False, None),
                )
            ],
        )
    ranked = {
        "rank": [1, 2],
        "event_id": ["ev-1", "ev-2"],
        "score": [1.0, 0.9],
        "reason": ["als"] * 2,
    }
    publish_run(
        engine=seeded,
        redis_client=redis_client,
        keys=redis_keys,
        run_id="run-digest",
        model="test-model",
        recommendations=pl.DataFrame({"user_id": [ANA, ANA], **ranked}),
        fallback=pl.DataFrame(ranked),
        ttl_seconds=600,
    )
    return seeded


def _materialize(
    database_url: str,
    service_urls: services.ServiceUrls,
    redis_keys: RedisKeys,
    resend: FakeResend,
    data_dir: Path,
    *,
    max_attempts: int = 3,
) -> dict[str, Any]:
    result = dg.materialize(
        [weekly_digest_email],
        resources={
            "postgres": PostgresResource(database_url=database_url),
            "redis": RedisResource(url=service_urls.redis_url, prefix=redis_keys.prefix),
            "resend": ResendResource(
                base_url=resend.base_url,
                api_key=DEFAULT_API_KEY,
                sender="Godo <digest@godo.example>",
                public_api_url="http://testserver",
                link_secret=API_SECRET,
                max_attempts=max_attempts,
                max_backoff_seconds=0.1,
            ),
            "storage": LocalStorage(data_dir=str(data_dir)),
        },
        run_config={"ops": {"weekly_digest_email": {"config": {"week": WEEK}}}},
    )
    assert result.success
    (materialization,) = result.asset_materializations_for_node("weekly_digest_email")
    return {key: value.value for key, value in materialization.metadata.items()}


def test_digest_is_sent_once_per_week_and_skips_the_unsubscribed(
    digest_world: sa.Engine,
    database_url: str,
    service_urls: services.ServiceUrls,
    redis_keys: RedisKeys,
    resend: FakeResend,
    client: TestClient,
    tmp_path: Path,
) -> None:
    first = _materialize(database_url, service_urls, redis_keys, resend, tmp_path)
    assert (first["sent"], first["failed"], first["skipped_unsubscribed"]) == (1, 0, 1)
    second = _materialize(database_url, service_urls, redis_keys, resend, tmp_path)
    assert (second["sent"], second["skipped_already_sent"], second["skipped"]) == (0, 1, 2)

    (message,) = resend.messages
    assert message.to == ["ana@example.com"]
    assert "Fado &amp; Wine" in message.html and "Fado & Wine" in message.text
    assert message.headers["idempotency-key"] == f"email:weekly_digest:{ANA}:{WEEK}"
    unsubscribe = message.email_headers["List-Unsubscribe"].strip("<>")
    assert message.email_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert unsubscribe in message.text

    with digest_world.connect() as conn:
        rows = conn.execute(sa.select(notification_log)).all()
    assert [(r.channel, r.kind, r.user_id, r.status) for r in rows] == [
        ("email", "weekly_digest", ANA, "sent")
    ]
    prom = (tmp_path / "metrics" / "notifications.prom").read_text()
    assert 'channel="email",kind="weekly_digest",outcome="sent"' in prom

    # The link in the email unsubscribes (one-click POST, as a mail client would), no login.
    path = unsubscribe.removeprefix("http://testserver")
    assert client.post(path, content="List-Unsubscribe=One-Click").status_code == 200
    assert _unsubscribed_at(digest_world, ANA) is not None
    resend.reset()
    third = _materialize(database_url, service_urls, redis_keys, resend, tmp_path)
    assert third["sent"] == 0 and resend.messages == []


def test_a_failed_digest_is_retried_by_the_next_run(
    digest_world: sa.Engine,
    database_url: str,
    service_urls: services.ServiceUrls,
    redis_keys: RedisKeys,
    resend: FakeResend,
    tmp_path: Path,
) -> None:
    resend.server_errors(1)
    failed = _materialize(database_url, service_urls, redis_keys, resend, tmp_path, max_attempts=1)
    assert (failed["sent"], failed["failed"]) == (0, 1)
    retried = _materialize(database_url, service_urls, redis_keys, resend, tmp_path)
    assert (retried["sent"], retried["failed"]) == (1, 0)
    assert len(resend.messages) == 1
    with digest_world.connect() as conn:
        (status,) = conn.execute(sa.select(notification_log.c.status)).scalars().all()
    assert status == "sent"


def _digest_row(engine: sa.Engine) -> Any:
    with engine.connect() as conn:
        return conn.execute(sa.select(notification_log)).one()


def _crash_left_claim(engine: sa.Engine, age: timedelta) -> None:
    """The row a run that died between claiming and recording leaves, `age` ago."""
    values = {"status": "failed", "detail": "sending", "created_at": datetime.now(UTC) - age}
    with engine.begin() as conn:
        updated = conn.execute(sa.update(notification_log).values(values)).rowcount
        if not updated:
            conn.execute(
                sa.insert(notification_log).values(
                    channel="email",
                    kind="weekly_digest",
                    user_id=ANA,
                    dedupe_key=f"email:weekly_digest:{ANA}:{WEEK}",
                    **values,
                )
            )


def test_a_claim_left_by_a_crash_is_never_sent_twice_nor_lost(
    digest_world: sa.Engine,
    database_url: str,
    service_urls: services.ServiceUrls,
    redis_keys: RedisKeys,
    resend: FakeResend,
    tmp_path: Path,
) -> None:
    """The claim is committed before Resend is called, so a fresh one means "being sent":
    no other run sends. An hour later the claim is retaken, and the dedupe key, sent as
    Resend's idempotency key, keeps a message Resend had already taken from going twice."""
    _crash_left_claim(digest_world, timedelta(minutes=1))
    busy = _materialize(database_url, service_urls, redis_keys, resend, tmp_path)
    assert (busy["sent"], busy["skipped_already_sent"], resend.requests) == (0, 1, 0)

    _crash_left_claim(digest_world, timedelta(hours=2))  # the crash happened before the send
    retaken = _materialize(database_url, service_urls, redis_keys, resend, tmp_path)
    assert retaken["sent"] == 1 and len(resend.messages) == 1
    assert _digest_row(digest_world).status == "sent"

    _crash_left_claim(digest_world, timedelta(hours=2))  # this time after Resend took it
    again = _materialize(database_url, service_urls, redis_keys, resend, tmp_path)
    assert again["sent"] == 1 and len(resend.messages) == 1  # recognised, not delivered
    assert resend.idempotency_keys == [f"email:weekly_digest:{ANA}:{WEEK}"] * 2

    _crash_left_claim(digest_world, timedelta(days=2))  # Resend forgot the key: at most once
    late = _materialize(database_url, service_urls, redis_keys, resend, tmp_path)
    assert (late["sent"], late["skipped_already_sent"], resend.requests) == (0, 1, 2)
    assert _digest_row(digest_world).status == "failed"


def test_a_refused_digest_is_final_and_a_failing_one_gives_up(
    digest_world: sa.Engine,
    database_url: str,
    service_urls: services.ServiceUrls,
    redis_keys: RedisKeys,
    resend: FakeResend,
    tmp_path: Path,
) -> None:
    """The email retry rule: a refusal (422) is not retried; a transient failure is, by the
    next run, at most `MAX_EMAIL_ATTEMPTS` times."""
    resend.reject_next_validation()
    refused = _materialize(database_url, service_urls, redis_keys, resend, tmp_path)
    assert (refused["failed"], refused["retried"]) == (1, 0)
    after = _materialize(database_url, service_urls, redis_keys, resend, tmp_path)
    assert (after["sent"], after["skipped_already_sent"], resend.requests) == (0, 1, 1)
    assert _digest_row(digest_world).status == "failed"

    with digest_world.begin() as conn:
        conn.execute(sa.delete(notification_log))
    resend.reset()
    for attempt in range(1, MAX_EMAIL_ATTEMPTS + 1):
        resend.server_errors(1)
        run = _materialize(database_url, service_urls, redis_keys, resend, tmp_path, max_attempts=1)
        last = attempt == MAX_EMAIL_ATTEMPTS
        assert (run["failed"], run["retried"]) == (1, 0 if last else 1)
        row = _digest_row(digest_world)
        assert (row.status, row.attempts) == ("failed" if last else "pending", attempt)
    assert "gave up after 5 attempts" in row.detail
    final = _materialize(database_url, service_urls, redis_keys, resend, tmp_path)
    assert final["sent"] == 0 and resend.messages == []
