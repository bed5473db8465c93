"""A client for Expo's push API: send messages, then read their receipts.

Why a client of our own rather than an SDK: the pipelines need exactly two calls, the same
retry discipline as the other upstream clients (`sources.http`: capped backoff with jitter,
`Retry-After` honoured) and a typed view of Expo's answers, which mix per-message errors
(a ticket with `status: error`) into an HTTP 200.

- `POST /--/api/v2/push/send` takes at most 100 messages; `send` chunks and returns one
  `Ticket` per message, in order.
- `POST /--/api/v2/push/getReceipts` takes `{"ids": [...]}`; `receipts` chunks by 1000 and
  returns the receipts Expo has (ids it does not know yet are simply absent).

429 and 5xx (and transport errors) are retried; any other non-2xx raises `ExpoError` at once.
A request-level error body (`{"errors": [...]}`) is surfaced in the exception message.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import httpx

from sources.http import RetryableFailure, build_retrying, parse_retry_after

log = logging.getLogger(__name__)

SEND_PATH = "/--/api/v2/push/send"
RECEIPTS_PATH = "/--/api/v2/push/getReceipts"
MAX_MESSAGES_PER_REQUEST = 100
MAX_RECEIPT_IDS_PER_REQUEST = 1000
DEVICE_NOT_REGISTERED = "DeviceNotRegistered"
T = TypeVar("T")


class ExpoError(RuntimeError):
    """A request Expo refused or that kept failing after retries."""


@dataclass(frozen=True)
class PushMessage:
    """One notification to one device (Expo's message fields we use)."""

    to: str
    title: str
    body: str
    data: dict[str, Any] = field(default_factory=dict)
    sound: str | None = "default"
    channel_id: str | None = None  # Android notification channel

    def to_json(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"to": self.to, "title": self.title, "body": self.body}
        if self.data:
            payload["data"] = self.data
        if self.sound is not None:
            payload["sound"] = self.sound
        if self.channel_id is not None:
            payload["channelId"] = self.channel_id
        return payload


@dataclass(frozen=True)
class Ticket:
    """Expo's answer for one message: an id to ask for a receipt with, or an error."""

    status: Literal["ok", "error"]
    id: str | None = None
    message: str | None = None
    error: str | None = None  # details.error, e.g. DeviceNotRegistered, MessageTooBig

    @property
    def device_not_registered(self) -> bool:
        return self.error == DEVICE_NOT_REGISTERED


@dataclass(frozen=True)
class Receipt:
    """Whether Expo handed a ticket's message to Apple/Google (`ok`), or why not."""

    status: Literal["ok", "error"]
    message: str | None = None
    error: str | None = None

    @property
    def device_not_registered(self) -> bool:
        return self.error == DEVICE_NOT_REGISTERED


def _chunks(items: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _ticket(raw: Any) -> Ticket:
    if not isinstance(raw, dict) or raw.get("status") not in ("ok", "error"):
        raise ExpoError(f"unexpected push ticket: {raw!r}")
    details = raw.get("details")
    if not isinstance(details, dict):
        details = {}
    return Ticket(
        status=raw["status"],
        id=raw.get("id"),
        message=raw.get("message"),
        error=details.get("error"),
    )


def _receipt(raw: Any) -> Receipt:
    if not isinstance(raw, dict) or raw.get("status") not in ("ok", "error"):
        raise ExpoError(f"unexpected push receipt: {raw!r}")
    details = raw.get("details")
    if not isinstance(details, dict):
        details = {}
    return Receipt(status=raw["status"], message=raw.get("message"), error=details.get("error"))


class ExpoClient:
    """Expo push over httpx; retries 429/5xx with backoff (`Retry-After` wins when sent).

    `access_token` is only needed when the Expo project enables "enhanced push security";
    it travels as `Authorization: Bearer ...` and is never logged.
    """

    def __init__(
        self,
        base_url: str = "https://exp.host",
        *,
        access_token: str | None = None,
        timeout: float = 30.0,
        max_attempts: int = 5,
        max_backoff_seconds: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Accept": "application/json", "Accept-Encoding": "gzip, deflate"}
        if access_token:
            headers["Authorization"] = f"Bearer {access_token}"
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"), headers=headers, timeout=timeout, transport=transport
        )
        self._max_attempts = max_attempts
        self._max_backoff = max_backoff_seconds
        self._sleep = sleep
        self.attempts = 0  # every HTTP attempt, retries included (for tests and metadata)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ExpoClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, messages: Sequence[PushMessage]) -> list[Ticket]:
        """One ticket per message, in the order given; requests of at most 100 messages."""
        tickets: list[Ticket] = []
        for chunk in _chunks(messages, MAX_MESSAGES_PER_REQUEST):
            body = self._post(SEND_PATH, [m.to_json() for m in chunk])
            data = body.get("data")
            if not isinstance(data, list) or len(data) != len(chunk):
                raise ExpoError(
                    f"push/send answered {len(data) if isinstance(data, list) else data!r} "
                    f"tickets for {len(chunk)} messages"
                )
            tickets.extend(_ticket(raw) for raw in data)
        return tickets

    def receipts(self, ticket_ids: Sequence[str]) -> dict[str, Receipt]:
        """The receipts Expo has for these tickets; ids without one yet are left out."""
        found: dict[str, Receipt] = {}
        for chunk in _chunks(list(ticket_ids), MAX_RECEIPT_IDS_PER_REQUEST):
            data = self._post(RECEIPTS_PATH, {"ids": list(chunk)}).get("data")
            if not isinstance(data, dict):
                raise ExpoError(f"push/getReceipts answered unexpected data: {data!r}")
            found.update({ticket_id: _receipt(raw) for ticket_id, raw in data.items()})
        return found

    def _post(self, path: str, payload: Any) -> dict[str, Any]:
        retrying = build_retrying(
            max_attempts=self._max_attempts,
            max_backoff_seconds=self._max_backoff,
            sleep=self._sleep,
        )
        try:
            for attempt in retrying:
                with attempt:
                    return self._attempt(path, payload)
        except RetryableFailure as failure:
            raise ExpoError(f"{path} kept failing: {failure.description}") from failure
        raise AssertionError("unreachable: tenacity re-raises or returns")  # pragma: no cover

    def _attempt(self, path: str, payload: Any) -> dict[str, Any]:
        self.attempts += 1
        try:
            response = self._http.post(path, json=payload)
        except httpx.TransportError as error:
            raise RetryableFailure(f"{type(error).__name__}: {error}") from error
        if response.status_code == 429 or response.status_code >= 500:
            raise RetryableFailure(
                f"HTTP {response.status_code}",
                status=response.status_code,
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
                throttled=response.status_code == 429,
            )
        try:
            body = response.json()
        except ValueError as error:
            raise ExpoError(f"{path}: HTTP {response.status_code}, body is not JSON") from error
        if response.status_code >= 400 or not isinstance(body, dict):
            errors = body.get("errors") if isinstance(body, dict) else body
            raise ExpoError(f"{path}: HTTP {response.status_code}: {errors!r}")
        if body.get("errors") and "data" not in body:
            raise ExpoError(f"{path}: {body['errors']!r}")
        return body
