"""`GET /v1/live`: a WebSocket pushing friends' RSVPs and feed refreshes as they happen.

Protocol:

- Auth: the same JWT as every route, in `Authorization: Bearer <token>` or, for browsers
  (which cannot set headers on a WebSocket), the `token` query parameter. It is checked with
  the app's own rules (`serving.deps.authenticate`: verifier, account mapping), after the
  handshake so the client gets a real close code: 4401 (reason says why) for a missing or
  refused token, also sent when the token expires during the connection (re-checked every
  `POLL_SECONDS`); 1013 (try again later) when signing keys or Redis are unavailable; 1008
  past `live_max_per_user` open connections of one user or `live_max_per_address` of one
  client address in this process (`serving.live_caps`).
- `last_event_id` (optional): the `id` of the last event the client processed; events after it
  that Redis still holds are replayed first, then live ones, each exactly once. A malformed one
  closes with 4400. Without it, only events from now on are sent.
- Server messages are JSON text frames `{id, type, data}`: first `hello` (`data.user_id`, and
  `id` is the position to resume from if nothing else arrives), then `resync` if events after
  `last_event_id` were lost (the client should reload what it shows), then `friend_rsvp`,
  `friend_rsvp_removed`, `feed_refreshed` and `device_moved` (see `store.live_events`).
  Client messages are read (to notice a disconnect) and ignored.

`docs/asyncapi.yaml` documents all of it for client developers (AsyncAPI 3.0): each message's
schema, the query parameters and the close codes below, kept equal to this code by
`tests/unit/serving/test_asyncapi.py`.

The rate limiter and other middleware are HTTP-only, so they never see this route. Tokens in a
query string can end up in proxy access logs; prefer the header where the client allows it.
The logic (who may see what, Redis layout, cursors, the per-process subscription) lives in
`store.live_events`; the hub, the caps and the clients come from `serving.deps.LiveServicesDep`
(the hub is made by the app's lifespan); this module only authenticates and pumps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import redis
from fastapi import APIRouter, HTTPException, WebSocket, WebSocketDisconnect
from fastapi.security.utils import get_authorization_scheme_param
from starlette.websockets import WebSocketState

from serving.deps import LiveServices, LiveServicesDep
from store.live_events import (
    HELLO,
    POLL_SECONDS,
    RESYNC,
    Cursor,
    parse_cursor,
    read_events,
    start_cursor,
)

router = APIRouter(tags=["live"])
log = logging.getLogger(__name__)

CLOSE_UNAUTHORIZED = 4401
CLOSE_BAD_REQUEST = 4400
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_TOO_MANY = 1008  # policy violation: over `live_max_per_user` / `live_max_per_address`
_MAX_REASON_BYTES = 123  # RFC 6455: a close frame's payload is at most 125 bytes


@router.websocket("/live")
async def live(websocket: WebSocket, live: LiveServicesDep) -> None:
    """Authenticate, subscribe, replay from `last_event_id`, then push until the client leaves."""
    await websocket.accept()
    caps = live.caps
    address = websocket.client.host if websocket.client else "unknown"
    if not caps.per_address.acquire(address):
        await _close(websocket, CLOSE_TOO_MANY, "too many live connections from this address")
        return
    try:
        await _live(websocket, live)
    finally:
        caps.per_address.release(address)


async def _live(websocket: WebSocket, live: LiveServices) -> None:
    """Authenticate, then hold one of the user's slots for as long as the connection lives."""
    token = _token(websocket)
    user_id = await _authenticate(websocket, live, token)
    if user_id is None:
        return
    if not live.caps.per_user.acquire(user_id):
        await _close(websocket, CLOSE_TOO_MANY, "too many live connections for this user")
        return
    try:
        await _connected(websocket, live, user_id, token)
    finally:
        live.caps.per_user.release(user_id)


