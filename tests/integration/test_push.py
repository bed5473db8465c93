"""Push notifications end to end: real Postgres, the devices API over HTTP, and the push assets
materialized by Dagster against `FakeExpo` (a real HTTP server speaking Expo's JSON)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import redis
import sqlalchemy as sa
from fastapi.testclient import TestClient

from core.settings import Settings
from godo import services
from pipelines.assets.push import (
    event_reminders,
    friend_going_notifications,
    push_receipts,
)
from pipelines.resources import ExpoResource, LocalStorage, PostgresResource, RedisResource
from sources.expo.fake import FakeExpo
from store import notifications as store
from store.keys import RedisKeys
from store.live_events import Cursor
from store.schema import (
    devices,
    event_attendance,
    events,
    friendships,
    notification_log,
    swipes,
    users,
)
from tests.conftest import assert_documented_live_message
from tests.integration.conftest import auth_headers
from textfile_metrics.notifications import metrics_path

ANA, BEN, CAT = 1, 2, 3
NOW = datetime.now(UTC).replace(microsecond=0)
TOKEN_A = "ExponentPushToken[ana-phone]"
TOKEN_B = "ExpoPushToken[ben-phone]"
TOKEN_C = "ExponentPushToken[cat-phone]"


@pytest.fixture
def seeded(engine: sa.Engine) -> sa.Engine:
    with engine.begin() as conn:
        conn.execute(
            sa.insert(users),
            [
                {"id": u, "display_name": n, "metro": "lisbon"}
                for u, n in ((ANA, "Ana"), (BEN, "Ben"), (CAT, "Cat"))
            ],
        )
        conn.execute(
            sa.insert(events),
            [
                {
                    "id": event_id,
                    "name": f"Event {event_id}",
                    "metro": "lisbon",
                    "category": "music",
                    "start_utc": NOW + delta,
                    "timezone": "Europe/Lisbon",
                    "is_free": True,
                    "status": "live",
                    "is_active": True,
                }
                for event_id, delta in (
                    ("soon", timedelta(minutes=90)),
                    ("later", timedelta(days=3)),
                )
            ],
        )
    return engine


@pytest.fixture
def fake() -> Iterator[FakeExpo]:
    with FakeExpo() as server:
        yield server


@pytest.fixture
def resources(
    database_url: str,
    service_urls: services.ServiceUrls,
    redis_keys: RedisKeys,
    fake: FakeExpo,
    tmp_path: Path,
) -> dict[str, Any]:
    return {
        "postgres": PostgresResource(database_url=database_url),
        "redis": RedisResource(url=service_urls.redis_url, prefix=redis_keys.prefix),
        "expo": ExpoResource(base_url=fake.base_url),
        "storage": LocalStorage(data_dir=str(tmp_path)),
    }


def _run(asset: Any, resources: dict[str, Any], now: datetime = NOW) -> dict[str, Any]:
    result = dg.materialize(
        [asset],
        resources=resources,
        run_config={"ops": {asset.key.path[-1]: {"config": {"now": now.isoformat()}}}},
    )
    assert result.success
    (materialization,) = result.asset_materializations_for_node(asset.key.path[-1])
    return {k: v.value for k, v in materialization.metadata.items()}


def _device(engine: sa.Engine, user_id: int, token: str) -> None:
    store.register_device(engine, user_id=user_id, token=token, platform="ios")


def _log(engine: sa.Engine) -> list[Any]:
    with engine.connect() as conn:
        return conn.execute(sa.select(notification_log).order_by(notification_log.c.id)).all()


# --- the API -------------------------------------------------------------------------------


@pytest.fixture
def app_data(seeded: sa.Engine) -> None:
    """`client` starts on the `seeded` world."""


def test_register_is_idempotent_and_moves_a_token(
    client: TestClient,
    api_settings: Settings,
    seeded: sa.Engine,
    redis_client: redis.Redis,
    redis_keys: RedisKeys,
) -> None:
    body = {"expo_push_token": TOKEN_A, "platform": "ios"}
    first = client.post("/v1/me/devices", json=body, headers=auth_headers(api_settings, ANA))
    assert first.status_code == 201 and first.json()["created"] is True
    again = client.post("/v1/me/devices", json=body, headers=auth_headers(api_settings, ANA))
    assert again.status_code == 200 and again.json()["created"] is False
    assert redis_client.xlen(redis_keys.live_user_stream(ANA)) == 0
    moved = client.post("/v1/me/devices", json=body, headers=auth_headers(api_settings, BEN))
    assert moved.status_code == 201
    assert store.user_tokens(seeded, ANA) == []
    assert store.user_tokens(seeded, BEN) == [TOKEN_A]
    # The previous owner is told, on their own live stream only.
    ((entry_id, fields),) = redis_client.xrange(redis_keys.live_user_stream(ANA))
    assert fields[b"type"] == b"device_moved"
    assert json.loads(fields[b"data"]) == {"platform": "ios"}
    # As `/v1/live` would send it: as docs/asyncapi.yaml documents it.
    position = Cursor(user=entry_id.decode()).encode()
    assert_documented_live_message(
        {"id": position, "type": "device_moved", "data": json.loads(fields[b"data"])}
    )
    assert redis_client.xlen(redis_keys.live_user_stream(BEN)) == 0


def test_a_malformed_token_is_a_422_naming_the_field(
    client: TestClient, api_settings: Settings
) -> None:
    response = client.post(
        "/v1/me/devices",
        json={"expo_push_token": "not-a-token", "platform": "ios"},
        headers=auth_headers(api_settings, ANA),
    )
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "body.expo_push_token" in response.json()["detail"]


def test_only_the_owner_can_delete_a_token(
    client: TestClient, api_settings: Settings, seeded: sa.Engine
) -> None:
    _device(seeded, ANA, TOKEN_A)
    path = f"/v1/me/devices/{TOKEN_A.replace('[', '%5B').replace(']', '%5D')}"
    stranger = client.delete(path, headers=auth_headers(api_settings, BEN))
    assert stranger.status_code == 204
    assert store.user_tokens(seeded, ANA) == [TOKEN_A]
    owner = client.delete(path, headers=auth_headers(api_settings, ANA))
    assert owner.status_code == 204
    assert store.user_tokens(seeded, ANA) == []


def test_preferences_are_validated_and_stored(
    client: TestClient, api_settings: Settings, seeded: sa.Engine
) -> None:
    body = {
        "reminder_lead_minutes": 30,
        "quiet_start": "22:00",
        "quiet_end": "07:00",
        "timezone": "Europe/Lisbon",
    }
    response = client.put(
        "/v1/me/notification-preferences", json=body, headers=auth_headers(api_settings, ANA)
    )
    assert response.status_code == 200
    assert store.get_preferences(seeded, ANA) == store.Preferences(
        30, time(22, 0), time(7, 0), "Europe/Lisbon"
    )
    bad = client.put(
        "/v1/me/notification-preferences",
        json={**body, "timezone": "Mars/Olympus"},
        headers=auth_headers(api_settings, ANA),
    )
    assert bad.status_code == 422 and "timezone" in bad.json()["detail"]
    # A time with a UTC offset, or a bare number, is not a time on the user's clock.
    for field, value in (("quiet_start", "22:00:00+23:20"), ("quiet_end", 3600)):
        wrong = client.put(
            "/v1/me/notification-preferences",
            json={**body, field: value},
            headers=auth_headers(api_settings, ANA),
        )
        assert wrong.status_code == 422 and field in wrong.json()["detail"]


# --- assets --------------------------------------------------------------------------------


def test_reminders_are_sent_once_even_when_run_twice(
    seeded: sa.Engine, resources: dict[str, Any], fake: FakeExpo, tmp_path: Path
) -> None:
    _device(seeded, ANA, TOKEN_A)
    _device(seeded, CAT, TOKEN_C)  # going to nothing soon: no reminder
    with seeded.begin() as conn:
        conn.execute(
            sa.insert(event_attendance),
            [
                {"user_id": ANA, "event_id": "soon", "status": "going"},
                {"user_id": ANA, "event_id": "later", "status": "going"},  # beyond 120 min
                {"user_id": BEN, "event_id": "soon", "status": "going"},  # no device
                {"user_id": CAT, "event_id": "soon", "status": "interested"},
            ],
        )
    first = _run(event_reminders, resources)
    assert (first["sent"], first["failed"], first["skipped"]) == (1, 0, 0)
    second = _run(event_reminders, resources)
    assert (second["sent"], second["failed"], second["skipped"]) == (0, 0, 0)
    (message,) = fake.sent
    assert message.to == TOKEN_A and message.title == "Event soon"
    assert message.data == {"type": "event_reminder", "event_id": "soon"}
    (row,) = _log(seeded)
    assert row.status == "sent" and row.expo_ticket_id == message.ticket_id
    text = metrics_path(tmp_path).read_text()
    assert (
        'godo_notifications_total{channel="push",kind="event_reminder",outcome="sent"} 1.0' in text
    )


def test_quiet_hours_defer_until_the_window_ends(
    seeded: sa.Engine, resources: dict[str, Any], fake: FakeExpo
) -> None:
    _device(seeded, ANA, TOKEN_A)
    with seeded.begin() as conn:
        conn.execute(
            sa.insert(event_attendance), [{"user_id": ANA, "event_id": "soon", "status": "going"}]
        )
    start = (NOW - timedelta(minutes=5)).time().replace(microsecond=0)
    end = (NOW + timedelta(minutes=30)).time().replace(microsecond=0)
    store.set_preferences(
        seeded,
        user_id=ANA,
        preferences=store.Preferences(120, start, end, "UTC"),
    )
    deferred = _run(event_reminders, resources)
    assert (deferred["sent"], deferred["skipped"]) == (0, 1)
    assert fake.sent == []
    (row,) = _log(seeded)
    assert row.status == "skipped" and "quiet hours" in row.detail
    after = _run(event_reminders, resources, now=NOW + timedelta(minutes=31))
    assert (after["sent"], after["skipped"]) == (1, 0)
    assert len(fake.sent) == 1
    assert [r.status for r in _log(seeded)] == ["sent"]


def _friends(conn: sa.Connection, a: int, b: int) -> None:
    conn.execute(
        sa.insert(friendships), [{"user_id": a, "friend_id": b}, {"user_id": b, "friend_id": a}]
    )


def _like(conn: sa.Connection, user_id: int, event_id: str) -> None:
    import uuid

    conn.execute(
        sa.insert(swipes),
        [{"id": uuid.uuid4(), "user_id": user_id, "event_id": event_id, "action": "like"}],
    )


def test_friend_going_respects_visibility_and_is_sent_once(
    seeded: sa.Engine, resources: dict[str, Any], fake: FakeExpo
) -> None:
    _device(seeded, ANA, TOKEN_A)
    with seeded.begin() as conn:
        _friends(conn, ANA, BEN)
        _friends(conn, ANA, CAT)
        _like(conn, ANA, "later")
        _like(conn, ANA, "soon")
        conn.execute(
            sa.insert(event_attendance),
            [
                {"user_id": BEN, "event_id": "later", "status": "going", "visibility": "friends"},
                {"user_id": CAT, "event_id": "later", "status": "going", "visibility": "private"},
                {"user_id": CAT, "event_id": "soon", "status": "going", "visibility": "private"},
            ],
        )
    first = _run(friend_going_notifications, resources)
    assert first["sent"] == 1
    (message,) = fake.sent
    assert message.data == {"type": "friend_going", "event_id": "later", "friend_id": BEN}
    assert "Ben" in (message.title or "")
    assert _run(friend_going_notifications, resources)["sent"] == 0
    assert len(fake.sent) == 1
    assert all(r.dedupe_key.count(f":{CAT}:") == 0 for r in _log(seeded))


def test_a_one_sided_friendship_is_not_enough(
    seeded: sa.Engine, resources: dict[str, Any], fake: FakeExpo
) -> None:
    _device(seeded, ANA, TOKEN_A)
    with seeded.begin() as conn:
        conn.execute(sa.insert(friendships), [{"user_id": ANA, "friend_id": BEN}])
        _like(conn, ANA, "later")
        conn.execute(
            sa.insert(event_attendance),
            [{"user_id": BEN, "event_id": "later", "status": "going", "visibility": "public"}],
        )
    assert _run(friend_going_notifications, resources)["sent"] == 0
    assert fake.sent == []


def test_device_not_registered_at_send_or_receipt_removes_the_device(
    seeded: sa.Engine, resources: dict[str, Any], fake: FakeExpo
) -> None:
    _device(seeded, ANA, TOKEN_A)
    _device(seeded, BEN, TOKEN_B)
    _device(seeded, CAT, TOKEN_C)
    with seeded.begin() as conn:
        conn.execute(
            sa.insert(event_attendance),
            [{"user_id": u, "event_id": "soon", "status": "going"} for u in (ANA, BEN, CAT)],
        )
    fake.unregistered_at_send.add(TOKEN_C)
    fake.unregistered_at_receipt.add(TOKEN_B)
    sent = _run(event_reminders, resources)
    assert (sent["sent"], sent["failed"], sent["devices_removed"]) == (2, 1, 1)
    assert store.user_tokens(seeded, CAT) == []

    too_early = _run(push_receipts, resources, now=NOW + timedelta(minutes=5))
    assert too_early["tickets_checked"] == 0
    checked = _run(push_receipts, resources, now=datetime.now(UTC) + timedelta(minutes=16))
    assert (checked["receipts_ok"], checked["receipts_error"], checked["devices_removed"]) == (
        1,
        1,
        1,
    )
    assert store.user_tokens(seeded, BEN) == []
    assert store.user_tokens(seeded, ANA) == [TOKEN_A]
    by_user = {r.user_id: r for r in _log(seeded)}
    assert by_user[BEN].receipt_status == "error" and "DeviceNotRegistered" in by_user[BEN].detail
    assert by_user[ANA].receipt_status == "ok"
    again = _run(push_receipts, resources, now=datetime.now(UTC) + timedelta(minutes=16))
    assert again["tickets_checked"] == 0
    with seeded.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(devices)).scalar_one() == 1


# --- retries -------------------------------------------------------------------------------


def _row(engine: sa.Engine) -> Any:
    (row,) = _log(engine)
    return row


def _receipts_due(sent_at: datetime) -> datetime:
    """When the receipts of pushes sent at `sent_at` are checked: 16 minutes later, and never
    before the log rows' own `created_at` (the server's clock, which runs on while a long
    session of tests has kept the module's NOW fixed) is 15 minutes old."""
    return max(sent_at, datetime.now(UTC)) + timedelta(minutes=16)


