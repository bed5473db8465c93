"""Push notifications through Expo: event reminders, friends going, a weekly digest, receipts.

Every asset decides who should hear what *now*, then sends through `sources.expo` with the
notification log (`store.notifications`) as its idempotency guard: one row per (notification,
device) keyed by `dedupe_key`, claimed before sending, so a re-run never notifies twice.

| asset                        | key (+ `:<device token>`)                    | when it fires      |
|------------------------------|----------------------------------------------|--------------------|
| `event_reminders`            | `push:event_reminder:<user>:<event>`         | a `going` event    |
|                              |                                              | starts within the  |
|                              |                                              | user's lead time   |
| `friend_going_notifications` | `push:friend_going:<user>:<friend>:<event>`  | a mutual friend is |
|                              |                                              | going (public or   |
|                              |                                              | friends RSVP) to   |
|                              |                                              | an event liked     |
| `weekly_digest_push`         | `push:weekly_digest:<user>:<ISO year-week>`  | once per ISO week  |
| `push_receipts`              | (updates the rows above)                     | tickets > 15 min   |

Retries: a ticket or receipt error Expo says to retry (`MessageRateExceeded`, `ProviderError`)
puts the notification back to `pending` with exponential backoff, at most
`store.notifications.MAX_PUSH_ATTEMPTS` hand-overs; messages are sent one request (100) at a
time, and when a request keeps failing after the client's retries (an Expo outage) the
notifications claimed but not yet sent are released to `pending`, then the run fails. The
next run re-sends what is still due (see `store.notifications`).

Quiet hours (user's zone) *defer*: the notification is logged `skipped` with the reason and a
later run sends it once the window is over (a skipped key is the only kind a run may claim
again). A reminder whose event has started by then is no longer a candidate, so it stays
skipped rather than arriving late. Only users with registered devices are considered.

The assets are meant to run hourly (reminders every 15-60 minutes; the digest is idempotent
per week, so any cadence sends it once). Counts go to `MaterializeResult` metadata and to
`godo_notifications_total` (`textfile_metrics.notifications`).
"""

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import dagster as dg
import sqlalchemy as sa

from godo.settings import Settings
from pipelines.resources import LocalStorage, PostgresResource, RedisResource
from sources.expo.client import MAX_MESSAGES_PER_REQUEST, ExpoClient, ExpoError, PushMessage
from store import notifications as store
from store.feed import read_feed
from store.notifications import LogEntry
from store.schema import (
    devices,
    event_attendance,
    events,
    friendships,
    notification_preferences,
    swipes,
    users,
)
from textfile_metrics import notifications

GROUP = "notifications"
RECEIPT_DELAY = timedelta(minutes=15)
DIGEST_ITEMS = 3
ACCESS_TOKEN_ENV = "EXPO_ACCESS_TOKEN"


class ExpoResource(dg.ConfigurableResource):
    """Expo's push service. `base_url` is `https://exp.host` in production, the fake in tests.

    The access token (only needed with Expo's "enhanced push security") is either given or
    read from `$EXPO_ACCESS_TOKEN` when the client is built, so it never sits in run config.
    """

    base_url: str = "https://exp.host"
    access_token: str | None = None
    # The client's own retries of one request (429/5xx/network), with capped backoff.
    max_attempts: int = 5
    max_backoff_seconds: float = 30.0

    def client(self) -> ExpoClient:
        token = self.access_token or os.environ.get(ACCESS_TOKEN_ENV) or None
        return ExpoClient(
            self.base_url,
            access_token=token,
            max_attempts=self.max_attempts,
            max_backoff_seconds=self.max_backoff_seconds,
        )


class PushConfig(dg.Config):
    """`now` (ISO-8601) pins the clock, for tests and backfills; unset means the current time."""

    now: str | None = None

    def clock(self) -> datetime:
        if not self.now:
            return datetime.now(UTC)
        value = datetime.fromisoformat(self.now)
        return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Candidate:
    """One notification to one device, and the quiet hours of its user."""

    entry: LogEntry
    message: PushMessage
    quiet_start: time | None
    quiet_end: time | None
    timezone: str | None


