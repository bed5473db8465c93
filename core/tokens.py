"""Bearer tokens for the API: JWTs whose subject is the user id, Supabase-compatible.

Two kinds of token are accepted, told apart by the `alg` in their header:

- HMAC (`settings.jwt_algorithm`, HS256 by default), signed with `settings.jwt_secret`. These
  are what `issue_token` hands out in development (and the CLI prints). They must carry
  `iss: "godo"`: the secret is ours, so a token signed with it that names another issuer was
  not minted by us and is refused.
- RS256 / ES256, accepted only when `settings.jwks_url` is set (e.g. Supabase's
  `https://<project>.supabase.co/auth/v1/.well-known/jwks.json`). The key is picked from that
  JWKS by the token's `kid`, and the algorithm is pinned by the key's type (RSA -> RS256,
  EC P-256 -> ES256), never taken from the token: an HS256 token can never be checked against
  a public key (the classic "public key as HMAC secret" confusion), and an RS256 header cannot
  select an EC key. `iss` is not checked for these: the issuer is authenticated by its key,
  which comes from the JWKS we were configured with, and Supabase's issuer URL differs per
  project, so pinning it would only add a second setting to get wrong.

Both kinds must carry `exp`, `sub` and `aud == settings.jwt_audience` (Supabase access tokens
say `"authenticated"`). `sub` is either a decimal user id that fits the `users.id` BIGINT column
(tokens minted here) or a UUID (Supabase's account id), which serving maps to the user whose
`users.auth_id` it is. Anything else is refused here, so a bad token can never turn into a
database error further down.

A JWKS that cannot be fetched raises `SigningKeysUnavailableError`, not `InvalidTokenError`:
the token may well be fine, and answering 401 during an identity-provider outage would make
apps drop their sessions; callers answer 503 instead.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.exceptions import (
    InvalidSubjectError,
    PyJWKClientConnectionError,
    PyJWKClientError,
    PyJWKSetError,
)

from core.settings import Settings

ISSUER = "godo"
_HMAC_REQUIRED_CLAIMS = ["exp", "iat", "sub", "aud", "iss"]
_JWKS_REQUIRED_CLAIMS = ["exp", "sub", "aud"]
_USER_ID = re.compile(r"[0-9]{1,19}")
# The canonical 8-4-4-4-12 hex form only: `uuid.UUID` alone would also take braces, a `urn:`
# prefix or bare hex, spellings no identity provider issues.
_AUTH_ID = re.compile(r"[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")

# Who a token speaks for: a Godo user id, or an identity provider's account UUID.
Subject = int | uuid.UUID
_MAX_USER_ID = 2**63 - 1  # Postgres BIGINT

# What a JWKS key may verify; see `_pinned_algorithm`.
_ASYMMETRIC_ALGORITHMS = frozenset({"RS256", "ES256"})
# Fetching keys happens inside a request; PyJWT's default 30 s would hold it far too long.
JWKS_TIMEOUT_SECONDS = 3.0
# How long a fetched JWKS is trusted before it is fetched again (PyJWT's default).
JWKS_CACHE_SECONDS = 300.0


class InvalidTokenError(Exception):
    """A token was refused; `reason` is safe to show to the caller (it names no secret)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SigningKeysUnavailableError(Exception):
    """The JWKS could not be fetched or holds no usable key: an outage, not a bad token."""


def issue_token(
    settings: Settings,
    user_id: int,
    *,
    ttl_seconds: int | None = None,
    now: datetime | None = None,
    extra_claims: Mapping[str, Any] | None = None,
) -> str:
    """A signed (HMAC) token for `user_id`, valid for `ttl_seconds` (default: settings).

    `now` is injectable so tests can mint already-expired tokens without sleeping.
    `extra_claims` are added beside the registered ones (which they cannot replace), e.g.
    `role_claims(settings)` for a token that opens the admin pages.
    """
    if not 0 < user_id <= _MAX_USER_ID:
        raise ValueError(f"user_id must be a positive BIGINT, got {user_id}")
    ttl = settings.jwt_ttl_seconds if ttl_seconds is None else ttl_seconds
    if ttl <= 0:
        raise ValueError(f"ttl_seconds must be positive, got {ttl}")
    issued_at = (now or datetime.now(UTC)).replace(microsecond=0)
    claims = {
        **(extra_claims or {}),
        "sub": str(user_id),
        "iat": issued_at,
        "exp": issued_at + timedelta(seconds=ttl),
        "aud": settings.jwt_audience,
        "iss": ISSUER,
    }
    return jwt.encode(
        claims, settings.jwt_secret.get_secret_value(), algorithm=settings.jwt_algorithm
    )


