"""Impressions end to end: the feed records what it serves, the pipeline moves it into daily
Postgres partitions exactly once, and swipes and RSVPs store the ids that verify.

Real Postgres and Redis throughout; Redis "down" is a URL pointing at a closed port, and a
"crash before the acknowledgement" is the move committed without its acknowledgement.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import polars as pl
import pytest
import redis
import sqlalchemy as sa
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from core.impression_ids import mint_page, page_nonce, read_impression, served_ms, verify_impression
from core.settings import Settings
from godo import services
from pipelines.assets.impressions import impression_log
from pipelines.resources import ImpressionRetentionResource, PostgresResource, RedisResource
from store.db import copy_frame
from store.feed import read_feed
from store.impressions import (
    acknowledge,
    flush_impressions,
    move_batch,
    partition_days,
    partition_name,
    read_batch,
    record_impressions,
    retention_start,
)
from store.keys import RedisKeys
from store.publish import publish_run
from tests.integration.conftest import app_client, auth_headers

RUN_ID = "run-impressions-1"
CLOSED_REDIS = "redis://127.0.0.1:1/0"
EVENTS = ["ev-1", "ev-2", "ev-3", "ev-4", "ev-5"]
LISTS = {1: ["ev-3", "ev-1", "ev-4"], 2: ["ev-2", "ev-5"]}
RETENTION = 90


def _seed(engine: sa.Engine) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    users = pl.DataFrame(
        {"id": list(LISTS), "display_name": ["one", "two"], "metro": ["lisbon", "lisbon"]}
    )
    events = pl.DataFrame(
        {
            "id": EVENTS,
            "name": [f"Event {e}" for e in EVENTS],
            "category": ["music"] * len(EVENTS),
            "start_utc": [now + timedelta(days=i + 1) for i in range(len(EVENTS))],
            "is_free": [True] * len(EVENTS),
            "metro": ["lisbon"] * len(EVENTS),
            "status": ["live"] * len(EVENTS),
            "is_active": [True] * len(EVENTS),
        },
        schema_overrides={"start_utc": pl.Datetime("us", "UTC")},
    )
    with engine.begin() as conn:
        copy_frame(conn, "users", users)
        copy_frame(conn, "events", events)


def _ranked(event_ids: list[str]) -> dict[str, list[Any]]:
    return {
        "rank": list(range(1, len(event_ids) + 1)),
        "event_id": event_ids,
        "score": [1.0 - 0.1 * i for i in range(len(event_ids))],
        "reason": ["als"] * len(event_ids),
    }


@pytest.fixture
def published(engine: sa.Engine, redis_client: redis.Redis, redis_keys: RedisKeys) -> str:
    _seed(engine)
    publish_run(
        engine=engine,
        redis_client=redis_client,
        keys=redis_keys,
        run_id=RUN_ID,
        model="test-model",
        recommendations=pl.concat(
            pl.DataFrame({"user_id": [user] * len(ids), **_ranked(ids)})
            for user, ids in LISTS.items()
        ),
        fallback=pl.DataFrame(_ranked(["ev-5"])),
        ttl_seconds=600,
    )
    return RUN_ID


@pytest.fixture
def app_data(published: str) -> None:
    """`client` starts on the `published` world."""


def _feed(client: TestClient, settings: Settings, user_id: int) -> list[dict[str, Any]]:
    response = client.get("/v1/feed", headers=auth_headers(settings, user_id))
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def _metric(client: TestClient, name: str, **labels: str) -> float:
    response = client.get("/metrics")
    assert response.status_code == 200
    values = [
        sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(values) == 1, (name, labels, values)
    return values[0]


def _flush(engine: sa.Engine, redis_client: redis.Redis, keys: RedisKeys) -> Any:
    return flush_impressions(
        engine=engine,
        redis_client=redis_client,
        keys=keys,
        now=datetime.now(UTC),
        retention_days=RETENTION,
    )


def _rows(engine: sa.Engine) -> list[Any]:
    with engine.connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT impression_id, served_at, user_id, event_id, rank, run_id, "
                "model_version, experiment, arm, propensity, tableoid::regclass::text AS part "
                "FROM impressions ORDER BY user_id, served_at, rank"
            )
        ).all()


# --- recording -------------------------------------------------------------------------------


def test_feed_items_carry_ids_that_verify_and_match_the_recorded_impressions(
    client: TestClient,
    settings: Settings,
    engine: sa.Engine,
    redis_client: redis.Redis,
    redis_keys: RedisKeys,
) -> None:
    items = _feed(client, settings, 1)
    assert [i["event_id"] for i in items] == LISTS[1]
    now = datetime.now(UTC)
    verified = [
        verify_impression(
            settings.impression_key,
            item["impression_id"],
            user_id=1,
            event_id=item["event_id"],
            now=now,
            max_age=timedelta(seconds=settings.impression_max_age_seconds),
        )
        for item in items
    ]
    assert len({v.impression_id for v in verified}) == len(items)
    assert redis_client.xlen(redis_keys.impressions()) == 1  # one entry per page
    assert _metric(client, "godo_impressions_total", outcome="recorded") == len(items)

    result = _flush(engine, redis_client, redis_keys)
    assert (result.pages, result.inserted, result.duplicates) == (1, len(items), 0)
    rows = _rows(engine)
    assert [r.impression_id for r in rows] == [v.impression_id for v in verified]
    assert {r.served_at for r in rows} == {verified[0].served_at}
    assert [(r.user_id, r.event_id, r.rank) for r in rows] == [
        (1, e, rank) for rank, e in enumerate(LISTS[1], start=1)
    ]
    assert {(r.run_id, r.model_version, r.experiment, r.arm, r.propensity) for r in rows} == {
        (RUN_ID, None, None, None, 1.0)
    }
    assert {r.part for r in rows} == {partition_name(verified[0].served_at.date())}
    assert redis_client.xlen(redis_keys.impressions()) == 0


def test_a_304_records_nothing_and_the_ids_do_not_change_the_etag(
    client: TestClient, settings: Settings, redis_client: redis.Redis, redis_keys: RedisKeys
) -> None:
    first = client.get("/v1/feed", headers=auth_headers(settings, 1))
    second = client.get("/v1/feed", headers=auth_headers(settings, 1))
    assert first.headers["etag"] == second.headers["etag"]
    ids = [[i["impression_id"] for i in r.json()["items"]] for r in (first, second)]
    assert set(ids[0]).isdisjoint(ids[1])  # every showing is an impression of its own
    same = client.get(
        "/v1/feed", headers={**auth_headers(settings, 1), "If-None-Match": first.headers["etag"]}
    )
    assert same.status_code == 304
    assert redis_client.xlen(redis_keys.impressions()) == 2


def test_with_recording_off_items_carry_null_and_nothing_is_appended(
    settings: Settings, published: str, redis_client: redis.Redis, redis_keys: RedisKeys
) -> None:
    off = settings.model_copy(update={"record_impressions": False})
    with app_client(off) as client:
        items = _feed(client, off, 1)
    assert [i["impression_id"] for i in items] == [None] * len(LISTS[1])
    assert redis_client.xlen(redis_keys.impressions()) == 0


def test_with_redis_down_the_feed_is_served_and_the_lost_impressions_counted(
    settings: Settings, published: str
) -> None:
    down = settings.model_copy(update={"redis_url": CLOSED_REDIS})
    with app_client(down) as client:
        response = client.get("/v1/feed", headers=auth_headers(settings, 1))
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["source"] == "postgres"
        assert [i["event_id"] for i in body["items"]] == LISTS[1]
        assert [i["impression_id"] for i in body["items"]] == [None] * len(LISTS[1])
        assert _metric(client, "godo_impressions_total", outcome="lost") == len(LISTS[1])
        assert _metric(client, "godo_impressions_total", outcome="recorded") == 0


def test_a_restarted_api_loses_no_impression(
    settings: Settings,
    published: str,
    engine: sa.Engine,
    redis_client: redis.Redis,
    redis_keys: RedisKeys,
) -> None:
    served: list[str] = []
    with app_client(settings) as before:
        for user in (1, 2, 1):
            served += [i["impression_id"] for i in _feed(before, settings, user)]
    with app_client(settings) as after:  # a new process's app, same stores
        for user in (2, 1):
            served += [i["impression_id"] for i in _feed(after, settings, user)]
    result = _flush(engine, redis_client, redis_keys)
    expected = {read_impression(settings.impression_key, token).impression_id for token in served}
    assert result.inserted == len(served) == len(expected) == 3 * 3 + 2 * 2
    assert {r.impression_id for r in _rows(engine)} == expected


# --- moving into Postgres ----------------------------------------------------------------------


def test_flushing_twice_or_after_a_crash_before_the_ack_stores_each_impression_once(
    client: TestClient,
    settings: Settings,
    engine: sa.Engine,
    redis_client: redis.Redis,
    redis_keys: RedisKeys,
) -> None:
    _feed(client, settings, 1)
    _feed(client, settings, 2)
    # The move commits, then the process dies before acknowledging: the entries stay.
    batch = read_batch(redis_client, redis_keys, count=100)
    moved = move_batch(engine, batch, keep_from=retention_start(datetime.now(UTC), RETENTION))
    assert moved.inserted == 5
    assert redis_client.xlen(redis_keys.impressions()) == 2
    _feed(client, settings, 1)  # served meanwhile
    again = _flush(engine, redis_client, redis_keys)
    assert (again.pages, again.inserted, again.duplicates) == (3, 3, 5)
    once_more = _flush(engine, redis_client, redis_keys)
    assert (once_more.pages, once_more.inserted) == (0, 0)
    rows = _rows(engine)
    assert len(rows) == len({r.impression_id for r in rows}) == 8
    assert acknowledge(redis_client, redis_keys, batch.entry_ids) == 0  # already gone


def test_rows_land_in_the_partition_of_their_utc_day(
    published: str,
    settings: Settings,
    engine: sa.Engine,
    redis_client: redis.Redis,
    redis_keys: RedisKeys,
) -> None:
    feed = read_feed(engine=engine, redis_client=redis_client, keys=redis_keys, user_id=2)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    last_night = today - timedelta(milliseconds=1)
    for moment in (last_night, today):
        page = record_impressions(
            redis_client=redis_client,
            keys=redis_keys,
            key=settings.impression_key,
            feed=feed,
            now=moment,
        )
        assert page.ids is not None and page.lost == 0
    result = _flush(engine, redis_client, redis_keys)
    assert result.inserted == 4
    parts = {(r.served_at, r.part) for r in _rows(engine)}
    assert parts == {
        (last_night, partition_name(last_night.date())),
        (today, partition_name(today.date())),
    }


def test_a_malformed_entry_is_skipped_without_blocking_the_log(
    client: TestClient,
    settings: Settings,
    engine: sa.Engine,
    redis_client: redis.Redis,
    redis_keys: RedisKeys,
) -> None:
    redis_client.xadd(redis_keys.impressions(), {"p": b"{not json"})
    _feed(client, settings, 2)
    result = _flush(engine, redis_client, redis_keys)
    assert (result.pages, result.malformed, result.inserted) == (2, 1, 2)
    assert redis_client.xlen(redis_keys.impressions()) == 0


def _materialize(
    database_url: str, redis_url: str, keys: RedisKeys, now: datetime, retention_days: int
) -> dict[str, Any]:
    result = dg.materialize(
        [impression_log],
        resources={
            "postgres": PostgresResource(database_url=database_url),
            "redis": RedisResource(url=redis_url, prefix=keys.prefix),
            "impression_retention": ImpressionRetentionResource(
                retention_days=retention_days, partitions_ahead_days=2
            ),
        },
        run_config={"ops": {"impression_log": {"config": {"now": now.isoformat()}}}},
    )
    assert result.success
    (materialization,) = result.asset_materializations_for_node("impression_log")
    return {k: v.value for k, v in materialization.metadata.items()}


def test_the_asset_creates_days_ahead_drops_days_past_the_retention_and_skips_old_rows(
    published: str,
    settings: Settings,
    database_url: str,
    service_urls: services.ServiceUrls,
    engine: sa.Engine,
    redis_client: redis.Redis,
    redis_keys: RedisKeys,
) -> None:
    # A clock of its own, years ahead, so other tests' partitions are not in the way.
    now = datetime(2031, 5, 20, 12, 0, tzinfo=UTC)
    day = now.date()
    feed = read_feed(engine=engine, redis_client=redis_client, keys=redis_keys, user_id=1)
    for age in (0, 2, 3):  # today, and a page from before the 2-day retention (age 3)
        record_impressions(
            redis_client=redis_client,
            keys=redis_keys,
            key=settings.impression_key,
            feed=feed,
            now=now - timedelta(days=age),
        )
    first = _materialize(database_url, service_urls.redis_url, redis_keys, now, 2)
    assert first["pages"] == 3 and first["dagster/row_count"] == 6 and first["expired"] == 3
    with engine.connect() as conn:
        days = set(partition_days(conn))
    assert {day, day + timedelta(days=1), day + timedelta(days=2), day - timedelta(days=2)} <= days
    assert day - timedelta(days=3) not in days  # the expired page did not revive its day

    # Two days later, with the retention at 1 day, the first page's day and older go.
    later = now + timedelta(days=2)
    second = _materialize(database_url, service_urls.redis_url, redis_keys, later, 1)
    with engine.connect() as conn:
        days = set(partition_days(conn))
    assert partition_name(day) in second["partitions_dropped"]
    assert not {d for d in days if d < later.date() - timedelta(days=1)}
    assert later.date() + timedelta(days=2) in days
    with engine.connect() as conn:
        kept = conn.execute(
            sa.text("SELECT count(*) FROM impressions WHERE served_at >= :t"),
            {"t": now - timedelta(days=3)},
        ).scalar_one()
    assert kept == 0  # both moved days were past the new retention


# --- attribution -----------------------------------------------------------------------------


def _tamper(token: str) -> str:
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[-1] ^= 1
    return base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")


def _minted(settings: Settings, user_id: int, event_id: str, served_at: datetime) -> str:
    (token,) = mint_page(
        settings.impression_key,
        user_id=user_id,
        event_ids=[event_id],
        served_at_ms=served_ms(served_at),
        nonce=page_nonce(),
    )
    return token.decode()


def _swipe(event_id: str, client_id: str, impression_id: str | None) -> dict[str, Any]:
    return {
        "client_id": client_id,
        "event_id": event_id,
        "direction": "like",
        "ts": datetime.now(UTC).isoformat(),
        "impression_id": impression_id,
    }


def test_swipes_store_valid_ids_and_ignore_and_count_the_rest(
    client: TestClient, settings: Settings, engine: sa.Engine
) -> None:
    ids = {i["event_id"]: i["impression_id"] for i in _feed(client, settings, 1)}
    other_users = {i["event_id"]: i["impression_id"] for i in _feed(client, settings, 2)}
    refused = [_swipe("ev-3", "valid", ids["ev-3"]), _swipe("no-such-event", "x", None)]
    response = client.post(
        "/v1/swipes", json={"swipes": refused}, headers=auth_headers(settings, 1)
    )
    assert response.status_code == 422  # nothing stored, so nothing counted either
    old = datetime.now(UTC) - timedelta(seconds=settings.impression_max_age_seconds + 60)
    batch = [
        _swipe("ev-3", "valid", ids["ev-3"]),
        _swipe("ev-1", "forged", _tamper(ids["ev-1"])),
        _swipe("ev-2", "foreign", other_users["ev-2"]),  # user 2's card, user 1's swipe
        _swipe("ev-4", "other-event", ids["ev-1"]),  # the id of another card
        _swipe("ev-5", "expired", _minted(settings, 1, "ev-5", old)),
        _swipe("ev-1", "malformed", "not-an-impression-id"),
        _swipe("ev-4", "none", None),
    ]
    response = client.post("/v1/swipes", json={"swipes": batch}, headers=auth_headers(settings, 1))
    assert response.status_code == 200, response.text
    assert response.json()["stored"] == len(batch)
    with engine.connect() as conn:
        stored = dict(
            conn.execute(
                sa.text("SELECT client_id, impression_id FROM swipes WHERE user_id = 1")
            ).all()
        )
    valid = read_impression(settings.impression_key, ids["ev-3"]).impression_id
    assert stored == {
        "valid": valid,
        "forged": None,
        "foreign": None,
        "other-event": None,
        "expired": None,
        "malformed": None,
        "none": None,
    }
    for outcome in ("attributed", "forged", "foreign_user", "other_event", "expired", "malformed"):
        assert (
            _metric(client, "godo_impression_attributions_total", action="swipe", outcome=outcome)
            == 1
        ), outcome


def test_an_rsvp_stores_a_valid_id_keeps_it_and_ignores_a_foreign_one(
    client: TestClient, settings: Settings, engine: sa.Engine
) -> None:
    mine = {i["event_id"]: i["impression_id"] for i in _feed(client, settings, 1)}
    theirs = {i["event_id"]: i["impression_id"] for i in _feed(client, settings, 2)}

    def put(body: dict[str, Any]) -> Any:
        response = client.put(
            "/v1/events/ev-1/attendance", json=body, headers=auth_headers(settings, 1)
        )
        assert response.status_code == 200, response.text
        with engine.connect() as conn:
            return conn.execute(
                sa.text(
                    "SELECT status, impression_id FROM event_attendance "
                    "WHERE user_id = 1 AND event_id = 'ev-1'"
                )
            ).one()

    foreign = _minted(settings, 2, "ev-1", datetime.now(UTC))
    assert tuple(put({"status": "interested", "impression_id": foreign})) == ("interested", None)
    valid = read_impression(settings.impression_key, mine["ev-1"]).impression_id
    assert tuple(put({"status": "going", "impression_id": mine["ev-1"]})) == ("going", valid)
    # A later change without an id (from the calendar), or with another user's, keeps it.
    assert tuple(put({"status": "going", "notes": "with Ana"})) == ("going", valid)
    assert tuple(put({"status": "going", "impression_id": theirs["ev-2"]})) == ("going", valid)
    assert (
        _metric(client, "godo_impression_attributions_total", action="rsvp", outcome="foreign_user")
        == 2
    )
    assert (
        _metric(client, "godo_impression_attributions_total", action="rsvp", outcome="attributed")
        == 1
    )