@dataclass
class Outcome:
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    devices_removed: int = 0
    retried: int = 0  # back to pending after an error Expo says to retry
    released: int = 0  # claimed, never handed to Expo (outage): pending again
    error: str | None = None  # why sending stopped early


def _local(start_utc: datetime, zone: str | None) -> str:
    try:
        tz = ZoneInfo(zone) if zone else ZoneInfo("UTC")
    except (KeyError, ValueError):
        tz = ZoneInfo("UTC")
    local = start_utc.astimezone(tz)
    return f"{local:%a %H:%M} {local.tzname()}"


def _deliver(
    engine: sa.Engine, expo: ExpoClient, candidates: Sequence[Candidate], now: datetime
) -> Outcome:
    """Skip (defer) those in quiet hours, claim the rest, send, record each outcome.

    One request (100 messages) at a time, each recorded before the next: when a request
    fails for good, what went before is kept and what was not sent is released.
    """
    outcome = Outcome()
    already = store.done_keys(engine, [c.entry.dedupe_key for c in candidates])
    pending = [c for c in candidates if c.entry.dedupe_key not in already]
    quiet = [
        c for c in pending if store.in_quiet_hours(now, c.quiet_start, c.quiet_end, c.timezone)
    ]
    loud = [c for c in pending if c not in quiet]
    if quiet:
        store.record_skipped(engine, [c.entry for c in quiet], "quiet hours: deferred")
        outcome.skipped = len(quiet)
    taken = store.claim(engine, [c.entry for c in loud], now=now)
    to_send = [c for c in loud if c.entry.dedupe_key in taken]
    gone: list[str] = []
    for start in range(0, len(to_send), MAX_MESSAGES_PER_REQUEST):
        chunk = to_send[start : start + MAX_MESSAGES_PER_REQUEST]
        try:
            tickets = expo.send([c.message for c in chunk])
        except ExpoError as error:
            unsent = [c.entry.dedupe_key for c in to_send[start:]]
            outcome.released = store.release(engine, unsent, f"expo unavailable: {error}", now=now)
            outcome.error = str(error)
            break
        for candidate, ticket in zip(chunk, tickets, strict=True):
            key = candidate.entry.dedupe_key
            if ticket.status == "ok":
                store.record_outcome(engine, key, status="sent", expo_ticket_id=ticket.id)
                outcome.sent += 1
                continue
            detail = f"{ticket.error or 'error'}: {ticket.message or ''}".strip()
            store.record_outcome(engine, key, status="failed", detail=detail)
            if ticket.error in store.RETRYABLE_PUSH_ERRORS and store.retry_later(
                engine, key, detail=detail, now=now
            ):
                outcome.retried += 1
                continue
            outcome.failed += 1
            if ticket.device_not_registered:
                gone.append(candidate.message.to)
    if gone:
        with engine.begin() as conn:
            outcome.devices_removed = store.delete_tokens(conn, gone)
    return outcome


def _send(
    engine: sa.Engine,
    expo: ExpoResource,
    storage: LocalStorage,
    kind: str,
    candidates: list[Candidate],
    now: datetime,
) -> dg.MaterializeResult:
    """Deliver `candidates` through Expo and report the outcome: every sending asset's tail."""
    with expo.client() as client:
        outcome = _deliver(engine, client, candidates, now)
    result = _report(storage, kind, outcome, len(candidates))
    if outcome.error is not None:
        # Fail the run so the outage shows; nothing is lost, the released rows are pending.
        raise dg.Failure(
            description=f"Expo kept failing; {outcome.released} notification(s) released "
            f"to pending for the next run: {outcome.error}",
            metadata=dict(result.metadata or {}),
        )
    return result


