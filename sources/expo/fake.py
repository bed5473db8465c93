"""A local fake of Expo's push service: `push/send` and `push/getReceipts`, real JSON shapes.

Why: the push assets must be tested, and the demo must run, through the same `ExpoClient`
production uses, without a device, an Expo account or network. `FakeExpo` serves on a free
localhost port in a daemon thread (standard library `http.server`, like `sources.fakes`),
records every message it accepted, and has switches for what real Expo does to us:

- `unregistered_at_send`: tokens whose tickets come back `DeviceNotRegistered` right away;
- `unregistered_at_receipt`: tokens accepted at send time whose receipts later say
  `DeviceNotRegistered` (the usual way an uninstalled app shows up);
- `throttle(n)`: the next `n` requests are answered 429 with `Retry-After: 0`;
- `receipts_ready`: while False, getReceipts knows no ids yet (receipts take a while);
- `receipt_errors`: token -> receipt error (`MessageRateExceeded`, `ProviderError`, ...) for
  messages accepted while it is set, as Expo reports a provider's refusal later;
- `outage`: while True, every request is answered 503 (an Expo outage).

Like Expo it refuses more than 100 messages per send (HTTP 400, `PUSH_TOO_MANY_NOTIFICATIONS`)
and answers a malformed token with a `DeviceNotRegistered` error ticket, as Expo does. With
`access_token` set, requests without `Authorization: Bearer <it>` get a 401.

Run by hand: `python -m sources.expo.fake --port 8090`, then point `GODO_EXPO_BASE_URL` at it.
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sources.expo.client import MAX_MESSAGES_PER_REQUEST, RECEIPTS_PATH, SEND_PATH
from sources.fakes.lifecycle import LocalFakeServer

TOKEN_PATTERN = re.compile(r"^Expo(?:nent)?PushToken\[[^\[\]\s]+\]$")


@dataclass(frozen=True)
class SentMessage:
    """One message the fake accepted (got an `ok` ticket), with the ticket's id."""

    ticket_id: str
    to: str
    title: str | None
    body: str | None
    data: dict[str, Any]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeExpo


