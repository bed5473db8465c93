"""`ExpoClient` against `FakeExpo` over real HTTP: chunking, retries, Expo's error shapes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sources.expo.client import ExpoClient, ExpoError, PushMessage
from sources.expo.fake import FakeExpo


@pytest.fixture
def fake() -> Iterator[FakeExpo]:
    with FakeExpo() as server:
        yield server


def _client(fake: FakeExpo, **kwargs: object) -> ExpoClient:
    return ExpoClient(fake.base_url, sleep=lambda _: None, **kwargs)  # type: ignore[arg-type]


def _message(i: int) -> PushMessage:
    return PushMessage(to=f"ExponentPushToken[device-{i}]", title="Hi", body=f"Message {i}")


def test_send_chunks_by_100_and_keeps_ticket_order(fake: FakeExpo) -> None:
    with _client(fake) as client:
        tickets = client.send([_message(i) for i in range(250)])
    assert fake.send_batches == [100, 100, 50]
    assert [t.status for t in tickets] == ["ok"] * 250
    sent = {m.ticket_id: m.to for m in fake.sent}
    assert [sent[t.id] for t in tickets if t.id] == [
        f"ExponentPushToken[device-{i}]" for i in range(250)
    ]


def test_error_tickets_are_parsed(fake: FakeExpo) -> None:
    fake.unregistered_at_send.add("ExponentPushToken[device-1]")
    with _client(fake) as client:
        tickets = client.send([_message(0), _message(1)])
    assert tickets[0].status == "ok" and not tickets[0].device_not_registered
    assert tickets[1].status == "error"
    assert tickets[1].device_not_registered
    assert tickets[1].id is None
    assert "not a registered push notification recipient" in (tickets[1].message or "")


def test_429_is_retried_with_backoff(fake: FakeExpo) -> None:
    fake.throttle(2)
    waits: list[float] = []
    with ExpoClient(fake.base_url, sleep=waits.append) as client:
        tickets = client.send([_message(0)])
        assert client.attempts == 3
    assert tickets[0].status == "ok"
    assert len(waits) == 2
    assert [status for _, status in fake.requests] == [429, 429, 200]


def test_persistent_429_gives_up_with_expo_error(fake: FakeExpo) -> None:
    fake.throttle(100)
    with _client(fake, max_attempts=3) as client, pytest.raises(ExpoError, match="429"):
        client.send([_message(0)])
    assert len(fake.requests) == 3


def test_request_errors_are_not_retried(fake: FakeExpo) -> None:
    fake.access_token = "secret-token"
    with _client(fake) as client, pytest.raises(ExpoError, match="UNAUTHORIZED"):
        client.send([_message(0)])
    assert len(fake.requests) == 1
    with _client(fake, access_token="secret-token") as client:
        assert client.send([_message(0)])[0].status == "ok"


def test_receipts_chunk_by_1000_and_parse_errors(fake: FakeExpo) -> None:
    fake.unregistered_at_receipt.add("ExponentPushToken[device-1]")
    with _client(fake) as client:
        tickets = client.send([_message(0), _message(1)])
        ids = [t.id for t in tickets if t.id]
        receipts = client.receipts([*ids, *(f"unknown-{i}" for i in range(1500))])
    assert [len(chunk) for chunk in fake.receipt_requests] == [1000, 502]
    assert set(receipts) == set(ids)
    assert receipts[ids[0]].status == "ok"
    assert receipts[ids[1]].status == "error" and receipts[ids[1]].device_not_registered


def test_receipts_not_ready_yet_are_absent(fake: FakeExpo) -> None:
    fake.receipts_ready = False
    with _client(fake) as client:
        ticket = client.send([_message(0)])[0]
        assert client.receipts([ticket.id or ""]) == {}


def test_the_fake_refuses_more_than_100_messages(fake: FakeExpo) -> None:
    import httpx

    payload = [_message(i).to_json() for i in range(101)]
    response = httpx.post(f"{fake.base_url}/--/api/v2/push/send", json=payload)
    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == "PUSH_TOO_MANY_NOTIFICATIONS"
