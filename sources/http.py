"""Shared HTTP plumbing for the upstream clients: rate budget, retry policy, secret redaction.

Why one small module: the Eventbrite and Google Maps clients must behave the same way under
pressure (count every attempt, honour ``Retry-After``, never leak a credential), and a single
implementation is the only way to keep that true as the clients evolve. Everything here is
transport-agnostic: the clients decide *what* is retryable, this module decides *how*.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Self
from urllib.parse import quote, quote_plus

from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt
from tenacity.stop import stop_base
from tenacity.wait import wait_base

__all__ = [
    "HTTP_LOGGER_NAMES",
    "REDACTED",
    "BudgetExhausted",
    "CallStats",
    "RateBudget",
    "RetryableFailure",
    "SecretRedactingFilter",
    "build_retrying",
    "parse_retry_after",
    "protect_secret",
    "redact",
    "release_secret",
    "wait_retry_after",
]

REDACTED = "[REDACTED]"

# Loggers that may render a request (httpx logs every URL at INFO; httpcore logs at DEBUG).
# Filters on a logger only see records created by that exact logger, not its children, so the
# httpcore children are listed one by one.
HTTP_LOGGER_NAMES = (
    "httpx",
    "httpcore",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
)


# --------------------------------------------------------------------------------------------
# Rate budget
# --------------------------------------------------------------------------------------------


class BudgetExhausted(RuntimeError):
    """The client-side call budget is spent; ``retry_in_seconds`` says when a slot frees.

    Raised instead of sleeping: a scheduled ingest should stop, keep what it has, and resume on
    its next tick rather than block a worker for up to an hour.
    """

    def __init__(self, calls_per_window: int, window_seconds: float, retry_in_seconds: float):
        self.calls_per_window = calls_per_window
        self.window_seconds = window_seconds
        self.retry_in_seconds = retry_in_seconds
        super().__init__(
            f"client-side rate budget of {calls_per_window} calls per {window_seconds:g}s is "
            f"spent; next slot frees in {retry_in_seconds:.1f}s"
        )


class RateBudget:
    """Sliding-window call budget (default: per hour), shared by every attempt of a client.

    Why client-side: upstream limits (Eventbrite's commonly quoted 2,000 calls/hour) are enforced
    per token, and discovering them through 429s wastes calls and risks a longer ban. Retries
    spend budget too, because upstream counts them. The window slides (timestamps of recent
    calls, not fixed buckets) so a burst at minute 59 cannot be followed by another at minute 61.

    The budget lives in one process; several processes sharing a token need a budget each that
    sums to the upstream limit. Thread-safe.
    """

    def __init__(
        self,
        calls_per_hour: int,
        clock: Callable[[], float] = time.monotonic,
        *,
        window_seconds: float = 3600.0,
    ) -> None:
        if calls_per_hour <= 0:
            raise ValueError(f"calls_per_hour must be positive, got {calls_per_hour}")
        if window_seconds <= 0:
            raise ValueError(f"window_seconds must be positive, got {window_seconds}")
        self.calls_per_hour = calls_per_hour
        self.window_seconds = window_seconds
        self._clock = clock
        self._calls: deque[float] = deque()
        self._lock = threading.Lock()

    def _expire(self, now: float) -> None:
        horizon = now - self.window_seconds
        while self._calls and self._calls[0] <= horizon:
            self._calls.popleft()

    def acquire(self) -> None:
        """Take one slot now, or raise `BudgetExhausted` without taking one."""
        with self._lock:
            now = self._clock()
            self._expire(now)
            if len(self._calls) >= self.calls_per_hour:
                retry_in = max(0.0, self._calls[0] + self.window_seconds - now)
                raise BudgetExhausted(self.calls_per_hour, self.window_seconds, retry_in)
            self._calls.append(now)

    @property
    def remaining(self) -> int:
        """Slots available right now (for asset metadata and pre-flight checks)."""
        with self._lock:
            self._expire(self._clock())
            return self.calls_per_hour - len(self._calls)


# --------------------------------------------------------------------------------------------
# Call statistics
# --------------------------------------------------------------------------------------------


@dataclass
class CallStats:
    """What a client did, for asset metadata and cost estimates.

    - ``calls``: HTTP attempts sent (retries included: they cost budget and, often, money);
    - ``retries``: attempts that were repeats of a failed one;
    - ``throttled``: attempts the upstream rejected for rate or quota (HTTP 429,
      ``OVER_QUERY_LIMIT``);
    - ``errors``: attempts that did not succeed, whatever happened next (timeouts, 5xx, 4xx,
      error statuses);
    - ``calls_by_api``: ``calls`` split by upstream API (e.g. ``geocoding``, ``place_details``).

    Not synchronised: one client instance per thread, or accept approximate counts.
    """

    calls: int = 0
    retries: int = 0
    throttled: int = 0
    errors: int = 0
    calls_by_api: dict[str, int] = field(default_factory=dict)

    def count_call(self, api: str) -> None:
        self.calls += 1
        self.calls_by_api[api] = self.calls_by_api.get(api, 0) + 1

    def as_dict(self) -> dict[str, int]:
        """Flat numbers, e.g. for Dagster output metadata."""
        flat = {
            "calls": self.calls,
            "retries": self.retries,
            "throttled": self.throttled,
            "errors": self.errors,
        }
        flat.update({f"calls.{api}": n for api, n in sorted(self.calls_by_api.items())})
        return flat


# --------------------------------------------------------------------------------------------
# Retry policy
# --------------------------------------------------------------------------------------------


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), else None.

    RFC 9110 allows both forms. A date in the past means "now" (0.0); anything unparseable is
    ignored (None) so the caller falls back to its own backoff rather than trusting garbage.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    reference = now if now is not None else datetime.now(UTC)
    return max(0.0, (when - reference).total_seconds())


class RetryableFailure(Exception):
    """One attempt failed in a way worth repeating (429, 5xx, timeout, transient status).

    Clients raise it inside a tenacity attempt; `build_retrying` retries only this type, so
    every other exception (a 401, a bad request) propagates on the first attempt. The message
    must already be redacted: it ends up in the client's final error.
    """

    def __init__(
        self,
        description: str,
        *,
        status: int | str | None = None,
        retry_after: float | None = None,
        throttled: bool = False,
    ) -> None:
        super().__init__(description)
        self.description = description
        self.status = status
        self.retry_after = retry_after
        self.throttled = throttled


def _last_failure(retry_state: RetryCallState) -> RetryableFailure | None:
    outcome = retry_state.outcome
    if outcome is None or not outcome.failed:
        return None
    exc = outcome.exception()
    return exc if isinstance(exc, RetryableFailure) else None


class wait_retry_after(wait_base):  # noqa: N801 - tenacity's naming convention for strategies
    """Wait what the server asked for (``Retry-After``), else capped exponential with jitter.

    Backoff without a hint is ``min(max, base * 2**(n-1)) + uniform(0, jitter)`` capped at
    ``max``: the jitter spreads synchronised clients (every metro partition retrying at once)
    so they do not hit the upstream in lockstep.
    """

    def __init__(
        self,
        *,
        max_backoff_seconds: float,
        base_seconds: float = 0.5,
        jitter_seconds: float = 1.0,
        rng: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self.max_backoff_seconds = max_backoff_seconds
        self.base_seconds = base_seconds
        self.jitter_seconds = jitter_seconds
        self._rng = rng

    def __call__(self, retry_state: RetryCallState) -> float:
        failure = _last_failure(retry_state)
        if failure is not None and failure.retry_after is not None:
            return min(failure.retry_after, self.max_backoff_seconds)
        exponent = max(0, retry_state.attempt_number - 1)
        backoff = min(self.max_backoff_seconds, self.base_seconds * 2**exponent)
        jitter = self._rng(0.0, self.jitter_seconds)
        return min(self.max_backoff_seconds, backoff + jitter)


class _stop_when_retry_after_exceeds(stop_base):  # noqa: N801
    """Give up when the server asks for a longer pause than we are willing to sleep.

    Retrying early would only earn another 429 and burn budget; the scheduler's next run is
    the right place to resume.
    """

    def __init__(self, limit_seconds: float) -> None:
        self.limit_seconds = limit_seconds

    def __call__(self, retry_state: RetryCallState) -> bool:
        failure = _last_failure(retry_state)
        return (
            failure is not None
            and failure.retry_after is not None
            and failure.retry_after > self.limit_seconds
        )


def build_retrying(
    *,
    max_attempts: int,
    max_backoff_seconds: float,
    sleep: Callable[[float], None],
    before_sleep: Callable[[RetryCallState], None] | None = None,
    rng: Callable[[float, float], float] = random.uniform,
) -> Retrying:
    """A fresh tenacity `Retrying` for one logical call (statistics are per instance).

    Retries `RetryableFailure` only, at most ``max_attempts`` attempts in total, re-raising the
    last failure when it gives up so the client can wrap it in its own "unavailable" error.
    """
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
    return Retrying(
        sleep=sleep,
        stop=stop_after_attempt(max_attempts) | _stop_when_retry_after_exceeds(max_backoff_seconds),
        wait=wait_retry_after(max_backoff_seconds=max_backoff_seconds, rng=rng),
        retry=retry_if_exception_type(RetryableFailure),
        before_sleep=before_sleep,
        reraise=True,
    )


# --------------------------------------------------------------------------------------------
# Secret redaction
# --------------------------------------------------------------------------------------------


def _variants(secret: str) -> set[str]:
    # The secret as written, and as it appears percent-encoded in a logged URL.
    return {v for v in (secret, quote(secret, safe=""), quote_plus(secret, safe="")) if v}


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret (raw or URL-encoded) replaced."""
    for secret in secrets:
        if not secret:
            continue
        for variant in sorted(_variants(secret), key=len, reverse=True):
            text = text.replace(variant, REDACTED)
    return text


class SecretRedactingFilter(logging.Filter):
    """A logging filter that rewrites records so registered secrets never reach a handler.

    Why a filter and not "just don't log it": httpx logs every request URL at INFO, and the
    Geocoding API only takes its key in the query string. The filter renders the message,
    redacts it, and freezes the result (``args`` cleared), so handlers downstream, including
    pytest's caplog, only ever see the redacted text.
    """

    def __init__(self) -> None:
        super().__init__()
        self._secrets: Counter[str] = Counter()
        self._lock = threading.Lock()

    def add(self, secret: str) -> None:
        with self._lock:
            self._secrets[secret] += 1

    def remove(self, secret: str) -> None:
        with self._lock:
            if secret not in self._secrets:
                return
            self._secrets[secret] -= 1
            if self._secrets[secret] <= 0:
                del self._secrets[secret]

    def secrets(self) -> list[str]:
        with self._lock:
            return list(self._secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = self.secrets()
        if not secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is the logging module's problem, not ours
            message = str(record.msg)
        cleaned = redact(message, secrets)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text, secrets)
        return True


_FILTER = SecretRedactingFilter()
_INSTALLED: set[str] = set()
_INSTALL_LOCK = threading.Lock()


def protect_secret(secret: str, *, extra_loggers: Iterable[str] = ()) -> None:
    """Register ``secret`` for redaction on the HTTP loggers and ``extra_loggers``.

    Call once per client that holds the secret and `release_secret` when it closes; secrets are
    reference-counted, so two clients sharing a token do not unprotect each other.
    """
    if not secret:
        return
    with _INSTALL_LOCK:
        for name in (*HTTP_LOGGER_NAMES, *extra_loggers):
            if name not in _INSTALLED:
                logging.getLogger(name).addFilter(_FILTER)
                _INSTALLED.add(name)
    _FILTER.add(secret)


def release_secret(secret: str) -> None:
    """Undo one `protect_secret` (the filter stays installed; it is cheap when idle)."""
    if secret:
        _FILTER.remove(secret)


class ClosingClient:
    """`with client:` for API clients: `close()` releases connections on the way out."""

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release connections."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