def _report(
    storage: LocalStorage, kind: str, outcome: Outcome, candidates: int
) -> dg.MaterializeResult:
    notifications.record(
        storage.data_dir,
        channel="push",
        kind=kind,
        sent=outcome.sent,
        failed=outcome.failed,
        skipped=outcome.skipped,
    )
    return dg.MaterializeResult(
        metadata={
            "candidates": candidates,
            "sent": outcome.sent,
            "failed": outcome.failed,
            "skipped": outcome.skipped,
            "retried": outcome.retried,
            "released": outcome.released,
            "devices_removed": outcome.devices_removed,
        }
    )


# --- event reminders -----------------------------------------------------------------------


def reminder_candidates(engine: sa.Engine, now: datetime) -> list[Candidate]:
    """Going attendances whose event starts within the user's lead time, per device."""
    lead = sa.func.coalesce(
        notification_preferences.c.reminder_lead_minutes, store.DEFAULT_REMINDER_LEAD_MINUTES
    )
    statement = (
        sa.select(
            event_attendance.c.user_id,
            events.c.id,
            events.c.name,
            events.c.start_utc,
            events.c.timezone,
            devices.c.expo_push_token,
            notification_preferences.c.quiet_start,
            notification_preferences.c.quiet_end,
            notification_preferences.c.timezone.label("user_timezone"),
        )
        .select_from(event_attendance)
        .join(events, events.c.id == event_attendance.c.event_id)
        .join(devices, devices.c.user_id == event_attendance.c.user_id)
        .outerjoin(
            notification_preferences,
            notification_preferences.c.user_id == event_attendance.c.user_id,
        )
        .where(
            event_attendance.c.status == "going",
            events.c.is_active,
            events.c.start_utc > now,
            events.c.start_utc <= sa.literal(now) + sa.func.make_interval(0, 0, 0, 0, 0, lead),
        )
        .order_by(event_attendance.c.user_id, events.c.start_utc, devices.c.expo_push_token)
    )
    with engine.connect() as conn:
        rows = conn.execute(statement).all()
    return [
        Candidate(
            entry=LogEntry(
                dedupe_key=f"push:event_reminder:{r.user_id}:{r.id}:{r.expo_push_token}",
                kind="event_reminder",
                user_id=r.user_id,
                expo_push_token=r.expo_push_token,
            ),
            message=PushMessage(
                to=r.expo_push_token,
                title=r.name,
                body=f"Starts {_local(r.start_utc, r.timezone)}. Have fun!",
                data={"type": "event_reminder", "event_id": r.id},
            ),
            quiet_start=r.quiet_start,
            quiet_end=r.quiet_end,
            timezone=r.user_timezone,
        )
        for r in rows
    ]


@dg.asset(group_name=GROUP, kinds={"expo", "postgres"})
def event_reminders(
    config: PushConfig, postgres: PostgresResource, expo: ExpoResource, storage: LocalStorage
) -> dg.MaterializeResult:
    """Remind users of events they are going to, `reminder_lead_minutes` ahead, once each."""
    now = config.clock()
    engine = postgres.engine()
    return _send(engine, expo, storage, "event_reminder", reminder_candidates(engine, now), now)


# --- friends going -------------------------------------------------------------------------


