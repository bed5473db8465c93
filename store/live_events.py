"""Live events for connected apps: who is told what, Redis streams per user, pub/sub wake-ups.

What is sent (each event is `{id, type, data}` on the WebSocket, `serving.routers.live`):

- `friend_rsvp` `{user_id, event_id, status, visibility, updated_at}`: a mutual friend's
  attendance, as the receiver's view of that friend's calendar would now show it.
- `friend_rsvp_removed` `{user_id, event_id}`: an answer the receiver could see is no longer
  visible to them (deleted, or switched to private). It says nothing about why.
- `feed_refreshed` `{run_id}`: a new recommendation run was published; sent to everyone.
- `device_moved` `{platform}`: one of the receiver's devices registered its push token for
  another account (`publish_device_moved`).

`EVENT_TYPES` lists them, and `_fan_out` refuses any other; with the connection's own
`hello` and `resync` they are `MESSAGE_TYPES`, every type `docs/asyncapi.yaml` documents
(`tests/unit/serving/test_asyncapi.py` keeps the two equal).

Visibility (decided by `rsvp_event` and `publish_rsvp_change`, pure rules over the calendar's
own `VISIBLE_TO`): recipients are the actor's mutual friends at the time of the write, never
anyone else, not even for a `public` answer (a live push is friends' activity; strangers may
still read public entries on the calendar). An answer is pushed only when friends may see it
now (`public`/`friends`). A change to `private`, or a delete, sends `friend_rsvp_removed` only
when the answer was visible to friends just before (so it tells a friend exactly what their
next calendar read would: the entry is gone), and nothing at all otherwise, so a private
answer never produces any traffic, not even "something changed". The previous visibility is
read, locked, in the write's own transaction (`store.rsvp`), so a concurrent write of the same
answer cannot make a push describe a change that did not happen. Notes are never sent.

Redis layout (keys in `store.keys`): every recipient's event is XADDed to their own stream
(`live_user_stream`, trimmed to ~`USER_STREAM_MAX_EVENTS`, expiring `STREAM_TTL_SECONDS`
after its last event); broadcasts go to one `live_broadcast_stream` (~`BROADCAST_MAX_EVENTS`).
In the same MULTI, one PUBLISH on `live_notify_channel` names the users whose streams grew (or
`all`). Each API process subscribes once (`LiveHub`) and wakes only its own connections for
those users; a woken connection reads its streams from its own cursor. The streams, not the
pub/sub messages, carry the events, so a lost or coalesced notification delays delivery (until
the next wake-up or poll) but never loses or duplicates an event.

A connection's position is a `Cursor`: the last delivered id in the user's stream and in the
broadcast stream, sent to the client as each event's `id` ("<user id>_<broadcast id>").
Resuming with it reads both streams strictly after those ids: no gaps, no duplicates. When the
streams no longer hold everything after it (trimmed, expired, or an id from the future), the
client is told to `resync` (reload what it shows) instead of silently missing events.

Everything on the write side is best effort: a Redis (or friends lookup) failure is logged and
swallowed, because a live push is a nicety and the write it reports has already committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis
import redis.asyncio
import sqlalchemy as sa
from redis.exceptions import ResponseError

from store.calendar import VISIBLE_TO, Attendance
from store.cards import load_mutual_friends
from store.keys import RedisKeys
from store.redis_values import text

log = logging.getLogger(__name__)

FRIEND_RSVP = "friend_rsvp"
FRIEND_RSVP_REMOVED = "friend_rsvp_removed"
FEED_REFRESHED = "feed_refreshed"
DEVICE_MOVED = "device_moved"
HELLO = "hello"
RESYNC = "resync"
EVENT_TYPES = frozenset({FRIEND_RSVP, FRIEND_RSVP_REMOVED, FEED_REFRESHED, DEVICE_MOVED})
MESSAGE_TYPES = EVENT_TYPES | {HELLO, RESYNC}

# Enough for a phone that was offline for a while; beyond that it is told to `resync`.
USER_STREAM_MAX_EVENTS = 500
BROADCAST_MAX_EVENTS = 100
STREAM_TTL_SECONDS = 7 * 24 * 3600
# How many entries one read takes per stream (a reconnect replays in chunks of this).
READ_CHUNK = 100
# The most a lost pub/sub message can delay delivery: connections poll their streams this often.
POLL_SECONDS = 25.0
# Back-off between attempts to re-subscribe after the pub/sub connection failed.
RESUBSCRIBE_SECONDS = 1.0

_FRIEND_VISIBLE = frozenset(VISIBLE_TO["friend"])
_STREAM_ID = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")
ZERO_ID = "0-0"


# --- who is told what (pure) ---------------------------------------------------------------


def rsvp_event(
    *, actor_id: int, event_id: str, before: str | None, after: Attendance | None
) -> tuple[str, dict[str, Any]] | None:
    """The event the actor's mutual friends get for this change, or None to send nothing.

    `before` is the visibility of the answer before the write (None: there was none); `after`
    the stored answer (None: deleted). See the module docstring for why these rules.
    """
    if after is not None and after.visibility in _FRIEND_VISIBLE:
        return FRIEND_RSVP, {
            "user_id": actor_id,
            "event_id": event_id,
            "status": after.status,
            "visibility": after.visibility,
            "updated_at": _iso(after.updated_at),
        }
    if before in _FRIEND_VISIBLE:
        return FRIEND_RSVP_REMOVED, {"user_id": actor_id, "event_id": event_id}
    return None


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Notification:
    """What one pub/sub message says: every user's stream grew, or these users' did."""

    everyone: bool
    users: frozenset[int]


def encode_notification(users: Iterable[int] | None) -> str:
    """None means the broadcast stream grew (every connection should read)."""
    return json.dumps({"all": True} if users is None else {"u": sorted(set(users))})


def decode_notification(payload: bytes | str) -> Notification | None:
    """The parsed message, or None for anything this module did not publish."""
    try:
        body = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    if body.get("all") is True:
        return Notification(everyone=True, users=frozenset())
    users = body.get("u")
    if isinstance(users, list) and all(isinstance(u, int) for u in users):
        return Notification(everyone=False, users=frozenset(users))
    return None


@dataclass(frozen=True)
class Cursor:
    """The last delivered entry of the user's stream and of the broadcast stream."""

    user: str = ZERO_ID
    broadcast: str = ZERO_ID

    def encode(self) -> str:
        return f"{self.user}_{self.broadcast}"


