"""Tokens: what is accepted, what is refused and why, and the production secret guard."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest
from pydantic import ValidationError

from godo.settings import DEV_JWT_SECRET, Settings
from godo.tokens import ISSUER, InvalidTokenError, issue_token, verify_token

SECRET = "unit-test-secret-0123456789abcdefghijklmnop"


@pytest.fixture(autouse=True)
def _no_ambient_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings must come from the test alone, not from a developer's shell or `.env`."""
    for name in ("GODO_JWT_SECRET", "GODO_ENVIRONMENT", "GODO_JWT_AUDIENCE", "GODO_JWT_ALGORITHM"):
        monkeypatch.delenv(name, raising=False)


def _settings(**overrides: object) -> Settings:
    values: dict[str, object] = {"jwt_secret": SECRET, "_env_file": None}
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def _raw_token(claims: dict[str, object], secret: str = SECRET) -> str:
    """A token with hand-picked claims, for the shapes `issue_token` never produces."""
    now = datetime.now(UTC)
    base: dict[str, object] = {
        "iat": now,
        "exp": now + timedelta(minutes=5),
        "aud": "godo-app",
        "iss": ISSUER,
    }
    return jwt.encode({**base, **claims}, secret, algorithm="HS256")


def _reason(settings: Settings, token: str) -> str:
    with pytest.raises(InvalidTokenError) as caught:
        verify_token(settings, token)
    return caught.value.reason


def test_round_trip_returns_the_user_id() -> None:
    settings = _settings()
    assert verify_token(settings, issue_token(settings, 42)) == 42


def test_claims_name_the_user_audience_and_issuer() -> None:
    settings = _settings(jwt_ttl_seconds=600)
    now = datetime(2030, 1, 1, 12, tzinfo=UTC)
    token = issue_token(settings, 7, now=now)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims == {
        "sub": "7",
        "iat": int(now.timestamp()),
        "exp": int(now.timestamp()) + 600,
        "aud": "godo-app",
        "iss": ISSUER,
    }


def test_expired_token_is_refused() -> None:
    settings = _settings()
    token = issue_token(settings, 1, ttl_seconds=60, now=datetime.now(UTC) - timedelta(hours=1))
    assert "expired" in _reason(settings, token)


def test_token_signed_with_another_secret_is_refused() -> None:
    token = issue_token(_settings(jwt_secret="another-secret-0123456789abcdefghijklmn"), 1)
    assert "signature" in _reason(_settings(), token)


def test_token_for_another_audience_is_refused() -> None:
    token = issue_token(_settings(jwt_audience="some-other-api"), 1)
    assert "audience" in _reason(_settings(), token)


def test_token_from_another_issuer_is_refused() -> None:
    assert "issuer" in _reason(_settings(), _raw_token({"sub": "1", "iss": "someone-else"}))


@pytest.mark.parametrize("sub", ["alice", "-3", "0", "+5", " 12", "1_000", "9" * 20, "1.5"])
def test_subject_that_is_not_a_user_id_is_refused(sub: str) -> None:
    assert "subject" in _reason(_settings(), _raw_token({"sub": sub}))


def test_non_string_subject_is_refused() -> None:
    # RFC 7519 makes `sub` a string; a JSON number is refused rather than coerced.
    assert "subject" in _reason(_settings(), _raw_token({"sub": 12}))


@pytest.mark.parametrize("claim", ["sub", "exp"])
def test_token_without_a_required_claim_is_refused(claim: str) -> None:
    token = _raw_token({"sub": "1", claim: None})
    claims = jwt.decode(token, options={"verify_signature": False})
    del claims[claim]
    assert claim in _reason(_settings(), jwt.encode(claims, SECRET, algorithm="HS256"))


@pytest.mark.parametrize("token", ["", "not-a-jwt", "a.b.c", "Bearer x.y.z"])
def test_malformed_token_is_refused(token: str) -> None:
    assert _reason(_settings(), token)


def test_unsigned_token_is_refused() -> None:
    claims = {"sub": "1", "exp": datetime.now(UTC) + timedelta(minutes=5), "aud": "godo-app"}
    token = jwt.encode({**claims, "iss": ISSUER, "iat": datetime.now(UTC)}, "", algorithm="none")
    assert "algorithm" in _reason(_settings(), token)


def test_issue_refuses_nonsense_arguments() -> None:
    with pytest.raises(ValueError, match="user_id"):
        issue_token(_settings(), 0)
    with pytest.raises(ValueError, match="ttl_seconds"):
        issue_token(_settings(), 1, ttl_seconds=0)


def test_production_refuses_the_default_secret() -> None:
    with pytest.raises(ValidationError, match="GODO_JWT_SECRET"):
        Settings(environment="production", _env_file=None)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="GODO_JWT_SECRET"):
        _settings(environment="production", jwt_secret=DEV_JWT_SECRET)


def test_staging_refuses_the_default_secret_too() -> None:
    with pytest.raises(ValidationError, match="outside development"):
        _settings(environment="staging", jwt_secret=DEV_JWT_SECRET)


def test_production_refuses_a_short_secret() -> None:
    with pytest.raises(ValidationError, match="32"):
        _settings(environment="production", jwt_secret="too-short")


def test_production_accepts_a_long_random_secret() -> None:
    settings = _settings(environment="production", jwt_secret="x7" * 20)
    assert settings.jwt_secret.get_secret_value() == "x7" * 20
    assert verify_token(settings, issue_token(settings, 5)) == 5