async def _connected(
    websocket: WebSocket, live: LiveServices, user_id: int, token: str | None
) -> None:
    """Subscribe, replay from `last_event_id`, then push until the client leaves."""
    requested: Cursor | None = None
    last_event_id = websocket.query_params.get("last_event_id")
    if last_event_id:
        try:
            requested = parse_cursor(last_event_id)
        except ValueError:
            await _close(websocket, CLOSE_BAD_REQUEST, "last_event_id is not an id we sent")
            return
    hub = live.hub
    try:
        waker = await hub.register(user_id)
    except (redis.RedisError, OSError) as error:
        log.warning("live connection refused, Redis unavailable: %s", error)
        await _close(websocket, CLOSE_TRY_AGAIN_LATER, "live updates are unavailable")
        return
    try:
        await _serve(websocket, live, waker, user_id, token, requested)
    finally:
        await hub.unregister(user_id, waker)


async def _serve(
    websocket: WebSocket,
    live: LiveServices,
    waker: asyncio.Event,
    user_id: int,
    token: str | None,
    requested: Cursor | None,
) -> None:
    """Pump events until the client disconnects (noticed by a concurrent receive)."""
    client, keys = live.redis, live.keys
    listener = asyncio.create_task(_until_disconnect(websocket))
    try:
        # Registered (subscribed) first, read second: nothing written in between is missed.
        cursor, resync = await start_cursor(client, keys, user_id, requested)
        await websocket.send_json(
            {"id": cursor.encode(), "type": HELLO, "data": {"user_id": user_id}}
        )
        if resync:
            await websocket.send_json({"id": cursor.encode(), "type": RESYNC, "data": {}})
        loop = asyncio.get_running_loop()
        checked = loop.time()
        while not listener.done():
            waker.clear()  # before reading: a wake-up during the read is not lost
            for event in await read_events(client, keys, user_id, cursor):
                await websocket.send_json(event.message())
                cursor = parse_cursor(event.id)
            woken = asyncio.create_task(waker.wait())
            await asyncio.wait(
                {woken, listener}, timeout=POLL_SECONDS, return_when=asyncio.FIRST_COMPLETED
            )
            woken.cancel()
            if loop.time() - checked >= POLL_SECONDS and not listener.done():
                if await _authenticate(websocket, live, token) is None:
                    return  # the token expired (or its account was unlinked) while connected
                checked = loop.time()
    except (WebSocketDisconnect, RuntimeError):
        return  # the client left while we were sending
    except (redis.RedisError, OSError) as error:
        log.warning("live connection of user %s dropped, Redis failed: %s", user_id, error)
        await _close(websocket, CLOSE_TRY_AGAIN_LATER, "live updates are unavailable")
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
            await listener


async def _until_disconnect(websocket: WebSocket) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return


def _token(websocket: WebSocket) -> str | None:
    """The bearer token from the header, else from `?token=` (browsers cannot set headers)."""
    scheme, credentials = get_authorization_scheme_param(websocket.headers.get("authorization"))
    if scheme.lower() == "bearer" and credentials:
        return credentials
    return websocket.query_params.get("token") or None


async def _authenticate(websocket: WebSocket, live: LiveServices, token: str | None) -> int | None:
    """The user id, by the same rules as every HTTP route; else close (4401 / 1013) and None."""
    if token is None:
        await _close(
            websocket,
            CLOSE_UNAUTHORIZED,
            "Missing bearer token: send it in the "
            "Authorization header or the token query parameter.",
        )
        return None
    try:
        return await live.authenticate(token)
    except HTTPException as error:
        if error.status_code == 401:
            await _close(websocket, CLOSE_UNAUTHORIZED, str(error.detail))
        else:
            await _close(websocket, CLOSE_TRY_AGAIN_LATER, "cannot verify tokens right now")
        return None


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    if websocket.application_state == WebSocketState.DISCONNECTED:
        return
    encoded = reason.encode()[:_MAX_REASON_BYTES]
    with contextlib.suppress(RuntimeError, WebSocketDisconnect):
        await websocket.close(code=code, reason=encoded.decode(errors="ignore"))
