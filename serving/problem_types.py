"""Every kind of error the API answers, each with a stable problem `type` URI and `code`.

RFC 9457 lets `type` name the kind of problem; the app branches on it (or on `code`, the same
name without the prefix), never on `detail`, which is written for people and may change. The
URIs are relative, `/problems/<code>` (RFC 9457 resolves them against the request's URL):
identifiers to compare, not pages to fetch. `docs/problems.md` documents each kind; a test
keeps it equal to `PROBLEM_TYPES`, and another provokes every kind through the real app.

Each kind has one status. A status's usual kind (`DEFAULT_BY_STATUS`) needs no mention where
the error is raised: a plain `HTTPException(404, ...)` is `not-found`. A more specific kind is
raised as `serving.problems.ProblemError(KIND, detail)`. A status with no kind here would be
answered as `about:blank`, the RFC's "nothing more than the status"; every status the API
documents has one (tests/unit/serving/test_openapi.py).

Once shipped, a code is never renamed or reused for another meaning: add a kind instead.
"""

from __future__ import annotations

from dataclasses import dataclass

PROBLEM_TYPE_PREFIX = "/problems/"


@dataclass(frozen=True)
class ProblemType:
    """One kind of error: its `code`, the status it is always sent with, and when it happens."""

    code: str
    status: int
    when: str

    @property
    def uri(self) -> str:
        """The problem's `type`: `/problems/<code>`."""
        return PROBLEM_TYPE_PREFIX + self.code


BAD_REQUEST = ProblemType(
    "bad-request", 400, "The body cannot be read (not UTF-8); a JSON syntax error is a 422."
)
TOKEN_MISSING = ProblemType(
    "token-missing", 401, "No bearer token was sent (`Authorization: Bearer <token>`)."
)
TOKEN_INVALID = ProblemType(
    "token-invalid", 401, "The bearer token was refused: expired, badly signed, wrong audience."
)
ACCOUNT_NOT_LINKED = ProblemType(
    "account-not-linked", 401, "The token's account (a UUID subject) has no Godo user linked."
)
UNAUTHORIZED = ProblemType("unauthorized", 401, "Any other missing or refused credential.")
FORBIDDEN = ProblemType("forbidden", 403, "Valid credentials without the right (admin role).")
NOT_FOUND = ProblemType("not-found", 404, "No such route, resource or link token.")
METHOD_NOT_ALLOWED = ProblemType(
    "method-not-allowed", 405, "The path exists, not with this method (`Allow` lists them)."
)
ALREADY_INVITED = ProblemType(
    "already-invited", 409, "The caller's earlier invitation to this address is still pending."
)
FEED_CURSOR_EXPIRED = ProblemType(
    "feed-cursor-expired", 410, "The feed cursor's run was replaced: reload without a cursor."
)
INVITE_EXPIRED = ProblemType("invite-expired", 410, "The invitation link has expired.")
BODY_TOO_LARGE = ProblemType(
    "body-too-large", 413, "The request body is larger than the API accepts."
)
VALIDATION_ERROR = ProblemType(
    "validation-error", 422, "A parameter or body field is invalid; `errors` lists each one."
)
RATE_LIMITED = ProblemType(
    "rate-limited", 429, "Too many requests from this user or address; wait `Retry-After`."
)
INVITE_LIMIT_REACHED = ProblemType(
    "invite-limit-reached",
    429,
    "Too many invitations in 24 hours from the caller or to the address.",
)
INTERNAL_ERROR = ProblemType("internal-error", 500, "A bug: logged, and nothing internal is said.")
STORE_UNAVAILABLE = ProblemType(
    "store-unavailable", 503, "Postgres or Redis is unreachable; retry after `Retry-After`."
)
SIGNING_KEYS_UNAVAILABLE = ProblemType(
    "signing-keys-unavailable", 503, "Token signing keys cannot be fetched; the token may be fine."
)
EMAIL_UNAVAILABLE = ProblemType(
    "email-unavailable", 503, "Email is not configured, or the provider refused the message."
)

PROBLEM_TYPES: tuple[ProblemType, ...] = (
    BAD_REQUEST,
    TOKEN_MISSING,
    TOKEN_INVALID,
    ACCOUNT_NOT_LINKED,
    UNAUTHORIZED,
    FORBIDDEN,
    NOT_FOUND,
    METHOD_NOT_ALLOWED,
    ALREADY_INVITED,
    FEED_CURSOR_EXPIRED,
    INVITE_EXPIRED,
    BODY_TOO_LARGE,
    VALIDATION_ERROR,
    RATE_LIMITED,
    INVITE_LIMIT_REACHED,
    INTERNAL_ERROR,
    STORE_UNAVAILABLE,
    SIGNING_KEYS_UNAVAILABLE,
    EMAIL_UNAVAILABLE,
)
BY_CODE = {kind.code: kind for kind in PROBLEM_TYPES}
# The kind an error of this status is unless it is raised as a more specific one.
DEFAULT_BY_STATUS: dict[int, ProblemType] = {
    kind.status: kind
    for kind in (
        BAD_REQUEST,
        UNAUTHORIZED,
        FORBIDDEN,
        NOT_FOUND,
        METHOD_NOT_ALLOWED,
        BODY_TOO_LARGE,
        VALIDATION_ERROR,
        RATE_LIMITED,
        INTERNAL_ERROR,
    )
}
