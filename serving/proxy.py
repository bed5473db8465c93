"""The real client address behind the proxies the operator declares, and nothing else.

uvicorn's `--forwarded-allow-ips="*"` trusts every `X-Forwarded-For` entry and takes the
left-most, which the client writes itself: rotating a made-up first entry gave every request
a fresh per-IP rate-limit bucket. A proxy appends the address it received the connection from,
so only the entries appended by proxies we run are facts: with `trusted_proxy_hops = N`, the
client is the N-th entry from the right (Fly's edge is one hop). A request carrying fewer
entries than that did not come through every proxy, and keeps its peer address.
"""

from __future__ import annotations

import ipaddress

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send


def forwarded_client(headers: list[tuple[bytes, bytes]], hops: int) -> str | None:
    """The address `hops` trusted proxies saw the request come from, or None."""
    entries = [
        entry.strip()
        for name, value in headers
        if name == b"x-forwarded-for"
        for entry in value.decode("latin-1").split(",")
    ]
    entries = [entry for entry in entries if entry]
    if hops < 1 or len(entries) < hops:
        return None
    candidate = entries[-hops]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:  # a proxy we trust wrote it, so this is misconfiguration: ignore it
        return None


class TrustedProxyMiddleware:
    """Sets the ASGI `client` to what the trusted proxies appended (see the module doc)."""

    def __init__(self, app: ASGIApp, hops: int) -> None:
        self.app = app
        self.hops = hops

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            client = forwarded_client(scope["headers"], self.hops)
            if client is not None:
                port = scope["client"][1] if scope.get("client") else 0
                scope = {**scope, "client": (client, port)}
        await self.app(scope, receive, send)


def install_trusted_proxies(app: FastAPI, hops: int) -> None:
    """Install outermost, so rate limits, logs and metrics all see the same client."""
    if hops > 0:
        app.add_middleware(TrustedProxyMiddleware, hops=hops)
