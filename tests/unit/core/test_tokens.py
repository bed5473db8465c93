"""Tokens: what is accepted, what is refused and why, and the production secret guard.

JWKS (RS256/ES256, Supabase-style) tokens are signed with keys generated here and verified
against a real JWKS served over HTTP by a small server on 127.0.0.1, so PyJWT's client does
its real fetching and caching.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from pydantic import ValidationError

from core import tokens as tokens_module
from core.settings import DEV_JWT_SECRET, Settings
from core.tokens import (
    ISSUER,
    InvalidTokenError,
    SigningKeysUnavailableError,
    TokenVerifier,
    has_role,
    issue_token,
    jwks_client,
    role_claims,
    verify_claims,
    verify_token,
)

SECRET = "unit-test-secret-0123456789abcdefghijklmnop"
AUDIENCE = "authenticated"  # what Supabase puts in `aud`
SUPABASE_ISSUER = "https://abcdefgh.supabase.co/auth/v1"


@pytest.fixture(autouse=True)
def _no_ambient_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings must come from the test alone, not from a developer's shell or `.env`."""
    for name in (
        "GODO_JWT_SECRET",
        "GODO_ENVIRONMENT",
        "GODO_JWT_AUDIENCE",
        "GODO_JWT_ALGORITHM",
        "GODO_JWKS_URL",
    ):
        monkeypatch.delenv(name, raising=False)