class FakeExpo(LocalFakeServer):
    """Expo push on localhost; use as a context manager or `start()`/`stop()`."""

    def __init__(
        self, *, host: str = "127.0.0.1", port: int = 0, access_token: str | None = None
    ) -> None:
        super().__init__(host=host, port=port)
        self.access_token = access_token
        self.unregistered_at_send: set[str] = set()
        self.unregistered_at_receipt: set[str] = set()
        self.receipts_ready = True
        self.receipt_errors: dict[str, str] = {}
        self.outage = False
        self._receipt_error_of: dict[str, str] = {}  # ticket id -> error, fixed at send time
        self._throttle_left = 0
        self._lock = threading.Lock()
        self._sent: list[SentMessage] = []
        self._tickets: dict[str, str] = {}  # ticket id -> token
        self._requests: list[tuple[str, int]] = []  # (path, HTTP status answered)
        self._receipt_requests: list[list[str]] = []
        self._send_batches: list[int] = []  # messages per send request received

    # -- switches and records -------------------------------------------------------------

    def throttle(self, requests: int) -> None:
        """Answer the next `requests` requests with 429 (Expo's rate limit)."""
        with self._lock:
            self._throttle_left = requests

    @property
    def sent(self) -> list[SentMessage]:
        with self._lock:
            return list(self._sent)

    @property
    def requests(self) -> list[tuple[str, int]]:
        with self._lock:
            return list(self._requests)

    @property
    def send_batches(self) -> list[int]:
        with self._lock:
            return list(self._send_batches)

    @property
    def receipt_requests(self) -> list[list[str]]:
        with self._lock:
            return [list(ids) for ids in self._receipt_requests]

    def reset(self) -> None:
        """Forget what was received (switches stay)."""
        with self._lock:
            self._sent.clear()
            self._tickets.clear()
            self._receipt_error_of.clear()
            self._requests.clear()
            self._receipt_requests.clear()
            self._send_batches.clear()

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    thread_name = "fake-expo"

    def _make_server(self) -> _Server:
        server = _Server((self.host, self.port), _Handler)
        server.fake = self
        return server

    # -- the two endpoints ----------------------------------------------------------------

    def handle(self, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, Any]:
        """Status and JSON body for one POST; records it."""
        status, body = self._answer(path, headers, raw)
        with self._lock:
            self._requests.append((path, status))
        return status, body

    def _answer(self, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, Any]:
        with self._lock:
            if self._throttle_left > 0:
                self._throttle_left -= 1
                return 429, _errors("TOO_MANY_REQUESTS", "Rate limit exceeded; retry later.")
            if self.outage:
                return 503, _errors("SERVICE_UNAVAILABLE", "The service is unavailable.")
        if self.access_token is not None and (
            headers.get("authorization") != f"Bearer {self.access_token}"
        ):
            return 401, _errors("UNAUTHORIZED", "Insufficient permissions: bad access token.")
        try:
            payload = json.loads(raw or b"null")
        except ValueError:
            return 400, _errors("VALIDATION_ERROR", "The request body is not valid JSON.")
        if path == SEND_PATH:
            return self._send(payload)
        if path == RECEIPTS_PATH:
            return self._receipts(payload)
        return 404, _errors("NOT_FOUND", f"No route for {path}.")

    def _send(self, payload: Any) -> tuple[int, Any]:
        messages = payload if isinstance(payload, list) else [payload]
        if len(messages) > MAX_MESSAGES_PER_REQUEST:
            return 400, _errors(
                "PUSH_TOO_MANY_NOTIFICATIONS",
                f"You are trying to send more than {MAX_MESSAGES_PER_REQUEST} push "
                "notifications in one request.",
            )
        if not all(isinstance(m, dict) and isinstance(m.get("to"), str) for m in messages):
            return 400, _errors("VALIDATION_ERROR", '"to" is required and must be a string.')
        tickets = []
        with self._lock:
            self._send_batches.append(len(messages))
            for message in messages:
                token = message["to"]
                if not TOKEN_PATTERN.match(token):
                    tickets.append(
                        _error_ticket(
                            f'"{token}" is not a valid Expo push token', "DeviceNotRegistered"
                        )
                    )
                    continue
                if token in self.unregistered_at_send:
                    tickets.append(
                        _error_ticket(
                            f'"{token}" is not a registered push notification recipient',
                            "DeviceNotRegistered",
                            expoPushToken=token,
                        )
                    )
                    continue
                ticket_id = str(uuid.uuid4())
                self._tickets[ticket_id] = token
                if token in self.receipt_errors:
                    self._receipt_error_of[ticket_id] = self.receipt_errors[token]
                self._sent.append(
                    SentMessage(
                        ticket_id=ticket_id,
                        to=token,
                        title=message.get("title"),
                        body=message.get("body"),
                        data=dict(message.get("data") or {}),
                    )
                )
                tickets.append({"status": "ok", "id": ticket_id})
        return 200, {"data": tickets}

    def _receipts(self, payload: Any) -> tuple[int, Any]:
        ids = payload.get("ids") if isinstance(payload, dict) else None
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            return 400, _errors("VALIDATION_ERROR", '"ids" must be an array of strings.')
        data: dict[str, Any] = {}
        with self._lock:
            self._receipt_requests.append(list(ids))
            if not self.receipts_ready:
                return 200, {"data": {}}
            for ticket_id in ids:
                token = self._tickets.get(ticket_id)
                if token is None:
                    continue  # unknown or expired ticket: Expo leaves it out
                if ticket_id in self._receipt_error_of:
                    error = self._receipt_error_of[ticket_id]
                    data[ticket_id] = _error_ticket(f"{error} for {token}", error)
                elif token in self.unregistered_at_receipt:
                    data[ticket_id] = _error_ticket(
                        f'"{token}" is not a registered push notification recipient',
                        "DeviceNotRegistered",
                        expoPushToken=token,
                    )
                else:
                    data[ticket_id] = {"status": "ok"}
        return 200, {"data": data}


def _errors(code: str, message: str) -> dict[str, Any]:
    return {"errors": [{"code": code, "message": message}]}


def _error_ticket(message: str, error: str, **details: str) -> dict[str, Any]:
    return {"status": "error", "message": message, "details": {"error": error, **details}}


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, body = self.server.fake.handle(self.path.split("?", 1)[0], headers, raw)
        encoded = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(encoded)))
        if status == 429:
            self.send_header("Retry-After", "0")
        self.end_headers()
        self.wfile.write(encoded)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # quiet: tests and the demo have their own logs


def main(argv: list[str] | None = None) -> None:
    """Serve the fake until Ctrl-C, for the demo or poking at it with curl."""
    parser = argparse.ArgumentParser(prog="python -m sources.expo.fake", description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090, help="0 picks a free port")
    parser.add_argument("--access-token", default=None)
    args = parser.parse_args(argv)
    fake = FakeExpo(host=args.host, port=args.port, access_token=args.access_token).start()
    print(f"Fake Expo push service at {fake.base_url} (GODO_EXPO_BASE_URL={fake.base_url})")
    print(
        f"  curl -H 'Content-Type: application/json' -d "
        f'\'[{{"to": "ExponentPushToken[demo]", "title": "Hi", "body": "Hello"}}]\' '
        f"{fake.base_url}{SEND_PATH}"
    )
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