def friend_going_candidates(engine: sa.Engine, now: datetime) -> list[Candidate]:
    """(user, friend, event): the user liked the event, a mutual friend RSVP'd `going` with
    visibility public or friends (never private), the event is still ahead; per device."""
    mine, theirs = friendships.alias("mine"), friendships.alias("theirs")
    friend = users.alias("friend")
    liked = (
        sa.select(swipes.c.user_id, swipes.c.event_id)
        .where(swipes.c.action.in_(("like", "superlike")))
        .distinct()
        .subquery("liked")
    )
    statement = (
        sa.select(
            liked.c.user_id,
            event_attendance.c.user_id.label("friend_id"),
            friend.c.display_name,
            events.c.id,
            events.c.name,
            events.c.start_utc,
            events.c.timezone,
            devices.c.expo_push_token,
            notification_preferences.c.quiet_start,
            notification_preferences.c.quiet_end,
            notification_preferences.c.timezone.label("user_timezone"),
        )
        .select_from(liked)
        .join(
            event_attendance,
            sa.and_(
                event_attendance.c.event_id == liked.c.event_id,
                event_attendance.c.user_id != liked.c.user_id,
                event_attendance.c.status == "going",
                event_attendance.c.visibility.in_(("public", "friends")),
            ),
        )
        .join(
            mine,
            sa.and_(
                mine.c.user_id == liked.c.user_id,
                mine.c.friend_id == event_attendance.c.user_id,
            ),
        )
        .join(
            theirs,
            sa.and_(
                theirs.c.user_id == event_attendance.c.user_id,
                theirs.c.friend_id == liked.c.user_id,
            ),
        )
        .join(friend, friend.c.id == event_attendance.c.user_id)
        .join(events, events.c.id == liked.c.event_id)
        .join(devices, devices.c.user_id == liked.c.user_id)
        .outerjoin(notification_preferences, notification_preferences.c.user_id == liked.c.user_id)
        .where(events.c.is_active, events.c.start_utc > now)
        .order_by(liked.c.user_id, events.c.id, event_attendance.c.user_id)
    )
    with engine.connect() as conn:
        rows = conn.execute(statement).all()
    return [
        Candidate(
            entry=LogEntry(
                dedupe_key=(
                    f"push:friend_going:{r.user_id}:{r.friend_id}:{r.id}:{r.expo_push_token}"
                ),
                kind="friend_going",
                user_id=r.user_id,
                expo_push_token=r.expo_push_token,
            ),
            message=PushMessage(
                to=r.expo_push_token,
                title=f"{r.display_name} is going",
                body=f"{r.display_name} is going to {r.name} ({_local(r.start_utc, r.timezone)}),"
                " an event you liked.",
                data={"type": "friend_going", "event_id": r.id, "friend_id": r.friend_id},
            ),
            quiet_start=r.quiet_start,
            quiet_end=r.quiet_end,
            timezone=r.user_timezone,
        )
        for r in rows
    ]


@dg.asset(group_name=GROUP, kinds={"expo", "postgres"})
def friend_going_notifications(
    config: PushConfig, postgres: PostgresResource, expo: ExpoResource, storage: LocalStorage
) -> dg.MaterializeResult:
    """Tell users when a friend is going to an event they liked, once per (friend, event)."""
    now = config.clock()
    engine = postgres.engine()
    return _send(engine, expo, storage, "friend_going", friend_going_candidates(engine, now), now)


# --- weekly digest -------------------------------------------------------------------------


def digest_candidates(engine: sa.Engine, redis: RedisResource, now: datetime) -> list[Candidate]:
    """Top items of each device owner's published feed; users with an empty feed get none."""
    year, week, _ = now.isocalendar()
    statement = (
        sa.select(
            devices.c.user_id,
            devices.c.expo_push_token,
            notification_preferences.c.quiet_start,
            notification_preferences.c.quiet_end,
            notification_preferences.c.timezone,
        )
        .outerjoin(
            notification_preferences, notification_preferences.c.user_id == devices.c.user_id
        )
        .order_by(devices.c.user_id, devices.c.expo_push_token)
    )
    with engine.connect() as conn:
        rows = conn.execute(statement).all()
    client, keys = redis.client(), redis.key_layout()
    feeds: dict[int, list[str]] = {}
    candidates = []
    for r in rows:
        if r.user_id not in feeds:
            feed = read_feed(
                engine=engine,
                redis_client=client,
                keys=keys,
                user_id=r.user_id,
                limit=DIGEST_ITEMS,
                now=now,
            )
            feeds[r.user_id] = [item.card.name for item in feed.items[:DIGEST_ITEMS]]
        names = feeds[r.user_id]
        if not names:
            continue
        candidates.append(
            Candidate(
                entry=LogEntry(
                    dedupe_key=(
                        f"push:weekly_digest:{r.user_id}:{year}-W{week:02d}:{r.expo_push_token}"
                    ),
                    kind="weekly_digest",
                    user_id=r.user_id,
                    expo_push_token=r.expo_push_token,
                ),
                message=PushMessage(
                    to=r.expo_push_token,
                    title="New events near you",
                    body=", ".join(names),
                    data={"type": "weekly_digest", "week": f"{year}-W{week:02d}"},
                ),
                quiet_start=r.quiet_start,
                quiet_end=r.quiet_end,
                timezone=r.timezone,
            )
        )
    return candidates