def _settings(**overrides: object) -> Settings:
    values: dict[str, object] = {"jwt_secret": SECRET, "jwt_audience": AUDIENCE, "_env_file": None}
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def _raw_token(claims: dict[str, object], secret: str = SECRET) -> str:
    """A token with hand-picked claims, for the shapes `issue_token` never produces."""
    now = datetime.now(UTC)
    base: dict[str, object] = {
        "iat": now,
        "exp": now + timedelta(minutes=5),
        "aud": AUDIENCE,
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
        "aud": AUDIENCE,
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
    claims = {"sub": "1", "exp": datetime.now(UTC) + timedelta(minutes=5), "aud": AUDIENCE}
    token = jwt.encode({**claims, "iss": ISSUER, "iat": datetime.now(UTC)}, "", algorithm="none")
    assert "algorithm" in _reason(_settings(), token)


def test_issue_refuses_nonsense_arguments() -> None:
    with pytest.raises(ValueError, match="user_id"):
        issue_token(_settings(), 0)
    with pytest.raises(ValueError, match="ttl_seconds"):
        issue_token(_settings(), 1, ttl_seconds=0)


# `secrets.token_urlsafe(32)` once: what the README tells operators to generate.
PRODUCTION_SECRET = "Vq3nL8xR2mZ7wK4pT9sB6yH1cF5gJ0dA_eU-oN3iQ8r"


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


@pytest.mark.parametrize(
    ("secret", "why"),
    [
        pytest.param("a" * 32, "pattern repeated", id="one-letter"),
        pytest.param("x7" * 20, "pattern repeated", id="two-letter-unit"),
        pytest.param("password1234" * 3, "pattern repeated", id="password-repeated"),
        pytest.param("abcdefghijklmnopqrstuvwxyz012345", "neighbouring", id="alphabet"),
        pytest.param("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab", "neighbouring", id="almost-one-letter"),
        pytest.param("aq" * 15 + "zx", "bits of entropy", id="two-letters"),
    ],
)
def test_production_refuses_a_long_but_low_entropy_secret(secret: str, why: str) -> None:
    with pytest.raises(ValidationError, match=why):
        _settings(environment="production", jwt_secret=secret)
    with pytest.raises(ValidationError, match="GODO_IMPRESSION_SECRET"):
        _settings(environment="production", jwt_secret=PRODUCTION_SECRET, impression_secret=secret)


def test_production_accepts_a_long_random_secret() -> None:
    settings = _settings(environment="production", jwt_secret=PRODUCTION_SECRET)
    assert settings.jwt_secret.get_secret_value() == PRODUCTION_SECRET
    assert verify_token(settings, issue_token(settings, 5)) == 5
    hex_secret = "9f86d081884c7d659a2feaa0c55ad015"  # 16 random bytes as hex: 32 characters
    assert _settings(environment="production", jwt_secret=hex_secret)


# --- JWKS (Supabase-style RS256 / ES256) ---------------------------------------------------

RSA_KID = "rsa-key-1"
EC_KID = "ec-key-1"
OCT_KID = "symmetric-key"
RS384_KID = "rsa-declared-rs384"


@dataclass
class JwksServer:
    """A JWKS endpoint on 127.0.0.1 that counts how often it was fetched."""

    url: str
    document: dict[str, Any]
    fetches: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def jwks_server(
    rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> Iterator[JwksServer]:
    rsa_jwk = RSAAlgorithm.to_jwk(rsa_key.public_key(), as_dict=True)
    ec_jwk = ECAlgorithm.to_jwk(ec_key.public_key(), as_dict=True)
    rs384_jwk = RSAAlgorithm.to_jwk(rsa_key.public_key(), as_dict=True)
    oct_jwk = {"kty": "oct", "k": base64.urlsafe_b64encode(b"s" * 32).decode().rstrip("=")}
    document = {
        "keys": [
            {**rsa_jwk, "kid": RSA_KID, "use": "sig", "alg": "RS256"},
            {**ec_jwk, "kid": EC_KID, "use": "sig", "alg": "ES256"},
            {**rs384_jwk, "kid": RS384_KID, "use": "sig", "alg": "RS384"},
            {**oct_jwk, "kid": OCT_KID, "use": "sig"},
        ]
    }
    fetches: list[str] = []
    body = json.dumps(document).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            fetches.append(self.path)
            if self.path != "/auth/v1/.well-known/jwks.json":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    url = f"http://{host!s}:{port}/auth/v1/.well-known/jwks.json"
    try:
        yield JwksServer(url=url, document=document, fetches=fetches)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def jwks(jwks_server: JwksServer) -> JwksServer:
    """The module's server with a cold key-set cache and fetch count, as in a new process."""
    jwks_client.cache_clear()
    jwks_server.fetches.clear()
    return jwks_server


def _signed(key: Any, algorithm: str, kid: str | None, **claims: object) -> str:
    """A Supabase-shaped access token; a claim given as None is left out."""
    now = datetime.now(UTC)
    base: dict[str, object] = {
        "sub": "42",
        "aud": AUDIENCE,
        "exp": now + timedelta(minutes=5),
        "iat": now,
        "iss": SUPABASE_ISSUER,
        "role": "authenticated",
    }
    merged = {name: value for name, value in {**base, **claims}.items() if value is not None}
    headers = {"kid": kid} if kid is not None else {}
    return jwt.encode(merged, key, algorithm=algorithm, headers=headers)


def _hmac_token(secret: bytes, header: dict[str, object], claims: dict[str, object]) -> str:
    """HS256 by hand: PyJWT itself refuses to use a PEM public key as an HMAC secret."""

    def part(value: dict[str, object]) -> str:
        raw = json.dumps(value, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    signing_input = f"{part(header)}.{part(claims)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(signature).decode().rstrip('=')}"


def test_rs256_token_from_the_jwks_is_accepted(
    jwks: JwksServer, rsa_key: rsa.RSAPrivateKey
) -> None:
    assert verify_token(_settings(jwks_url=jwks.url), _signed(rsa_key, "RS256", RSA_KID)) == 42


def test_es256_token_from_the_jwks_is_accepted(
    jwks: JwksServer, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    assert verify_token(_settings(jwks_url=jwks.url), _signed(ec_key, "ES256", EC_KID)) == 42


def test_jwks_tokens_need_no_godo_issuer(jwks: JwksServer, rsa_key: rsa.RSAPrivateKey) -> None:
    settings = _settings(jwks_url=jwks.url)
    assert verify_token(settings, _signed(rsa_key, "RS256", RSA_KID, iss=None)) == 42
    assert verify_token(settings, _signed(rsa_key, "RS256", RSA_KID, iss="anything")) == 42


def test_key_set_is_fetched_once_and_cached(
    jwks: JwksServer, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    settings = _settings(jwks_url=jwks.url)
    for _ in range(3):
        verify_token(settings, _signed(rsa_key, "RS256", RSA_KID))
        verify_token(settings, _signed(ec_key, "ES256", EC_KID))
    assert jwks.fetches == ["/auth/v1/.well-known/jwks.json"]
    assert jwks_client(jwks.url) is jwks_client(jwks.url)


def test_hmac_tokens_still_work_next_to_the_jwks(jwks: JwksServer) -> None:
    settings = _settings(jwks_url=jwks.url)
    assert verify_token(settings, issue_token(settings, 9)) == 9
    assert jwks.fetches == []  # HS tokens never touch the key set


def test_jwks_token_for_another_audience_is_refused(
    jwks: JwksServer, rsa_key: rsa.RSAPrivateKey
) -> None:
    token = _signed(rsa_key, "RS256", RSA_KID, aud="godo-app")
    assert "audience" in _reason(_settings(jwks_url=jwks.url), token)


def test_expired_jwks_token_is_refused(
    jwks: JwksServer, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    token = _signed(ec_key, "ES256", EC_KID, exp=datetime.now(UTC) - timedelta(minutes=1))
    assert "expired" in _reason(_settings(jwks_url=jwks.url), token)


@pytest.mark.parametrize("claim", ["exp", "sub", "aud"])
def test_jwks_token_without_a_required_claim_is_refused(
    jwks: JwksServer, rsa_key: rsa.RSAPrivateKey, claim: str
) -> None:
    token = _signed(rsa_key, "RS256", RSA_KID, **{claim: None})
    assert claim in _reason(_settings(jwks_url=jwks.url), token)


def test_jwks_token_signed_by_another_key_is_refused(jwks: JwksServer) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = _signed(stranger, "RS256", RSA_KID)
    assert "signature" in _reason(_settings(jwks_url=jwks.url), token)


def test_hs256_token_signed_with_the_public_key_is_refused(
    jwks: JwksServer, rsa_key: rsa.RSAPrivateKey
) -> None:
    """The classic confusion: the public key (which anyone can fetch) used as HMAC secret."""
    public_pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    now = int(datetime.now(UTC).timestamp())
    claims: dict[str, object] = {
        "sub": "42",
        "aud": AUDIENCE,
        "exp": now + 300,
        "iat": now,
        "iss": ISSUER,
    }
    for secret in (public_pem, public_pem.strip()):
        token = _hmac_token(secret, {"alg": "HS256", "typ": "JWT", "kid": RSA_KID}, claims)
        assert "signature" in _reason(_settings(jwks_url=jwks.url), token)


@pytest.mark.parametrize(
    ("algorithm", "kid", "key_name"),
    [("RS256", EC_KID, "rsa"), ("ES256", RSA_KID, "ec"), ("RS256", RS384_KID, "rsa")],
    ids=["rs256-header-ec-key", "es256-header-rsa-key", "rsa-key-declared-for-rs384"],
)
def test_algorithm_is_pinned_by_the_key_not_the_token(
    jwks: JwksServer,
    rsa_key: rsa.RSAPrivateKey,
    ec_key: ec.EllipticCurvePrivateKey,
    algorithm: str,
    kid: str,
    key_name: str,
) -> None:
    token = _signed(rsa_key if key_name == "rsa" else ec_key, algorithm, kid)
    reason = _reason(_settings(jwks_url=jwks.url), token)
    assert "algorithm" in reason or "not usable" in reason


def test_rs256_token_cannot_select_a_symmetric_jwks_key(
    jwks: JwksServer, rsa_key: rsa.RSAPrivateKey
) -> None:
    token = _signed(rsa_key, "RS256", OCT_KID)
    assert "not usable" in _reason(_settings(jwks_url=jwks.url), token)


def test_unknown_kid_is_refused_with_a_safe_reason(
    jwks: JwksServer, rsa_key: rsa.RSAPrivateKey
) -> None:
    reason = _reason(_settings(jwks_url=jwks.url), _signed(rsa_key, "RS256", "no-such-kid"))
    assert reason == "token signing key is unknown"
    assert "127.0.0.1" not in reason and "no-such-kid" not in reason


def test_missing_kid_is_refused(jwks: JwksServer, rsa_key: rsa.RSAPrivateKey) -> None:
    assert "kid" in _reason(_settings(jwks_url=jwks.url), _signed(rsa_key, "RS256", None))


def test_asymmetric_token_without_a_jwks_is_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    assert "algorithm" in _reason(_settings(), _signed(rsa_key, "RS256", RSA_KID))


def test_supabase_uuid_subject_is_an_account_id(
    jwks: JwksServer, rsa_key: rsa.RSAPrivateKey
) -> None:
    # Supabase's own `sub` is the auth user's UUID; serving maps it to a user id.
    account = "0b5c8a6e-3f0e-4c1e-9a53-2f8f4b7d6e10"
    token = _signed(rsa_key, "RS256", RSA_KID, sub=account)
    assert verify_token(_settings(jwks_url=jwks.url), token) == uuid.UUID(account)


@pytest.mark.parametrize(
    "sub",
    [
        "{0b5c8a6e-3f0e-4c1e-9a53-2f8f4b7d6e10}",
        "urn:uuid:0b5c8a6e-3f0e-4c1e-9a53-2f8f4b7d6e10",
        "0b5c8a6e3f0e4c1e9a532f8f4b7d6e10",
        "0b5c8a6e-3f0e-4c1e-9a53-2f8f4b7d6e1",
    ],
)
def test_only_the_canonical_uuid_spelling_is_an_account_id(sub: str) -> None:
    assert "subject" in _reason(_settings(), _raw_token({"sub": sub}))


def test_unreachable_jwks_is_an_outage_not_a_bad_token(rsa_key: rsa.RSAPrivateKey) -> None:
    jwks_client.cache_clear()
    settings = _settings(jwks_url="http://127.0.0.1:1/auth/v1/.well-known/jwks.json")
    with pytest.raises(SigningKeysUnavailableError):
        verify_token(settings, _signed(rsa_key, "RS256", RSA_KID))


# --- TokenVerifier: each accepted token verified once per process ------------------------


def test_verifier_remembers_an_accepted_token_until_it_expires(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = _settings()
    verifier = TokenVerifier(settings)
    token = issue_token(settings, 7, ttl_seconds=60)
    calls: list[str] = []
    real = tokens_module._verified_claims

    def counting(settings: Settings, token: str) -> dict[str, Any]:
        calls.append(token)
        return real(settings, token)

    monkeypatch.setattr(tokens_module, "_verified_claims", counting)
    assert verifier.subject(token) == 7
    assert verifier.subject(token) == 7
    assert len(calls) == 1

    # Once the cache's clock passes `exp`, the entry is not trusted: the token is verified
    # again (PyJWT keeps its own clock, which still finds it valid here).
    later = tokens_module.time.time() + 61
    monkeypatch.setattr(tokens_module.time, "time", lambda: later)
    assert verifier.subject(token) == 7
    assert len(calls) == 2


def test_verifier_never_remembers_a_refusal() -> None:
    settings = _settings()
    verifier = TokenVerifier(settings)
    forged = issue_token(_settings(jwt_secret="another-secret-0123456789abcdefghijkl"), 7)
    for _ in range(2):
        with pytest.raises(InvalidTokenError, match="signature"):
            verifier.subject(forged)


def test_a_verifier_only_knows_tokens_valid_under_its_own_settings() -> None:
    mine, theirs = _settings(), _settings(jwt_secret="another-secret-0123456789abcdefghijkl")
    token = issue_token(mine, 7)
    assert TokenVerifier(mine).subject(token) == 7
    with pytest.raises(InvalidTokenError):
        TokenVerifier(theirs).subject(token)


def test_a_full_verifier_evicts_and_keeps_working() -> None:
    settings = _settings()
    verifier = TokenVerifier(settings, max_entries=4)
    tokens = {user_id: issue_token(settings, user_id) for user_id in range(1, 11)}
    for user_id, token in tokens.items():
        assert verifier.subject(token) == user_id
    assert len(verifier._accepted) <= 4
    assert all(verifier.subject(token) == user_id for user_id, token in tokens.items())


@pytest.mark.parametrize(
    ("claims", "allowed"),
    [
        ({"app_metadata": {"role": "admin"}}, True),
        ({"app_metadata": {"role": ["viewer", "admin"]}}, True),
        ({"app_metadata": {"role": "Admin"}}, False),
        ({"app_metadata": {"role": "not-admin"}}, False),
        ({"app_metadata": {"role": {"admin": True}}}, False),
        ({"app_metadata": "admin"}, False),
        ({"role": "admin"}, False),
        ({}, False),
    ],
)
def test_the_admin_role_is_an_exact_value_at_the_claim_path(
    claims: dict[str, object], allowed: bool
) -> None:
    assert has_role(claims, "app_metadata.role", "admin") is allowed


def test_godo_mints_admin_tokens_at_the_configured_claim_path() -> None:
    settings = Settings(
        admin_role_claim="app_metadata.roles",
        admin_role="ops",
        _env_file=None,  # type: ignore[call-arg]
    )
    claims = verify_claims(settings, issue_token(settings, 5, extra_claims=role_claims(settings)))
    assert claims["app_metadata"] == {"roles": "ops"}
    assert has_role(claims, settings.admin_role_claim, settings.admin_role)
    # Extra claims never replace the registered ones.
    token = issue_token(settings, 5, extra_claims={"sub": "6", "aud": "elsewhere"})
    assert verify_claims(settings, token)["sub"] == "5"