def parse_cursor(text: str) -> Cursor:
    """A cursor from an event `id` this module issued; ValueError for anything else."""
    user, sep, broadcast = text.partition("_")
    if not sep or not _STREAM_ID.fullmatch(user) or not _STREAM_ID.fullmatch(broadcast):
        raise ValueError("not an event id this API issued")
    return Cursor(user=user, broadcast=broadcast)


def stream_id_key(stream_id: str) -> tuple[int, int]:
    """A stream id as numbers, so ids compare correctly ("9-0" < "10-0")."""
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


@dataclass(frozen=True)
class LiveEvent:
    """One event for one connection; `id` is the cursor after it (what a client resumes from)."""

    id: str
    type: str
    data: dict[str, Any]

    def message(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "data": self.data}


# --- the write side (sync, called by the API's thread-pool routes and by publish_run) -----


def publish_rsvp_change(
    engine: sa.Engine,
    redis_client: redis.Redis,
    keys: RedisKeys,
    *,
    actor_id: int,
    event_id: str,
    before: str | None,
    after: Attendance | None,
) -> int:
    """Push an attendance change to the actor's mutual friends; returns how many were told.

    Best effort (the write has committed): any failure is logged and 0 returned.
    """
    event = rsvp_event(actor_id=actor_id, event_id=event_id, before=before, after=after)
    if event is None:
        return 0
    try:
        with engine.connect() as conn:
            recipients = sorted(load_mutual_friends(conn, actor_id))
        if recipients:
            _fan_out(redis_client, keys, recipients, *event)
    except (redis.RedisError, sa.exc.SQLAlchemyError) as error:
        log.warning("live %s of user %s not sent: %s", event[0], actor_id, error)
        return 0
    return len(recipients)


