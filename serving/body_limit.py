"""A cap on request bodies: 413 (problem+json) above `Settings.max_body_bytes`.

Why: FastAPI reads and parses a whole body before validating it, so a 10 MB document cost
the memory and CPU of parsing 10 MB only to end in a 422. No route takes more than a batch of
100 swipes (a few tens of KiB), so anything much bigger is refused before it is read:

- a `Content-Length` over the limit is answered at once, without reading a byte;
- a body without one (chunked) is counted while the app reads it; the moment it passes the
  limit, reading stops and the app's own answer (FastAPI's 400 for a body it could not read)
  is replaced by the 413.

Pure ASGI, installed inside the security headers and the request id, so the 413 carries them.
WebSockets are not HTTP requests and pass through.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.settings import Settings
from serving.problems import problem


class BodyTooLargeError(Exception):
    """Raised into the app's `receive` when a streamed body passes the limit."""


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        received = 0
        exceeded = False
        started = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    raise BodyTooLargeError(f"body over {self.max_bytes} bytes")
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded:
                return  # the app's answer to a body it could not read: the 413 replaces it
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except BodyTooLargeError:
            pass
        except Exception:
            if not exceeded:
                raise
        if exceeded and not started:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem(
            Request(scope),
            413,
            f"body: the request body is larger than the {self.max_bytes} bytes this API accepts.",
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    """The declared length, or None when absent or not a number (the server refuses those)."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return None


def install_body_limit(app: FastAPI, settings: Settings) -> None:
    """Add the middleware; call it before the other installs, so they all wrap it."""
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