def test_a_retryable_receipt_error_is_sent_again_with_backoff_until_the_bound(
    seeded: sa.Engine, resources: dict[str, Any], fake: FakeExpo
) -> None:
    """`MessageRateExceeded` in a receipt used to be recorded and never retried."""
    _device(seeded, ANA, TOKEN_A)
    store.set_preferences(seeded, user_id=ANA, preferences=store.Preferences(5 * 24 * 60))
    with seeded.begin() as conn:
        conn.execute(
            sa.insert(event_attendance), [{"user_id": ANA, "event_id": "later", "status": "going"}]
        )
    fake.receipt_errors[TOKEN_A] = "MessageRateExceeded"
    at = NOW
    for attempt in range(1, store.MAX_PUSH_ATTEMPTS + 1):
        assert _run(event_reminders, resources, now=at)["sent"] == 1
        checked = _receipts_due(at)
        receipts = _run(push_receipts, resources, now=checked)
        last = attempt == store.MAX_PUSH_ATTEMPTS
        assert (receipts["requeued"], receipts["gave_up"]) == ((0, 1) if last else (1, 0))
        row = _row(seeded)
        assert row.attempts == attempt
        if last:
            break
        assert row.status == "pending" and row.detail.startswith("MessageRateExceeded")
        due = checked + store.retry_delay(attempt)
        assert row.next_attempt_at == due
        # Not before its time...
        assert _run(event_reminders, resources, now=due - timedelta(minutes=1))["sent"] == 0
        at = due
    row = _row(seeded)
    assert row.status == "failed" and "gave up after 5 attempts" in row.detail
    assert len(fake.sent) == store.MAX_PUSH_ATTEMPTS
    assert _run(event_reminders, resources, now=at + timedelta(hours=12))["sent"] == 0