def publish_device_moved(
    redis_client: redis.Redis, keys: RedisKeys, *, previous_owner: int, platform: str
) -> bool:
    """Tell the account a push token was taken from that one of its devices now answers to
    another account (its other sessions show it); best effort (False when it failed)."""
    try:
        _fan_out(redis_client, keys, [previous_owner], DEVICE_MOVED, {"platform": platform})
    except redis.RedisError as error:
        log.warning("live device_moved for user %s not sent: %s", previous_owner, error)
        return False
    return True


def publish_feed_refreshed(redis_client: redis.Redis, keys: RedisKeys, run_id: str) -> bool:
    """Tell every connected user a new run is live; best effort (False when it failed)."""
    try:
        _fan_out(redis_client, keys, None, FEED_REFRESHED, {"run_id": run_id})
    except redis.RedisError as error:
        log.warning("live feed_refreshed for run %s not sent: %s", run_id, error)
        return False
    return True


def _fan_out(
    client: redis.Redis,
    keys: RedisKeys,
    recipients: list[int] | None,
    event_type: str,
    data: Mapping[str, Any],
) -> None:
    """XADD to each recipient's stream (or the broadcast stream) then PUBLISH, in one MULTI.

    The PUBLISH comes after the XADDs, so a process woken by it always finds the entries.
    A type outside `EVENT_TYPES` is a ValueError: clients only get documented messages.
    """
    if event_type not in EVENT_TYPES:
        raise ValueError(f"{event_type!r} is not a live event type (EVENT_TYPES)")
    fields = {"type": event_type, "data": json.dumps(data, separators=(",", ":"))}
    streams = (
        [(keys.live_broadcast_stream(), BROADCAST_MAX_EVENTS)]
        if recipients is None
        else [(keys.live_user_stream(user), USER_STREAM_MAX_EVENTS) for user in recipients]
    )
    pipe = client.pipeline(transaction=True)
    for stream, max_events in streams:
        pipe.xadd(stream, fields, maxlen=max_events, approximate=True)
        pipe.expire(stream, STREAM_TTL_SECONDS)
        pipe.incr(keys.stream_added(stream))
        pipe.expire(keys.stream_added(stream), STREAM_TTL_SECONDS)
    pipe.publish(keys.live_notify_channel(), encode_notification(recipients))
    pipe.execute()


# --- the read side (asyncio, one call per connection and wake-up) --------------------------


async def start_cursor(
    client: redis.asyncio.Redis, keys: RedisKeys, user_id: int, requested: Cursor | None
) -> tuple[Cursor, bool]:
    """Where a new connection starts, and whether the client must `resync`.

    Without `requested`: at the end of both streams (only new events). With it: right after
    it, unless events after it are gone (trimmed or expired) or it is ahead of the stream,
    in which case the client is told to resync and gets whatever the streams still hold.
    Call after subscribing, so nothing written between this read and the first wake-up is lost.
    """
    user_stream, user_resync = await _start_id(
        client, keys, keys.live_user_stream(user_id), None if requested is None else requested.user
    )
    broadcast, broadcast_resync = await _start_id(
        client,
        keys,
        keys.live_broadcast_stream(),
        None if requested is None else requested.broadcast,
    )
    return Cursor(user=user_stream, broadcast=broadcast), user_resync or broadcast_resync