@dg.asset(group_name=GROUP, kinds={"expo", "postgres", "redis"})
def weekly_digest_push(
    config: PushConfig,
    postgres: PostgresResource,
    redis: RedisResource,
    expo: ExpoResource,
    storage: LocalStorage,
) -> dg.MaterializeResult:
    """ "New events near you": the top 3 of the user's published feed, once per ISO week."""
    now = config.clock()
    engine = postgres.engine()
    return _send(engine, expo, storage, "weekly_digest", digest_candidates(engine, redis, now), now)


# --- receipts ------------------------------------------------------------------------------


@dg.asset(group_name=GROUP, kinds={"expo", "postgres"})
def push_receipts(
    config: PushConfig, postgres: PostgresResource, expo: ExpoResource, storage: LocalStorage
) -> dg.MaterializeResult:
    """Read the receipts of tickets older than 15 minutes; forget DeviceNotRegistered devices;
    re-queue (with backoff, bounded) what Expo says to retry.

    A ticket Expo has no receipt for yet stays pending until Expo's ~24 h retention passes,
    then is marked `expired`.
    """
    now = config.clock()
    engine = postgres.engine()
    pending = store.tickets_awaiting_receipt(engine, older_than=now - RECEIPT_DELAY)
    with expo.client() as client:
        receipts = client.receipts([p.ticket_id for p in pending])
    results: list[tuple[str, str, str | None]] = []
    gone: list[str] = []
    retry: list[tuple[str, str]] = []
    ok = errors = expired = 0
    for ticket in pending:
        receipt = receipts.get(ticket.ticket_id)
        if receipt is None:
            if ticket.created_at <= now - store.RECEIPT_TTL:
                results.append((ticket.ticket_id, "expired", None))
                expired += 1
            continue
        if receipt.status == "ok":
            results.append((ticket.ticket_id, "ok", None))
            ok += 1
            continue
        errors += 1
        detail = f"{receipt.error or 'error'}: {receipt.message or ''}"
        results.append((ticket.ticket_id, "error", detail))
        if receipt.error in store.RETRYABLE_PUSH_ERRORS:
            retry.append((ticket.dedupe_key, detail))
        if receipt.device_not_registered and ticket.expo_push_token:
            gone.append(ticket.expo_push_token)
    store.record_receipts(engine, results, checked_at=now)
    requeued = sum(store.retry_later(engine, key, detail=d, now=now) for key, d in retry)
    removed = 0
    if gone:
        with engine.begin() as conn:
            removed = store.delete_tokens(conn, gone)
    notifications.record(
        storage.data_dir, channel="push", kind="receipt", sent=ok, failed=errors, skipped=expired
    )
    return dg.MaterializeResult(
        metadata={
            "tickets_checked": len(pending),
            "receipts_ok": ok,
            "receipts_error": errors,
            "receipts_expired": expired,
            "requeued": requeued,
            "gave_up": len(retry) - requeued,
            "still_pending": len(pending) - ok - errors - expired,
            "devices_removed": removed,
        }
    )


def resources(settings: Settings) -> dict[str, object]:
    """The resources this module's assets need, merged into the code location's."""
    return {"expo": ExpoResource(base_url=settings.expo_base_url)}
