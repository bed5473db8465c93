"""Every error the API returns is an RFC 9457 problem (`application/problem+json`).

One shape for every failure lets the app show `detail` and branch on `type` (or `code`: the
registry of kinds is `serving.problem_types`, documented in docs/problems.md) without knowing
which layer failed. A plain `HTTPException` gets its status's usual kind; `ProblemError`
names a more specific one. Handlers cover:

- `HTTPException` (ours and Starlette's 404/405): status, detail and headers kept, so a 401
  still carries `WWW-Authenticate`;
- request validation (422): `detail` names each offending field ("query.limit: ...") and
  `errors` lists them one by one, without echoing the input back;
- a store that cannot be reached (503 with `Retry-After`): a transient outage, not a bug;
- anything else (500): logged with its traceback here, answered with a generic problem, so
  internals (SQL, hostnames, stack frames) never reach the client.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import redis
import sqlalchemy as sa
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.problem_types import (
    DEFAULT_BY_STATUS,
    INTERNAL_ERROR,
    SIGNING_KEYS_UNAVAILABLE,
    STORE_UNAVAILABLE,
    TOKEN_INVALID,
    TOKEN_MISSING,
    VALIDATION_ERROR,
    ProblemType,
)
from serving.schemas import ProblemOut

PROBLEM_MEDIA_TYPE = "application/problem+json"
RETRY_AFTER_SECONDS = 5
log = logging.getLogger(__name__)

_STORE_OUTAGES: tuple[type[Exception], ...] = (
    sa.exc.OperationalError,  # connection refused or lost, server shutting down
    sa.exc.TimeoutError,  # connection pool exhausted
    redis.ConnectionError,
    redis.TimeoutError,
)


class ProblemResponse(JSONResponse):
    """A JSON response announced as problem details."""

    media_type = PROBLEM_MEDIA_TYPE


class ProblemError(HTTPException):
    """An `HTTPException` of a specific kind: answered with that kind's `type` and `code`.

    Raise it where a status's usual kind (`DEFAULT_BY_STATUS`) would say too little for the
    app to act on, e.g. an expired invitation rather than any 410.
    """

    def __init__(
        self, kind: ProblemType, detail: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(kind.status, detail, dict(headers) if headers else None)
        self.kind = kind


def problem(
    request: Request,
    status: int,
    detail: str,
    *,
    kind: ProblemType | None = None,
    headers: Mapping[str, str] | None = None,
    **extensions: Any,
) -> ProblemResponse:
    """Build a problem response of `kind` (default: the status's usual kind)."""
    body = _body(status, detail, instance=request.url.path, kind=kind, **extensions)
    return ProblemResponse(body, status_code=status, headers=headers)


def problem_example(
    status: int,
    detail: str,
    *,
    instance: str,
    kind: ProblemType | None = None,
    **extensions: Any,
) -> dict[str, Any]:
    """The body `problem()` would send, for documentation: same fields, same `title`."""
    return _body(status, detail, instance=instance, kind=kind, **extensions)


def _body(
    status: int, detail: str, *, instance: str, kind: ProblemType | None, **extensions: Any
) -> dict[str, Any]:
    """The problem document: `type` and `code` from `kind`, `title` the status phrase (one
    title per kind, since each kind has one status). A status with no kind is about:blank."""
    kind = kind or DEFAULT_BY_STATUS.get(status)
    if kind is not None and kind.status != status:
        raise ValueError(f"problem kind {kind.code!r} is sent with {kind.status}, not {status}")
    body = ProblemOut(
        type=kind.uri if kind else "about:blank",
        code=kind.code if kind else None,
        title=_phrase(status),
        status=status,
        detail=detail,
        instance=instance,
        **extensions,
    )
    return body.model_dump(exclude_none=True)


# Headers the problem responses of these statuses carry, as `responses=` documents them.
_RETRY_AFTER = {
    "description": "Seconds to wait before retrying.",
    "schema": {"type": "string", "examples": ["5"]},
}
_PROBLEM_HEADERS: dict[int, dict[str, dict[str, Any]]] = {
    401: {
        "WWW-Authenticate": {
            "description": 'The RFC 6750 challenge: `Bearer`, with `error="invalid_token"` '
            "when a token was sent but refused.",
            "schema": {"type": "string", "examples": ['Bearer error="invalid_token"']},
        }
    },
    429: {"Retry-After": _RETRY_AFTER},
    503: {"Retry-After": _RETRY_AFTER},
}

# Per status: example name (also its summary) -> its body's `detail`, and `kind` (a
# `ProblemType`) or any extension when not the default. Routers give their own through
# `problem_responses(examples=)`.
_DEFAULT_EXAMPLES: dict[int, dict[str, dict[str, Any]]] = {
    400: {"Malformed body": {"detail": "There was an error parsing the body"}},
    401: {
        "Missing bearer token": {
            "kind": TOKEN_MISSING,
            "detail": "Missing bearer token: send 'Authorization: Bearer <token>'.",
        },
        "Invalid bearer token": {
            "kind": TOKEN_INVALID,
            "detail": "Invalid bearer token: token has expired.",
        },
    },
    404: {"Not found": {"detail": "User 42 does not exist."}},
    413: {
        "Body too large": {
            "detail": "body: the request body is larger than the 1048576 bytes this API accepts."
        }
    },
    422: {
        "Invalid query parameter": {
            "detail": "query.limit: Input should be less than or equal to 200",
            "errors": [
                {
                    "loc": ["query", "limit"],
                    "field": "query.limit",
                    "msg": "Input should be less than or equal to 200",
                    "type": "less_than_equal",
                }
            ],
        }
    },
    429: {
        "Rate limited": {
            "detail": "Rate limit exceeded for this user (100 requests per minute, bursts of "
            "200); retry in 1 s."
        }
    },
    503: {
        "Store unavailable": {
            "kind": STORE_UNAVAILABLE,
            "detail": "A data store is temporarily unreachable; retry shortly.",
        },
        "Signing keys unavailable": {
            "kind": SIGNING_KEYS_UNAVAILABLE,
            "detail": "Token signing keys are temporarily unavailable; retry shortly.",
        },
    },
}


def problem_responses(
    *statuses: int,
    instance: str = "/v1/feed",
    examples: Mapping[int, Mapping[str, Mapping[str, Any]]] | None = None,
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries documenting problem bodies for `statuses`.

    Each status gets named examples of its body, as `problem()` would build it for a request
    to `instance` (the path with example parameters filled in); `examples[status]` replaces
    the defaults of that status with `{name: {"detail": ..., "kind": ..., other fields...}}`
    (`kind` defaults to the status's usual one). 401, 429 and 503 also document the header
    they carry.
    """
    schema = ProblemOut.model_json_schema()
    overrides = examples or {}
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        named = overrides.get(status) or _DEFAULT_EXAMPLES.get(
            status, {_phrase(status): {"detail": _phrase(status)}}
        )
        entry: dict[str, Any] = {
            "description": _phrase(status),
            "content": {
                PROBLEM_MEDIA_TYPE: {
                    "schema": schema,
                    "examples": {
                        name: {"summary": name, "value": _example_body(status, instance, fields)}
                        for name, fields in named.items()
                    },
                }
            },
        }
        if status in _PROBLEM_HEADERS:
            entry["headers"] = _PROBLEM_HEADERS[status]
        responses[status] = entry
    return responses


def _example_body(status: int, instance: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    extra = dict(fields)
    detail = str(extra.pop("detail", _phrase(status)))
    kind: ProblemType | None = extra.pop("kind", None)
    return problem_example(status, detail, instance=instance, kind=kind, **extra)


def install_problem_handlers(app: FastAPI) -> None:
    """Register every handler on `app` (called once by `create_app`)."""
    app.add_exception_handler(StarletteHTTPException, _http_exception)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    for outage in _STORE_OUTAGES:
        app.add_exception_handler(outage, _store_unavailable)
    # `Exception` is routed to Starlette's outermost ServerErrorMiddleware, which sends this
    # response and then re-raises so the server also sees the failure. It only sees what
    # `UnhandledErrorMiddleware` (installed inside CORS by `serving.security`) did not catch:
    # failures in the outer middleware themselves.
    app.add_exception_handler(Exception, _unhandled)


class UnhandledErrorMiddleware:
    """Turns an unexpected exception into the generic 500 problem inside the middleware stack.

    Why: Starlette answers unhandled exceptions in its outermost layer, outside every user
    middleware, so those 500s lacked the security headers and CORS (a browser app could not
    even read them). Installed inside CORS, the problem passes through CORS, gzip and the
    security headers like any other response. The exception is logged with its traceback
    and not re-raised once answered; if the response had already started, nothing can be
    sent any more and it propagates as before.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            if started:
                raise
            response = await _unhandled(Request(scope), exc)
            await response(scope, receive, send)


async def _http_exception(request: Request, exc: StarletteHTTPException) -> Response:
    if exc.status_code in (204, 304):  # these statuses must not carry a body
        return Response(status_code=exc.status_code, headers=exc.headers)
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    headers = exc.headers
    if exc.status_code == 405:
        headers = {**(headers or {}), **_allow(request)}
    kind = exc.kind if isinstance(exc, ProblemError) else None
    return problem(request, exc.status_code, detail, kind=kind, headers=headers)


def _allow(request: Request) -> dict[str, str]:
    """Every method the API documents for this path (RFC 9110 asks `Allow` to list them all).

    Starlette names only the methods of the first route whose path matches, so a path served
    by two handlers (PUT and DELETE of one resource) would advertise one of them.
    """
    methods: set[str] = set()
    for template, operations in request.app.openapi().get("paths", {}).items():
        pattern = re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, request.url.path):
            methods.update(m.upper() for m in operations if m.upper() in _HTTP_METHODS)
    if "GET" in methods:
        methods.add("HEAD")
    return {"Allow": ", ".join(sorted(methods))} if methods else {}


_HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


async def _validation_error(request: Request, exc: RequestValidationError) -> ProblemResponse:
    errors = [
        {
            "loc": list(error["loc"]),
            "field": _field(error["loc"]),
            "msg": error["msg"],
            "type": error["type"],
        }
        for error in exc.errors()
    ]
    detail = "; ".join(f"{error['field']}: {error['msg']}" for error in errors)
    return problem(
        request, 422, detail or "Request validation failed", kind=VALIDATION_ERROR, errors=errors
    )


async def _store_unavailable(request: Request, exc: Exception) -> ProblemResponse:
    log.warning("store unavailable during %s %s: %r", request.method, request.url.path, exc)
    return problem(
        request,
        503,
        "A data store is temporarily unreachable; retry shortly.",
        kind=STORE_UNAVAILABLE,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


async def _unhandled(request: Request, exc: Exception) -> ProblemResponse:
    log.error("unhandled error during %s %s", request.method, request.url.path, exc_info=exc)
    return problem(request, 500, "An unexpected error occurred.", kind=INTERNAL_ERROR)


def _field(loc: Any) -> str:
    """`("query", "limit")` -> `"query.limit"`; list indexes stay in place (`body.items.0`)."""
    return ".".join(str(part) for part in loc)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