def verify_claims(settings: Settings, token: str) -> dict[str, Any]:
    """Every claim of `token`, once it is verified exactly as `verify_token` verifies it
    (including its `sub`), or `InvalidTokenError`. May block on the network, like it."""
    claims = _verified_claims(settings, token)
    _subject(claims["sub"])
    return claims


def claim_at(claims: Mapping[str, Any], path: str) -> object:
    """The claim at dotted `path` (`app_metadata.role`), or None where any step is missing."""
    value: object = claims
    for step in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(step)
    return value


def has_role(claims: Mapping[str, Any], path: str, role: str) -> bool:
    """Whether the claim at `path` is `role`, or a list holding it.

    Exact matches only: no case folding, no substrings (`"not-admin"` is not `"admin"`), and
    anything but a string or a list of strings holds no role.
    """
    value = claim_at(claims, path)
    if isinstance(value, str):
        return value == role
    if isinstance(value, list):
        return any(isinstance(item, str) and item == role for item in value)
    return False


def role_claims(settings: Settings) -> dict[str, Any]:
    """Claims that give a token the admin role at `settings.admin_role_claim`, nested as
    the path says (`{"app_metadata": {"role": "admin"}}`): what `godo token --admin` adds."""
    claims: dict[str, Any] = {}
    *parents, leaf = settings.admin_role_claim.split(".")
    level = claims
    for step in parents:
        level = level.setdefault(step, {})
    level[leaf] = settings.admin_role
    return claims


def verify_token(settings: Settings, token: str) -> Subject:
    """Who `token` speaks for, or `InvalidTokenError` saying why it was refused.

    May block on the network (fetching the JWKS, at most every `JWKS_CACHE_SECONDS` or on an
    unknown `kid`), so call it from a thread, not the event loop.
    """
    return _subject(_verified_claims(settings, token)["sub"])


