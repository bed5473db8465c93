"""A request id on every request: taken from `X-Request-ID` or made, echoed, and logged.

Why: one id joins the app's report of a failed call, the proxy's access line and every log
line the API wrote for it (`core.logs` adds it to each record). A caller's id is kept when it
looks like one (a load balancer or the app may have set it), so the chain is unbroken; any
other value is replaced rather than trusted into the logs.

Pure ASGI and outermost, so rate-limit refusals and unexpected errors carry the id too.
"""

from __future__ import annotations

import re
import uuid

from fastapi import FastAPI
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.logs import request_id_var

HEADER = "X-Request-ID"
_ACCEPTED = re.compile(r"[A-Za-z0-9._:-]{8,128}")


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming(scope) or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[HEADER] = request_id
            await send(message)

        token = request_id_var.set(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)


def _incoming(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            return text if _ACCEPTED.fullmatch(text) else None
    return None


def install_request_ids(app: FastAPI) -> None:
    """Add the middleware; call it last in `create_app`, so it wraps everything else."""
    app.add_middleware(RequestIdMiddleware)