async def _start_id(
    client: redis.asyncio.Redis, keys: RedisKeys, stream: str, requested: str | None
) -> tuple[str, bool]:
    pipe = client.pipeline(transaction=False)
    pipe.xinfo_stream(stream)
    pipe.get(keys.stream_added(stream))
    try:
        info, added = await pipe.execute()
    except ResponseError:  # no such key: never written, or expired
        return ZERO_ID, requested is not None and requested != ZERO_ID
    if added is not None and "entries-added" not in info:  # Redis 6.2: our own count
        info = {**info, "entries-added": int(added)}
    last = text(info["last-generated-id"])
    if requested is None:
        return last, False
    if stream_id_key(requested) > stream_id_key(last):
        return last, True  # from the future (or a Redis that lost data): restart at the end
    return requested, _before_trimmed(info, requested)


def _before_trimmed(info: Mapping[str, Any], requested: str) -> bool:
    """Whether entries after `requested` may have been trimmed away (XINFO STREAM `info`).

    Trimming removes the oldest entries, so only a position before the oldest entry left can
    have missed any, and only if the stream ever held more than it holds now: Redis 7
    reports `entries-added`; on 6.2 (the embedded server) `_start_id` fills it in from the
    counter written beside every XADD (`RedisKeys.stream_added`). A stream with neither
    (written before the counter existed) is taken as trimmed when the position is before its
    oldest entry: the cost of doubt is a needless resync, never a silent gap.
    """
    first = info.get("first-entry")
    if first is None or stream_id_key(requested) >= stream_id_key(text(first[0])):
        return False
    added = info.get("entries-added")
    return added is None or int(added) > int(info.get("length", 0))


async def read_events(
    client: redis.asyncio.Redis, keys: RedisKeys, user_id: int, cursor: Cursor
) -> list[LiveEvent]:
    """Every event after `cursor` in the user's and the broadcast stream, oldest first."""
    user_key, broadcast_key = keys.live_user_stream(user_id), keys.live_broadcast_stream()
    entries: list[tuple[str, str, Mapping[bytes, bytes]]] = []  # (stream id, which, fields)
    positions = {user_key: cursor.user, broadcast_key: cursor.broadcast}
    while True:
        replies = await client.xread(positions, count=READ_CHUNK)
        if not replies:
            break
        full = False
        for stream, stream_entries in replies:
            name = text(stream)
            for entry_id, fields in stream_entries:
                entries.append((text(entry_id), name, fields))
            positions[name] = text(stream_entries[-1][0])
            full = full or len(stream_entries) >= READ_CHUNK
        if not full:
            break
    entries.sort(key=lambda entry: stream_id_key(entry[0]))
    events = []
    for entry_id, stream, fields in entries:
        if stream == user_key:
            cursor = Cursor(user=entry_id, broadcast=cursor.broadcast)
        else:
            cursor = Cursor(user=cursor.user, broadcast=entry_id)
        decoded = _decode_fields(fields)
        if decoded is not None:
            events.append(LiveEvent(id=cursor.encode(), type=decoded[0], data=decoded[1]))
    return events


def _decode_fields(fields: Mapping[bytes, bytes]) -> tuple[str, dict[str, Any]] | None:
    try:
        event_type = text(fields[b"type"])
        data = json.loads(fields[b"data"])
    except (KeyError, ValueError):
        log.warning("skipping a malformed live event: %r", fields)
        return None
    return event_type, data if isinstance(data, dict) else {}


# --- one subscription per process ----------------------------------------------------------