def _verified_claims(settings: Settings, token: str) -> dict[str, Any]:
    """The claims of `token` once its signature and claims are verified (see `verify_token`)."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as error:
        raise InvalidTokenError("token is malformed") from error
    algorithm = header.get("alg")
    if algorithm == settings.jwt_algorithm:
        claims = _decode(
            token,
            settings.jwt_secret.get_secret_value(),
            algorithm=algorithm,
            audience=settings.jwt_audience,
            issuer=ISSUER,
            required=_HMAC_REQUIRED_CLAIMS,
        )
    elif algorithm in _ASYMMETRIC_ALGORITHMS and settings.jwks_url:
        key, pinned = _jwks_key(settings.jwks_url, header.get("kid"))
        if algorithm != pinned:
            raise InvalidTokenError("token algorithm does not match its signing key")
        claims = _decode(
            token,
            key,
            algorithm=pinned,
            audience=settings.jwt_audience,
            issuer=None,
            required=_JWKS_REQUIRED_CLAIMS,
        )
    else:
        raise InvalidTokenError("token is signed with a refused algorithm")
    return claims


class TokenVerifier:
    """`verify_token` that remembers the tokens it accepted, until they expire.

    Why: an app sends the same access token with every request for up to an hour, and both
    the rate limiter and the route need its user. Verifying a JWT costs more than the rest of
    a cached feed read, so each accepted token is verified once per process and then looked
    up by its exact string. Only acceptances are remembered; a refused token is checked again
    every time (it costs the caller's rate-limit budget, not ours).

    An entry lives until the token's `exp`, and at most `max_age_seconds` (default: as long
    as a fetched JWKS is trusted), so a signing key withdrawn from the JWKS stops working
    here no later than it would without the cache. One verifier per settings object: tokens
    accepted under one secret are never looked up under another.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        max_entries: int = 50_000,
        max_age_seconds: float = JWKS_CACHE_SECONDS,
    ) -> None:
        self.settings = settings
        self.max_entries = max_entries
        self.max_age_seconds = max_age_seconds
        self._accepted: dict[str, tuple[Subject, float]] = {}  # token -> (subject, valid until)
        self._lock = threading.Lock()

    def remembered_subject(self, token: str) -> Subject | None:
        """The subject if `token` was accepted and is still valid; never verifies (no I/O)."""
        hit = self._accepted.get(token)
        if hit is not None and time.time() < hit[1]:
            return hit[0]
        return None

    def subject(self, token: str) -> Subject:
        """The token's subject, or `InvalidTokenError` / `SigningKeysUnavailableError`.

        May block on a JWKS fetch when the token is not remembered: call from a thread.
        """
        remembered = self.remembered_subject(token)
        if remembered is not None:
            return remembered
        now = time.time()
        claims = _verified_claims(self.settings, token)
        subject = _subject(claims["sub"])
        until = min(float(claims["exp"]), now + self.max_age_seconds)
        with self._lock:
            if len(self._accepted) >= self.max_entries:
                self._evict(now)
            self._accepted[token] = (subject, until)
        return subject

    def _evict(self, now: float) -> None:
        """Drop expired entries, or the oldest half when none has expired (under the lock)."""
        expired = [token for token, (_, until) in self._accepted.items() if until <= now]
        for token in expired or list(self._accepted)[: self.max_entries // 2]:
            del self._accepted[token]


@lru_cache(maxsize=4)
def jwks_client(url: str) -> jwt.PyJWKClient:
    """One client per JWKS URL for the whole process, so its key-set cache is shared.

    PyJWT refreshes the set on an unknown `kid` (key rotation) at most once per cooldown
    (30 s), so tokens with made-up `kid`s cannot turn into a flood of JWKS fetches.
    """
    return jwt.PyJWKClient(url, timeout=JWKS_TIMEOUT_SECONDS, lifespan=JWKS_CACHE_SECONDS)


def _jwks_key(url: str, kid: object) -> tuple[Any, str]:
    """The public key named `kid` in the JWKS at `url`, and the one algorithm it may verify."""
    if not isinstance(kid, str) or not kid:
        raise InvalidTokenError("token header lacks a 'kid' naming its signing key")
    client = jwks_client(url)
    try:
        client.get_signing_keys()  # cached; fails only when the set itself is unusable
    except (PyJWKClientError, PyJWKSetError) as error:
        raise SigningKeysUnavailableError(f"JWKS at {url} is unusable: {error}") from error
    try:
        jwk = client.get_signing_key(kid)
    except (PyJWKClientConnectionError, PyJWKSetError) as error:  # during a rotation refresh
        raise SigningKeysUnavailableError(f"JWKS at {url} is unusable: {error}") from error
    except PyJWKClientError as error:
        raise InvalidTokenError("token signing key is unknown") from error
    pinned = _pinned_algorithm(jwk.key)
    if pinned is None or jwk.algorithm_name != pinned:
        # e.g. a symmetric ("oct") key, another curve, or a key declared for another algorithm
        raise InvalidTokenError("token signing key is not usable for API tokens")
    return jwk.key, pinned


def _pinned_algorithm(key: object) -> str | None:
    """The one algorithm a JWKS key may verify, judged by the key object itself."""
    if isinstance(key, rsa.RSAPublicKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return "ES256"
    return None


def _decode(
    token: str,
    key: Any,
    *,
    algorithm: str,
    audience: str,
    issuer: str | None,
    required: list[str],
) -> dict[str, Any]:
    """Verify signature and claims with exactly one algorithm; map failures to safe reasons."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            audience=audience,
            issuer=issuer,
            options={"require": required},
        )
    except jwt.ExpiredSignatureError as error:
        raise InvalidTokenError("token has expired") from error
    except jwt.InvalidSignatureError as error:
        raise InvalidTokenError("token signature is invalid") from error
    except jwt.InvalidAudienceError as error:
        raise InvalidTokenError("token audience is not this API") from error
    except jwt.InvalidIssuerError as error:
        raise InvalidTokenError("token issuer is not godo") from error
    except jwt.MissingRequiredClaimError as error:
        raise InvalidTokenError(f"token lacks the required '{error.claim}' claim") from error
    except jwt.InvalidAlgorithmError as error:
        raise InvalidTokenError("token is signed with a refused algorithm") from error
    except jwt.ImmatureSignatureError as error:
        raise InvalidTokenError("token is not valid yet") from error
    except InvalidSubjectError as error:  # RFC 7519: `sub` is a string, never a JSON number
        raise InvalidTokenError("token subject is not a string") from error
    except jwt.DecodeError as error:
        raise InvalidTokenError("token is malformed") from error
    except jwt.PyJWTError as error:  # iat type, key errors, future additions
        raise InvalidTokenError(f"token is invalid: {error}") from error
    return claims


def _subject(subject: object) -> Subject:
    """Parse `sub` strictly: a user id in ASCII digits only (no sign, spaces or underscores
    `int()` allows), or a UUID in its canonical form."""
    if isinstance(subject, str) and _AUTH_ID.fullmatch(subject):
        return uuid.UUID(subject)
    if not isinstance(subject, str) or not _USER_ID.fullmatch(subject):
        raise InvalidTokenError("token subject is neither a user id nor an account UUID")
    user_id = int(subject)
    if not 0 < user_id <= _MAX_USER_ID:
        raise InvalidTokenError("token subject is out of the user id range")
    return user_id
