"""Bearer tokens for the API: HMAC-signed JWTs whose subject is the user id.

The app's identity provider is out of scope here; these tokens are what the CLI hands out in
development and what a production issuer must produce (same secret, audience and issuer).
Verification is strict on purpose: `exp` and `sub` are required, the algorithm is pinned to
the one in settings (so an `alg: none` or RS/HS confusion token is refused), and `sub` must
be a decimal user id that fits the `users.id` BIGINT column, so a bad token can never turn
into a database error further down.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import jwt
from jwt.exceptions import InvalidSubjectError

from godo.settings import Settings

ISSUER = "godo"
_REQUIRED_CLAIMS = ["exp", "iat", "sub", "aud", "iss"]
_USER_ID = re.compile(r"[0-9]{1,19}")
_MAX_USER_ID = 2**63 - 1  # Postgres BIGINT


class InvalidTokenError(Exception):
    """A token was refused; `reason` is safe to show to the caller (it names no secret)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def issue_token(
    settings: Settings,
    user_id: int,
    *,
    ttl_seconds: int | None = None,
    now: datetime | None = None,
) -> str:
    """A signed token for `user_id`, valid for `ttl_seconds` (default: settings) from `now`.

    `now` is injectable so tests can mint already-expired tokens without sleeping.
    """
    if not 0 < user_id <= _MAX_USER_ID:
        raise ValueError(f"user_id must be a positive BIGINT, got {user_id}")
    ttl = settings.jwt_ttl_seconds if ttl_seconds is None else ttl_seconds
    if ttl <= 0:
        raise ValueError(f"ttl_seconds must be positive, got {ttl}")
    issued_at = (now or datetime.now(UTC)).replace(microsecond=0)
    claims = {
        "sub": str(user_id),
        "iat": issued_at,
        "exp": issued_at + timedelta(seconds=ttl),
        "aud": settings.jwt_audience,
        "iss": ISSUER,
    }
    return jwt.encode(
        claims, settings.jwt_secret.get_secret_value(), algorithm=settings.jwt_algorithm
    )


def verify_token(settings: Settings, token: str) -> int:
    """The user id carried by `token`, or `InvalidTokenError` saying why it was refused."""
    try:
        claims = jwt.decode(
            token,
            settings.jwt_secret.get_secret_value(),
            algorithms=[settings.jwt_algorithm],
            audience=settings.jwt_audience,
            issuer=ISSUER,
            options={"require": _REQUIRED_CLAIMS},
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
        raise InvalidTokenError("token subject is not an integer user id") from error
    except jwt.DecodeError as error:
        raise InvalidTokenError("token is malformed") from error
    except jwt.PyJWTError as error:  # iat type, key errors, future additions
        raise InvalidTokenError(f"token is invalid: {error}") from error
    return _user_id(claims["sub"])


def _user_id(subject: object) -> int:
    """Parse `sub` strictly: ASCII digits only (no sign, spaces or underscores `int()` allows)."""
    if not isinstance(subject, str) or not _USER_ID.fullmatch(subject):
        raise InvalidTokenError("token subject is not an integer user id")
    user_id = int(subject)
    if not 0 < user_id <= _MAX_USER_ID:
        raise InvalidTokenError("token subject is out of the user id range")
    return user_id
