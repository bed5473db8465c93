"""Signed links emails carry: an invitation and an unsubscribe link.

They are JWTs (HS256 with `settings.jwt_secret`), each kind with an audience of its own
(`godo-invite`, `godo-unsubscribe`) that API tokens never carry, so a link can never be
replayed as a bearer token (their audience is `settings.jwt_audience`) nor one kind of link as
the other. An invite token's `jti` is the invite's id: the database holds no token, and a
verified id is all a lookup needs. Unsubscribe tokens do not expire (an unsubscribe link in a
years-old email must still work, and it can only ever switch email off).

In the base layer because three layers sign or check them: the API (`store.invites`, the
unsubscribe route), the pipelines' digest email, and the tests.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import jwt

from core.settings import Settings
from core.tokens import ISSUER

INVITE_AUDIENCE = "godo-invite"
UNSUBSCRIBE_AUDIENCE = "godo-unsubscribe"
_ALGORITHM = "HS256"


class LinkInvalidError(Exception):
    """The link was not signed by us, is for something else, or is malformed."""


class LinkExpiredError(Exception):
    """The link is genuine (signature checked) but past its `exp`."""


def _secret(key: Settings | str) -> str:
    """The signing secret: the settings' `jwt_secret`, or that secret itself (the pipelines
    get it as resource configuration rather than building a whole `Settings`)."""
    return key if isinstance(key, str) else key.jwt_secret.get_secret_value()


def issue_invite_token(
    settings: Settings, *, invite_id: uuid.UUID, inviter_id: int, expires_at: datetime
) -> str:
    now = datetime.now(UTC)
    claims = {
        "iss": ISSUER,
        "aud": INVITE_AUDIENCE,
        "sub": str(inviter_id),
        "jti": str(invite_id),
        "iat": min(now, expires_at),
        "exp": expires_at,
    }
    return jwt.encode(claims, _secret(settings), algorithm=_ALGORITHM)


def verify_invite_token(settings: Settings, token: str) -> uuid.UUID:
    """The invite id of a genuine, unexpired invite token."""
    claims = _decode(settings, token, INVITE_AUDIENCE, ["exp", "iat", "sub", "jti", "iss", "aud"])
    try:
        return uuid.UUID(str(claims["jti"]))
    except ValueError as error:
        raise LinkInvalidError("malformed invite id") from error


def issue_unsubscribe_token(settings: Settings | str, user_id: int) -> str:
    claims = {
        "iss": ISSUER,
        "aud": UNSUBSCRIBE_AUDIENCE,
        "sub": str(user_id),
        "iat": datetime.now(UTC),
    }
    return jwt.encode(claims, _secret(settings), algorithm=_ALGORITHM)


def verify_unsubscribe_token(settings: Settings, token: str) -> int:
    """The user id an unsubscribe token was issued for."""
    claims = _decode(settings, token, UNSUBSCRIBE_AUDIENCE, ["iat", "sub", "iss", "aud"])
    subject = str(claims["sub"])
    if not subject.isascii() or not subject.isdigit() or not 0 < int(subject) < 2**63:
        raise LinkInvalidError("malformed subject")
    return int(subject)


def _decode(
    settings: Settings, token: str, audience: str, required: list[str]
) -> dict[str, object]:
    try:
        claims: dict[str, object] = jwt.decode(
            token,
            _secret(settings),
            algorithms=[_ALGORITHM],
            audience=audience,
            issuer=ISSUER,
            options={"require": required},
        )
    except jwt.ExpiredSignatureError as error:  # raised only once the signature verified
        raise LinkExpiredError(str(error)) from error
    except jwt.PyJWTError as error:
        raise LinkInvalidError(str(error)) from error
    return claims
