"""A small client for Resend's `POST /emails`, with retries that never send an email twice.

Why its own client rather than Resend's SDK: the SDK has no retries, no timeouts we control
and no way to point it at a local fake per instance; everything that reaches the provider
must be testable against `sources.resend.fake` through the very code production runs.

Retries (tenacity, through `sources.http.build_retrying`) cover 429, 5xx, a 409
`concurrent_idempotent_requests` and transport errors, waiting what `retry-after` asks for
(else capped exponential backoff with jitter). Every attempt of one `send` carries the same
`Idempotency-Key`, so an attempt that reached Resend but whose answer was lost is not sent a
second time: Resend answers the retry with the first attempt's id. Callers should pass a key
derived from what they are sending (an invite id, a digest's dedupe key) so a retry by the
*caller* (a re-run, a crash and restart within Resend's 24-hour window) is also recognised.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

import httpx
from tenacity import RetryCallState

from sources.http import (
    RetryableFailure,
    build_retrying,
    parse_retry_after,
    protect_secret,
)

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.resend.com"
USER_AGENT = "godo-email/1"


@dataclass(frozen=True)
class Email:
    """One message as Resend takes it. `tags` become Resend's `[{name, value}]` list."""

    sender: str
    to: Sequence[str]
    subject: str
    html: str
    text: str
    headers: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        """The JSON body of `POST /emails`."""
        body: dict[str, Any] = {
            "from": self.sender,
            "to": list(self.to),
            "subject": self.subject,
            "html": self.html,
            "text": self.text,
        }
        if self.headers:
            body["headers"] = dict(self.headers)
        if self.tags:
            body["tags"] = [{"name": k, "value": v} for k, v in self.tags.items()]
        return body

    def default_idempotency_key(self) -> str:
        """A key from the content itself, for callers without a natural one."""
        digest = hashlib.sha256(json.dumps(self.payload(), sort_keys=True).encode()).hexdigest()
        return f"godo-{digest[:48]}"


class ResendError(Exception):
    """Resend refused the email (or could not be reached); fields mirror its error JSON.

    `status` is the HTTP status (None for a transport failure), `name` Resend's error name
    (`validation_error`, `rate_limit_exceeded`, ...). The message never contains the API key.
    """

    def __init__(self, status: int | None, name: str, message: str) -> None:
        super().__init__(f"resend {status or 'unreachable'} {name}: {message}")
        self.status = status
        self.name = name
        self.message = message


class ResendUnavailableError(ResendError):
    """Every attempt failed transiently (429, 5xx, timeouts); worth trying again later."""


class EmailSender:
    """What the API and the pipelines need from a provider; `ResendClient` is the real one."""

    def send(self, email: Email, *, idempotency_key: str | None = None) -> str:
        """Send `email`; return the provider's message id."""
        raise NotImplementedError


_RETRYABLE_CONFLICT = "concurrent_idempotent_requests"


class ResendClient(EmailSender):
    """Resend over httpx. Thread-safe (httpx.Client is); close it, or use it as a context."""

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        timeout_seconds: float = 10.0,
        max_attempts: int = 4,
        max_backoff_seconds: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not api_key:
            raise ValueError("a Resend API key is required")
        protect_secret(api_key)  # httpx/httpcore logs never show it
        self.base_url = base_url.rstrip("/")
        self.max_attempts = max_attempts
        self.max_backoff_seconds = max_backoff_seconds
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=timeout_seconds,
            transport=transport,
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": USER_AGENT},
        )
        self.attempts = 0  # every HTTP attempt made, for tests and metrics

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def send(self, email: Email, *, idempotency_key: str | None = None) -> str:
        """POST the email, retrying transient failures with the same `Idempotency-Key`.

        Raises `ResendError` for a refusal (422 validation, 401/403 key, 409 idempotency key
        reused for another payload) and `ResendUnavailableError` when retries ran out.
        """
        key = idempotency_key or email.default_idempotency_key()
        payload = email.payload()
        retrying = build_retrying(
            max_attempts=self.max_attempts,
            max_backoff_seconds=self.max_backoff_seconds,
            sleep=self._sleep,
            before_sleep=_log_retry,
        )
        try:
            for attempt in retrying:
                with attempt:
                    return self._attempt(payload, key)
        except RetryableFailure as failure:
            status = failure.status if isinstance(failure.status, int) else None
            raise ResendUnavailableError(
                status, str(failure.status or "transport_error"), failure.description
            ) from failure
        raise AssertionError("unreachable: tenacity either returns or raises")

    def _attempt(self, payload: dict[str, Any], key: str) -> str:
        self.attempts += 1
        try:
            response = self._http.post("/emails", json=payload, headers={"Idempotency-Key": key})
        except httpx.TransportError as transport_error:  # timeouts, refused, resets
            raise RetryableFailure(
                f"transport error: {type(transport_error).__name__}"
            ) from transport_error
        if response.status_code in (200, 201):
            message_id = _json(response).get("id")
            if not isinstance(message_id, str):
                raise ResendError(response.status_code, "invalid_response", "no id in response")
            return message_id
        error = _error(response)
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        if (
            response.status_code == 429
            or response.status_code >= 500
            or (error.name == _RETRYABLE_CONFLICT)
        ):
            raise RetryableFailure(
                f"{response.status_code} {error.name}: {error.message}",
                status=response.status_code,
                retry_after=retry_after,
                throttled=response.status_code == 429,
            )
        raise error


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _error(response: httpx.Response) -> ResendError:
    """Resend's `{statusCode, name, message}`, tolerating a body that is not that shape."""
    body = _json(response)
    name = body.get("name")
    message = body.get("message")
    return ResendError(
        response.status_code,
        name if isinstance(name, str) else "unknown_error",
        message if isinstance(message, str) else response.reason_phrase,
    )


def _log_retry(state: RetryCallState) -> None:
    outcome = state.outcome
    error = outcome.exception() if outcome is not None else None
    wait = state.next_action.sleep if state.next_action is not None else 0.0
    log.warning(
        "resend attempt %d failed (%s); retrying in %.1f s", state.attempt_number, error, wait
    )
