"""A real HTTP server on 127.0.0.1 that replays scripted responses and records requests.

Why not a mock transport: the clients' timeouts, connection reuse, header encoding and httpx's
own logging are part of what is under test, and only a socket exercises them. Each test
scripts the exact upstream JSON (Eventbrite / Google shapes) per path, in order; anything
unscripted gets a 418 so a test fails loudly instead of hanging.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest


@dataclass
class Reply:
    """One scripted response: JSON for dicts/lists, raw text otherwise; ``delay`` in seconds
    before answering (to trip client timeouts)."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass(frozen=True)
class Received:
    """A request as the server saw it (header names lower-cased)."""

    method: str
    path: str
    raw_query: str
    query: dict[str, list[str]]
    headers: dict[str, str]

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


class ScriptedServer:
    """Per-path queues of `Reply`, served by a `ThreadingHTTPServer` on a free port."""

    def __init__(self) -> None:
        self._routes: dict[str, deque[Reply]] = {}
        self._lock = threading.Lock()
        self.requests: list[Received] = []
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._httpd.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
        # A short poll interval: shutdown() waits for the next poll (0.5 s by default).
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @staticmethod
    def reply(
        status: int = 200,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
    ) -> Reply:
        """Build a `Reply` (test modules cannot import from a conftest reliably)."""
        return Reply(status, body, dict(headers or {}), delay)

    def script(self, path: str, *replies: Reply) -> None:
        with self._lock:
            self._routes.setdefault(path, deque()).extend(replies)

    def requests_to(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def pending(self, path: str) -> int:
        with self._lock:
            return len(self._routes.get(path, ()))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _next(self, received: Received) -> Reply:
        with self._lock:
            self.requests.append(received)
            queue = self._routes.get(received.path)
            if queue:
                return queue.popleft()
        return Reply(418, {"error": "UNSCRIPTED", "path": received.path})

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                parts = urlsplit(self.path)
                received = Received(
                    method="GET",
                    path=parts.path,
                    raw_query=parts.query,
                    query=parse_qs(parts.query, keep_blank_values=True),
                    headers={k.lower(): v for k, v in self.headers.items()},
                )
                reply = server._next(received)
                if reply.delay:
                    time.sleep(reply.delay)
                if isinstance(reply.body, dict | list):
                    payload = json.dumps(reply.body).encode()
                    content_type = "application/json; charset=UTF-8"
                elif reply.body is None:
                    payload, content_type = b"", "text/plain"
                else:
                    payload, content_type = str(reply.body).encode(), "text/plain"
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(payload)))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left; that is the point of the delay

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        return Handler


@pytest.fixture
def scripted_server() -> Iterator[ScriptedServer]:
    server = ScriptedServer()
    server.start()
    yield server
    server.stop()


class SleepRecorder:
    """Injected in place of `time.sleep`: records the waits, never waits."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()
