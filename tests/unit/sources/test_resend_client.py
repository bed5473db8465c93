"""The Resend client against the local fake: retries, idempotency, errors, rendering.

The fake speaks Resend's JSON over real HTTP, so these exercise the very client production
runs; only `sleep` is replaced, to record the waits instead of taking them.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from sources.resend.client import Email, ResendClient, ResendError, ResendUnavailableError
from sources.resend.fake import DEFAULT_API_KEY, FakeResend
from sources.resend.messages import DigestEvent, invitation, weekly_digest

SENDER = "Godo <no-reply@godo.example>"


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def client(resend: FakeResend, sleeps: list[float]) -> Iterator[ResendClient]:
    with ResendClient(
        api_key=DEFAULT_API_KEY, base_url=resend.base_url, sleep=sleeps.append, max_attempts=4
    ) as c:
        yield c


def _email(to: str = "rui@example.com") -> Email:
    return Email(sender=SENDER, to=[to], subject="Hi", html="<p>Hi</p>", text="Hi")


def test_sends_and_returns_the_id(client: ResendClient, resend: FakeResend) -> None:
    message_id = client.send(_email(), idempotency_key="k-1")
    assert [m.id for m in resend.messages] == [message_id]
    sent = resend.messages[0]
    assert sent.headers["authorization"] == f"Bearer {DEFAULT_API_KEY}"
    assert sent.headers["idempotency-key"] == "k-1"
    assert sent.body == {
        "from": SENDER,
        "to": ["rui@example.com"],
        "subject": "Hi",
        "html": "<p>Hi</p>",
        "text": "Hi",
    }


def test_retries_a_429_burst_honouring_retry_after_with_one_key(
    client: ResendClient, resend: FakeResend, sleeps: list[float]
) -> None:
    resend.rate_limit_burst(2, retry_after=3)
    client.send(_email(), idempotency_key="digest-1")
    assert sleeps == [3.0, 3.0]  # what the server asked for, not our own backoff
    assert resend.requests == 3
    assert resend.idempotency_keys == ["digest-1"] * 3
    assert len(resend.messages) == 1


def test_retries_5xx_and_keeps_a_derived_key_stable(
    client: ResendClient, resend: FakeResend, sleeps: list[float]
) -> None:
    resend.server_errors(2)
    client.send(_email())
    assert len(sleeps) == 2 and all(0 < s <= 30 for s in sleeps)
    keys = set(resend.idempotency_keys)
    assert len(keys) == 1 and next(iter(keys)) == _email().default_idempotency_key()


def test_a_resend_with_the_same_key_is_not_delivered_twice(
    client: ResendClient, resend: FakeResend
) -> None:
    first = client.send(_email(), idempotency_key="same")
    second = client.send(_email(), idempotency_key="same")
    assert first == second
    assert len(resend.messages) == 1
    with pytest.raises(ResendError) as error:  # same key, other payload: refused, not retried
        client.send(_email("other@example.com"), idempotency_key="same")
    assert (error.value.status, error.value.name) == (409, "invalid_idempotent_request")


def test_gives_up_after_max_attempts(
    client: ResendClient, resend: FakeResend, sleeps: list[float]
) -> None:
    resend.server_errors(10)
    with pytest.raises(ResendUnavailableError) as error:
        client.send(_email(), idempotency_key="k")
    assert resend.requests == 4 and len(sleeps) == 3
    assert error.value.status == 500
    assert resend.messages == []


def test_a_long_retry_after_is_not_slept_through(
    client: ResendClient, resend: FakeResend, sleeps: list[float]
) -> None:
    resend.rate_limit_burst(1, retry_after=3600)  # e.g. a daily quota: come back tomorrow
    with pytest.raises(ResendUnavailableError):
        client.send(_email(), idempotency_key="k")
    assert sleeps == [] and resend.requests == 1


def test_validation_errors_are_parsed_and_not_retried(
    client: ResendClient, resend: FakeResend
) -> None:
    with pytest.raises(ResendError) as error:
        client.send(_email("not an address"), idempotency_key="bad")
    assert error.value.status == 422
    assert error.value.name == "validation_error"
    assert "`to`" in error.value.message
    assert resend.requests == 1
    resend.reject_next_validation(1, "Invalid `from` field.")
    with pytest.raises(ResendError, match="Invalid `from` field"):
        client.send(_email(), idempotency_key="ok")


def test_a_wrong_key_is_refused(resend: FakeResend) -> None:
    with ResendClient(api_key="re_wrong", base_url=resend.base_url, sleep=lambda _: None) as c:
        with pytest.raises(ResendError) as error:
            c.send(_email())
    assert (error.value.status, error.value.name) == (403, "invalid_api_key")
    assert "re_wrong" not in str(error.value)


def test_an_unreachable_provider_is_unavailable() -> None:
    with ResendClient(
        api_key="k", base_url="http://127.0.0.1:1", sleep=lambda _: None, max_attempts=2
    ) as c:
        with pytest.raises(ResendUnavailableError):
            c.send(_email())


def test_invitation_escapes_html_and_has_both_parts() -> None:
    url = "https://godo.example/invite/abc.def?x=1&y=2"
    email = invitation(
        sender=SENDER,
        to="rui@example.com",
        inviter_name="<b>Ana</b>",
        invite_url=url,
        expires_at=datetime(2026, 12, 14, tzinfo=UTC),
    )
    assert "&lt;b&gt;Ana&lt;/b&gt;" in email.html and "<b>Ana</b>" not in email.html
    assert "x=1&amp;y=2" in email.html
    assert url in email.text and "<b>Ana</b> invited you" in email.text
    assert "December 14, 2026" in email.text
    assert "List-Unsubscribe" not in email.headers


def test_digest_has_one_click_unsubscribe_headers_and_links() -> None:
    url = "https://api.godo.example/v1/email/unsubscribe?token=t"
    email = weekly_digest(
        sender=SENDER,
        to="ana@example.com",
        display_name="Ana",
        events=[DigestEvent(name="Jazz & Wine", when="Fri 8 PM", venue="Blue", friends_going=2)],
        unsubscribe_url=url,
    )
    assert email.headers == {
        "List-Unsubscribe": f"<{url}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    assert "Jazz &amp; Wine" in email.html and "Jazz & Wine" in email.text
    assert "2 friends going" in email.text
    assert url in email.text and url in email.html