class LiveHub:
    """The process's one subscription to the notify channel, waking its local connections.

    Made by the app's lifespan (`serving.app`), which closes it on shutdown; it subscribes
    with the first connection and unsubscribes with the last, so an idle process holds no
    pub/sub connection and no background task outlives the app's lifespan. Each connection
    registers an `asyncio.Event` under its user id; a notification naming that user (or
    `all`) sets it. If the subscription fails, every connection is woken (they read their
    streams, so nothing is lost), and the hub re-subscribes with a back-off.
    """

    def __init__(self, redis_url: str, channel: str) -> None:
        self.redis_url = redis_url
        self.channel = channel
        self._wakers: dict[int, set[asyncio.Event]] = {}
        self._lock = asyncio.Lock()
        self._client: redis.asyncio.Redis | None = None
        self._pubsub: Any = None
        self._task: asyncio.Task[None] | None = None

    @property
    def connections(self) -> int:
        return sum(len(wakers) for wakers in self._wakers.values())

    async def register(self, user_id: int) -> asyncio.Event:
        """A waker for a new connection of `user_id`, once the subscription is confirmed.

        Raises `redis.RedisError` when Redis cannot be subscribed to.
        """
        async with self._lock:
            if self._task is None:
                await self._subscribe()
                self._task = asyncio.create_task(self._listen(), name="live-hub")
            waker = asyncio.Event()
            self._wakers.setdefault(user_id, set()).add(waker)
            return waker

    async def unregister(self, user_id: int, waker: asyncio.Event) -> None:
        async with self._lock:
            wakers = self._wakers.get(user_id)
            if wakers is not None:
                wakers.discard(waker)
                if not wakers:
                    del self._wakers[user_id]
            if not self._wakers and self._task is not None:
                self._task.cancel()
                try:
                    await self._task
                except asyncio.CancelledError:
                    pass
                self._task = None
                await self._close()

    async def aclose(self) -> None:
        """Stop listening and drop the subscription (the app's shutdown); idempotent."""
        async with self._lock:
            self._wakers.clear()
            if self._task is not None:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
                self._task = None
            await self._close()

    def wake(self, notification: Notification) -> None:
        """Set the wakers the notification concerns (all of them for a broadcast)."""
        if notification.everyone:
            targets: Iterable[set[asyncio.Event]] = self._wakers.values()
        else:
            targets = [self._wakers[u] for u in notification.users if u in self._wakers]
        for wakers in targets:
            for waker in wakers:
                waker.set()

    def wake_all(self) -> None:
        self.wake(Notification(everyone=True, users=frozenset()))

    async def _subscribe(self) -> None:
        """Subscribe, and wait for Redis to confirm it: only then is no PUBLISH missed."""
        await self._close()
        # Its own client: the app's has a 1 s socket timeout, and this one idles for long.
        self._client = redis.asyncio.Redis.from_url(
            self.redis_url, socket_connect_timeout=1.0, health_check_interval=30
        )
        try:
            self._pubsub = self._client.pubsub()
            await self._pubsub.subscribe(self.channel)
            for _ in range(50):
                message = await self._pubsub.get_message(timeout=0.1)
                if message is not None and message["type"] == "subscribe":
                    return
            raise redis.ConnectionError("no subscribe confirmation from Redis")
        except BaseException:
            await self._close()
            raise

    async def _listen(self) -> None:
        while True:
            try:
                message = await self._pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=POLL_SECONDS
                )
                if message is not None and message["type"] == "message":
                    notification = decode_notification(message["data"])
                    if notification is not None:
                        self.wake(notification)
            except (redis.RedisError, OSError) as error:
                log.warning("live subscription lost, re-subscribing: %s", error)
                self.wake_all()
                await self._resubscribe()

    async def _resubscribe(self) -> None:
        while True:
            await asyncio.sleep(RESUBSCRIBE_SECONDS)
            try:
                await self._subscribe()
            except (redis.RedisError, OSError) as error:
                log.warning("live re-subscription failed: %s", error)
                continue
            self.wake_all()  # read what was written while we were not listening
            return

    async def _close(self) -> None:
        pubsub, client, self._pubsub, self._client = self._pubsub, self._client, None, None
        try:
            if pubsub is not None:
                await pubsub.aclose()
            if client is not None:
                await client.aclose()  # type: ignore[attr-defined]  # stubs predate redis 5
        except (redis.RedisError, OSError) as error:
            log.debug("closing the live subscription: %s", error)