def test_a_provider_error_goes_out_again_once_expo_recovers(
    seeded: sa.Engine, resources: dict[str, Any], fake: FakeExpo
) -> None:
    _device(seeded, ANA, TOKEN_A)
    with seeded.begin() as conn:
        conn.execute(
            sa.insert(event_attendance), [{"user_id": ANA, "event_id": "soon", "status": "going"}]
        )
    fake.receipt_errors[TOKEN_A] = "ProviderError"
    _run(event_reminders, resources)
    checked = _receipts_due(NOW)
    assert _run(push_receipts, resources, now=checked)["requeued"] == 1
    del fake.receipt_errors[TOKEN_A]
    again = checked + store.retry_delay(1)
    assert _run(event_reminders, resources, now=again)["sent"] == 1
    ok = _run(push_receipts, resources, now=_receipts_due(again))
    assert (ok["receipts_ok"], ok["requeued"]) == (1, 0)
    row = _row(seeded)
    assert (row.status, row.receipt_status, row.attempts) == ("sent", "ok", 2)
    assert [m.to for m in fake.sent] == [TOKEN_A, TOKEN_A]


def test_notifications_claimed_before_an_outage_are_released_not_lost(
    seeded: sa.Engine, resources: dict[str, Any], fake: FakeExpo
) -> None:
    """An outage outlasting the client's retries used to leave claimed rows `failed`."""
    _device(seeded, ANA, TOKEN_A)
    _device(seeded, BEN, TOKEN_B)
    with seeded.begin() as conn:
        conn.execute(
            sa.insert(event_attendance),
            [
                {"user_id": ANA, "event_id": "soon", "status": "going"},
                {"user_id": BEN, "event_id": "soon", "status": "going"},
            ],
        )
    impatient = resources | {
        "expo": ExpoResource(base_url=fake.base_url, max_attempts=2, max_backoff_seconds=0.01)
    }
    fake.outage = True
    failed = dg.materialize(
        [event_reminders],
        resources=impatient,
        run_config={"ops": {"event_reminders": {"config": {"now": NOW.isoformat()}}}},
        raise_on_error=False,
    )
    assert not failed.success
    rows = _log(seeded)
    assert [r.status for r in rows] == ["pending", "pending"]
    assert all(r.detail.startswith("expo unavailable") and r.attempts == 0 for r in rows)
    assert fake.sent == []
    fake.outage = False
    recovered = _run(event_reminders, impatient, now=NOW + timedelta(minutes=5))
    assert recovered["sent"] == 2
    assert sorted(m.to for m in fake.sent) == sorted([TOKEN_A, TOKEN_B])
    assert [r.status for r in _log(seeded)] == ["sent", "sent"]


def test_a_release_is_due_at_the_runs_clock_so_a_backfill_can_claim_it_again(
    seeded: sa.Engine,
) -> None:
    """Released rows used to be due at the database's clock: a run pinned to an earlier `now`
    (a backfill, a test) could never claim them back."""
    then = NOW - timedelta(days=3)
    entry = store.LogEntry(dedupe_key="backfill:1", kind="event_reminder", user_id=ANA)
    assert store.claim(seeded, [entry], now=then) == {"backfill:1"}
    assert store.release(seeded, ["backfill:1"], "expo unavailable: test", now=then) == 1
    assert store.claim(seeded, [entry], now=then + timedelta(minutes=5)) == {"backfill:1"}
