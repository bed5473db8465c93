"""Push notifications through Expo: event reminders, friends going, a weekly digest, receipts.

Every asset asks `store.notification_candidates` who should hear what *now*, then sends
through `sources.expo` (the client from `pipelines.resources.ExpoResource`) with the
notification log's protocol (`store.notifications`: claim, send, record the attempt, release
what was never handed over) as its idempotency guard: one row per (notification, device) keyed
by `dedupe_key`, claimed before sending, so a re-run never notifies twice.

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

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import dagster as dg
import sqlalchemy as sa

from core.settings import Settings
from pipelines.resources import ExpoResource, LocalStorage, PostgresResource, RedisResource
from sources.expo.client import MAX_MESSAGES_PER_REQUEST, ExpoClient, ExpoError, PushMessage
from store import notifications as store
from store.notification_candidates import (
    PushCandidate,
    digest_candidates,
    friend_going_candidates,
    reminder_candidates,
)
from textfile_metrics import notifications

GROUP = "notifications"
RECEIPT_DELAY = timedelta(minutes=15)


class PushConfig(dg.Config):
    """`now` (ISO-8601) pins the clock, for tests and backfills; unset means the current time."""

    now: str | None = None

    def clock(self) -> datetime:
        if not self.now:
            return datetime.now(UTC)
        value = datetime.fromisoformat(self.now)
        return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass
class Outcome:
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    devices_removed: int = 0
    retried: int = 0  # back to pending after an error Expo says to retry
    released: int = 0  # claimed, never handed to Expo (outage): pending again
    error: str | None = None  # why sending stopped early


def _deliver(
    engine: sa.Engine, expo: ExpoClient, candidates: Sequence[PushCandidate], now: datetime
) -> Outcome:
    """Skip (defer) those in quiet hours, claim the rest, send, record each attempt: the
    log's protocol (`store.notifications`), with Expo's retryable errors as the rule's input.

    One request (100 messages) at a time, each recorded before the next: when a request
    fails for good, what went before is kept and what was not sent is released.
    """
    outcome = Outcome()
    already = store.done_keys(engine, [c.entry.dedupe_key for c in candidates], now=now)
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
            tickets = expo.send([_message(c) for c in chunk])
        except ExpoError as error:
            unsent = [c.entry.dedupe_key for c in to_send[start:]]
            outcome.released = store.release(engine, unsent, f"expo unavailable: {error}", now=now)
            outcome.error = str(error)
            break
        for candidate, ticket in zip(chunk, tickets, strict=True):
            ok = ticket.status == "ok"
            attempt = store.record_attempt(
                engine,
                candidate.entry.dedupe_key,
                sent=ok,
                now=now,
                detail=None if ok else f"{ticket.error or 'error'}: {ticket.message or ''}".strip(),
                retryable=ticket.error in store.RETRYABLE_PUSH_ERRORS,
                expo_ticket_id=ticket.id if ok else None,
            )
            if attempt == "sent":
                outcome.sent += 1
            elif attempt == "retried":
                outcome.retried += 1
            else:
                outcome.failed += 1
                if ticket.device_not_registered:
                    gone.append(candidate.token)
    if gone:
        with engine.begin() as conn:
            outcome.devices_removed = store.delete_tokens(conn, gone)
    return outcome


def _message(candidate: PushCandidate) -> PushMessage:
    return PushMessage(
        to=candidate.token, title=candidate.title, body=candidate.body, data=candidate.data
    )


def _send(
    engine: sa.Engine,
    expo: ExpoResource,
    storage: LocalStorage,
    kind: str,
    candidates: list[PushCandidate],
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


@dg.asset(group_name=GROUP, kinds={"expo", "postgres"})
def event_reminders(
    config: PushConfig, postgres: PostgresResource, expo: ExpoResource, storage: LocalStorage
) -> dg.MaterializeResult:
    """Remind users of events they are going to, `reminder_lead_minutes` ahead, once each."""
    now = config.clock()
    engine = postgres.engine()
    return _send(engine, expo, storage, "event_reminder", reminder_candidates(engine, now), now)


# --- friends going -------------------------------------------------------------------------


@dg.asset(group_name=GROUP, kinds={"expo", "postgres"})
def friend_going_notifications(
    config: PushConfig, postgres: PostgresResource, expo: ExpoResource, storage: LocalStorage
) -> dg.MaterializeResult:
    """Tell users when a friend is going to an event they liked, once per (friend, event)."""
    now = config.clock()
    engine = postgres.engine()
    return _send(engine, expo, storage, "friend_going", friend_going_candidates(engine, now), now)


# --- weekly digest -------------------------------------------------------------------------


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
    return _send(
        engine,
        expo,
        storage,
        "weekly_digest",
        digest_candidates(engine, redis.client(), redis.key_layout(), now),
        now,
    )


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
