"""A local fake of Resend's `POST /emails`, recording what would have been delivered.

Why: invitations and digests must be tested (and demonstrated) through the real HTTP client,
with Resend's real request and error JSON, and without an account or network. The fake checks
the bearer key, validates the body the way Resend does (422 `validation_error`), honours
`Idempotency-Key` (same key and body: the first answer again and no second message; same key,
other body: 409 `invalid_idempotent_request`) and injects failures on demand:

- `rate_limit_burst(n, retry_after=1)`: the next n requests get 429 `rate_limit_exceeded`
  with a `retry-after` header;
- `server_errors(n)`: the next n requests get 500 `internal_server_error`;
- `reject_next_validation(n)`: the next n requests get 422 `validation_error`.

Standard library only (`http.server` in a daemon thread), like `sources.fakes.server`.
Run it for a demo with `uv run python -m sources.resend.fake --port 8025`, then set
`GODO_RESEND_BASE_URL=http://127.0.0.1:8025` and `RESEND_API_KEY=re_fake_key`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import threading
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

DEFAULT_API_KEY = "re_fake_key"
MAX_RECIPIENTS = 50
_ADDRESS = re.compile(r"^(?:[^<>]*<)?([^@\s<>]+@[^@\s<>]+\.[^@\s<>]+)>?$")


@dataclass(frozen=True)
class SentMessage:
    """One accepted email: Resend's id, the JSON body and the request headers (lower-case)."""

    id: str
    body: dict[str, Any]
    headers: dict[str, str]

    @property
    def to(self) -> list[str]:
        to = self.body["to"]
        return [to] if isinstance(to, str) else list(to)

    @property
    def html(self) -> str:
        return str(self.body.get("html") or "")

    @property
    def text(self) -> str:
        return str(self.body.get("text") or "")

    @property
    def email_headers(self) -> dict[str, str]:
        return dict(self.body.get("headers") or {})


class FakeResend:
    """Resend on localhost. `base_url` is what `ResendClient(base_url=...)` takes."""

    def __init__(self, *, api_key: str = DEFAULT_API_KEY, host: str = "127.0.0.1", port: int = 0):
        self.api_key = api_key
        self._lock = threading.Lock()
        self.messages: list[SentMessage] = []
        self.requests = 0  # every POST /emails that reached the fake
        self.idempotency_keys: list[str | None] = []  # per request, in order
        self._idempotent: dict[str, tuple[str, str]] = {}  # key -> (body hash, message id)
        self._faults: list[tuple[int, str, str, dict[str, str]]] = []
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # -- switches ------------------------------------------------------------------------

    def rate_limit_burst(self, n: int, *, retry_after: int = 1) -> None:
        """The next `n` requests are throttled, as Resend does past 2 requests per second."""
        for _ in range(n):
            self._faults.append(
                (
                    429,
                    "rate_limit_exceeded",
                    "Too many requests. You can only make 2 requests per second.",
                    {"retry-after": str(retry_after)},
                )
            )

    def server_errors(self, n: int) -> None:
        for _ in range(n):
            self._faults.append((500, "internal_server_error", "An unexpected error occurred.", {}))

    def reject_next_validation(self, n: int = 1, message: str = "Invalid `to` field.") -> None:
        for _ in range(n):
            self._faults.append((422, "validation_error", message, {}))

    def reset(self) -> None:
        with self._lock:
            self.messages.clear()
            self.idempotency_keys.clear()
            self._idempotent.clear()
            self._faults.clear()
            self.requests = 0

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- the API -------------------------------------------------------------------------

    def handle(
        self, method: str, path: str, headers: dict[str, str], raw: bytes
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        """(status, JSON body, extra headers) for one request; pure apart from recording."""
        if path.rstrip("/") != "/emails":
            return _error(404, "not_found", "The requested endpoint does not exist.")
        if method != "POST":
            return _error(405, "method_not_allowed", "Method is not allowed for the endpoint.")
        scheme, _, key = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key:
            return _error(401, "missing_api_key", "Missing API key in the authorization header.")
        if key != self.api_key:
            return _error(403, "invalid_api_key", "API key is invalid.")
        with self._lock:
            self.requests += 1
            idempotency_key = headers.get("idempotency-key")
            self.idempotency_keys.append(idempotency_key)
            if self._faults:
                status, name, message, extra = self._faults.pop(0)
                return (*_error(status, name, message)[:2], extra)
            try:
                body = json.loads(raw)
            except ValueError:
                return _error(422, "validation_error", "The request body is not valid JSON.")
            problem = _validate(body)
            if problem is not None:
                return _error(422, "validation_error", problem)
            digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
            if idempotency_key:
                seen = self._idempotent.get(idempotency_key)
                if seen is not None:
                    if seen[0] != digest:
                        return _error(
                            409,
                            "invalid_idempotent_request",
                            "Same idempotency key used with a different request payload.",
                        )
                    return 200, {"id": seen[1]}, {}
            message_id = str(uuid.uuid4())
            if idempotency_key:
                self._idempotent[idempotency_key] = (digest, message_id)
            self.messages.append(SentMessage(message_id, body, headers))
            return 200, {"id": message_id}, {}


def _error(status: int, name: str, message: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    return status, {"statusCode": status, "name": name, "message": message}, {}


def _validate(body: Any) -> str | None:
    """Resend's own checks on the body, as the message of a 422 (None when acceptable)."""
    if not isinstance(body, dict):
        return "The request body must be a JSON object."
    for required in ("from", "to", "subject"):
        if not body.get(required):
            return f"Missing `{required}` field."
    if not body.get("html") and not body.get("text"):
        return "Missing `html` or `text` field."
    to = body["to"]
    recipients = [to] if isinstance(to, str) else to
    if not isinstance(recipients, list) or not recipients or len(recipients) > MAX_RECIPIENTS:
        return f"Invalid `to` field. Between 1 and {MAX_RECIPIENTS} recipients."
    for address in [body["from"], *recipients]:
        if not isinstance(address, str) or not _ADDRESS.match(address):
            return (
                "Invalid `to` field. The email address needs to follow the "
                "`email@example.com` or `Name <email@example.com>` format."
            )
    headers = body.get("headers", {})
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        return "Invalid `headers` field."
    tag_text = re.compile(r"[A-Za-z0-9_-]{1,256}")
    for tag in body.get("tags", []):
        if not isinstance(tag, dict) or not all(
            tag_text.fullmatch(str(tag.get(k, ""))) for k in ("name", "value")
        ):
            return (
                "Invalid `tags` field: names and values may only contain ASCII letters, "
                "numbers, underscores, or dashes."
            )
    return None


def _handler_for(fake: FakeResend) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, body, extra = fake.handle(self.command, self.path, headers, raw)
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        do_POST = _serve  # noqa: N815 - http.server's naming
        do_GET = _serve  # noqa: N815

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # quiet: tests and the demo read `messages` instead

    return Handler


def main(argv: list[str] | None = None) -> None:
    """Serve until interrupted, printing each accepted message's recipients and subject."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument("--api-key", default=DEFAULT_API_KEY)
    args = parser.parse_args(argv)
    fake = FakeResend(api_key=args.api_key, host=args.host, port=args.port).start()
    print(f"fake Resend at {fake.base_url} (API key {args.api_key!r}); Ctrl-C stops it")
    seen = 0
    try:
        while fake._thread is not None and fake._thread.is_alive():
            fake._thread.join(0.5)
            with fake._lock:
                new = fake.messages[seen:]
                seen = len(fake.messages)
            for message in new:
                print(f"{message.id} to={message.to} subject={message.body['subject']!r}")
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
