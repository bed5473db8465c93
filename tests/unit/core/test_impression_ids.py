"""Signed impression ids (`core.impression_ids`): pure, no services."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr, ValidationError

from core.impression_ids import (
    RejectedImpression,
    impression_key,
    impression_uuid,
    mint_page,
    page_nonce,
    read_impression,
    served_ms,
    verify_impression,
)
from core.settings import Settings

KEY = impression_key("unit-test-impression-secret-0123456789")
SERVED = datetime(2026, 12, 3, 18, 30, 12, 345000, tzinfo=UTC)
NONCE = bytes.fromhex("00112233445546778899aabbccdd")
EVENTS = ["ev-1", "812345678901", "ünïcode-événement"]
MAX_AGE = timedelta(days=7)


def _page(user_id: int = 42, key: bytes = KEY) -> list[str]:
    tokens = mint_page(
        key, user_id=user_id, event_ids=EVENTS, served_at_ms=served_ms(SERVED), nonce=NONCE
    )
    return [t.decode() for t in tokens]


def test_each_id_reads_back_as_its_item() -> None:
    for position, (token, event_id) in enumerate(zip(_page(), EVENTS, strict=True)):
        impression = read_impression(KEY, token)
        assert impression.user_id == 42
        assert impression.event_id == event_id
        assert impression.served_at == SERVED
        assert impression.impression_id == impression_uuid(NONCE, position)


def test_ids_are_url_safe_unpadded_and_distinct() -> None:
    tokens = _page()
    assert len(set(tokens)) == len(tokens)
    alphabet = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    for token in tokens:
        assert set(token) <= alphabet


def test_uuids_are_version_4_and_differ_by_position_and_page() -> None:
    nonce = page_nonce()
    first, second = impression_uuid(nonce, 0), impression_uuid(nonce, 1)
    assert first.version == 4 and first.variant == uuid.RFC_4122
    assert first != second and first.bytes[:14] == second.bytes[:14]
    assert page_nonce() != nonce


def test_verify_accepts_the_caller_and_the_event_within_the_max_age() -> None:
    token = _page()[1]
    impression = verify_impression(
        KEY, token, user_id=42, event_id="812345678901", now=SERVED + MAX_AGE, max_age=MAX_AGE
    )
    assert impression.impression_id == impression_uuid(NONCE, 1)


@pytest.mark.parametrize(
    ("user_id", "event_id", "age", "reason"),
    [
        (7, "812345678901", timedelta(0), "foreign_user"),
        (42, "ev-1", timedelta(0), "other_event"),
        (42, "812345678901", MAX_AGE + timedelta(milliseconds=1), "expired"),
    ],
)
def test_verify_refuses_another_user_event_or_an_old_id(
    user_id: int, event_id: str, age: timedelta, reason: str
) -> None:
    with pytest.raises(RejectedImpression) as refused:
        verify_impression(
            KEY, _page()[1], user_id=user_id, event_id=event_id, now=SERVED + age, max_age=MAX_AGE
        )
    assert refused.value.reason == reason


def _raw(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def _token(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def test_any_change_to_an_id_is_a_forgery() -> None:
    raw = _raw(_page()[1])
    # Claim another user (bytes 7..15) or another event, or flip one bit of the MAC.
    other_user = raw[:7] + (7).to_bytes(8, "big") + raw[15:]
    other_event = raw[:31] + b"812345678902" + raw[-16:]
    bad_mac = raw[:-1] + bytes([raw[-1] ^ 1])
    for forged in (other_user, other_event, bad_mac):
        with pytest.raises(RejectedImpression) as refused:
            read_impression(KEY, _token(forged))
        assert refused.value.reason == "forged"


def test_an_id_signed_with_another_key_is_a_forgery() -> None:
    other = _page(key=impression_key("someone-else's-secret-0123456789abcdef"))[0]
    with pytest.raises(RejectedImpression) as refused:
        read_impression(KEY, other)
    assert refused.value.reason == "forged"


@pytest.mark.parametrize(
    "token", ["", "not base64 !", "AQ", _token(b"\x02" + _raw(_page()[0])[1:]), "A" * 41]
)
def test_what_is_not_an_id_is_malformed(token: str) -> None:
    with pytest.raises(RejectedImpression) as refused:
        read_impression(KEY, token)
    assert refused.value.reason == "malformed"


def test_the_key_comes_from_the_impression_secret_or_else_the_jwt_secret() -> None:
    jwt_only = Settings(_env_file=None)  # type: ignore[call-arg]
    own = Settings(
        impression_secret=SecretStr("x" * 40),
        _env_file=None,  # type: ignore[call-arg]
    )
    assert jwt_only.impression_key == impression_key(jwt_only.jwt_secret.get_secret_value())
    assert own.impression_key == impression_key("x" * 40) != jwt_only.impression_key
    # The derived key is not the JWT secret itself: an id's MAC never doubles as a JWT's.
    assert jwt_only.impression_key != jwt_only.jwt_secret.get_secret_value().encode()


def test_a_short_impression_secret_is_refused_outside_development() -> None:
    with pytest.raises(ValidationError, match="GODO_IMPRESSION_SECRET"):
        Settings(
            environment="production",
            jwt_secret=SecretStr("Vq3nL8xR2mZ7wK4pT9sB6yH1cF5gJ0dA_eU-oN3iQ8r"),
            impression_secret=SecretStr("short"),
            _env_file=None,  # type: ignore[call-arg]
        )
    Settings(
        environment="production",
        jwt_secret=SecretStr("Vq3nL8xR2mZ7wK4pT9sB6yH1cF5gJ0dA_eU-oN3iQ8r"),
        _env_file=None,  # type: ignore[call-arg]
    )
