"""Devices, notification preferences and the notification log (tables of migration 0007).

Devices: an Expo push token names one app install, so it belongs to one user at a time.
Registering is an upsert on the token: a retry only refreshes `last_seen_at`, and a token
registered by another account (the phone changed accounts) moves to the caller. Removing is
scoped to the caller: a stranger's DELETE of someone else's token deletes nothing and is not
told whether the token exists (tokens are not secrets we want to confirm).

Preferences: absent row = defaults. Quiet hours are wall-clock times in the user's IANA zone
(UTC when unset or unknown) and may wrap midnight (22:00-07:00).

The log is the idempotency guard of every notification pipeline, push and email alike: one
row per message (per device for push) under a unique `dedupe_key`, and one protocol:

1. `claim` the keys nobody holds (an upsert, committed before anything is sent: the row is
   `failed` with detail `sending`). Whoever gets a key back is its only sender; a re-run, a
   retry or a concurrent run finds the key taken and sends nothing. No transaction is open
   while the provider is called.
2. send, then `record_attempt`: `sent` (final), or `failed` (final) unless the provider
   said the failure is transient, in which case the channel's `RetryRule` decides.
3. `release` what was claimed but never handed over (the request failed for good before the
   provider took it): `pending`, due at once, not counted as an attempt.

A crash between claim and record leaves the row `failed`/`sending`: delivery is at most
once, never twice. Only `skipped` rows (quiet hours), due `pending` rows and, for a channel
whose rule allows it, a stale `sending` claim may be claimed again, which is how deferred and
retried notifications go out later.

The retry rule, per channel (`RETRY_RULES`); which failures are transient is the provider's
to say and the sender's to classify:

- push (Expo): a receipt or ticket error Expo says to retry (`RETRYABLE_PUSH_ERRORS`:
  `MessageRateExceeded`, "implement exponential backoff and slowly retry"; `ProviderError`,
  the push provider failing, treated the same) puts the row back to `pending` with
  `next_attempt_at` = now + 15 min x 2^(attempts - 1) (at most 6 h), until
  `MAX_PUSH_ATTEMPTS` hand-overs, after which it stays `failed` saying so. A request that kept
  failing after the client's own retries (an Expo outage) never reached Expo: its rows are
  released. A crashed claim stays `failed` (Expo has no idempotency key: resending could
  notify twice).
- email (Resend): a send that failed after the client's own retries (429, 5xx, network:
  `ResendUnavailableError`) is `pending` again, due at the next run (the client already backed
  off), until `MAX_EMAIL_ATTEMPTS` attempts; a refusal (422 validation, 401/403 key) is final.
  Every send carries the dedupe key as Resend's `Idempotency-Key`, so a claim left `sending`
  by a crash is claimed again once it is `EMAIL_RECLAIM_AFTER` old (no send takes that long)
  and while younger than `EMAIL_RECLAIM_UNTIL` (Resend remembers keys for 24 hours): the
  re-send is recognised by Resend instead of delivered twice. Older ones stay `failed`.

A later run re-sends a pending row only while its notification is still a candidate (a
reminder whose event started is not).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from store.errors import UnknownUserError
from store.schema import devices, notification_log, notification_preferences

Platform = Literal["ios", "android"]
Channel = Literal["push", "email"]
EXPO_TOKEN_PATTERN = re.compile(r"^Expo(?:nent)?PushToken\[[^\[\]\s]{1,200}\]$")
DEFAULT_REMINDER_LEAD_MINUTES = 120
SENDING = "sending"
# Receipt/ticket errors Expo says to retry; the others (DeviceNotRegistered, MessageTooBig,
# InvalidCredentials, MismatchSenderId) fail the same way every time.
RETRYABLE_PUSH_ERRORS = frozenset({"MessageRateExceeded", "ProviderError"})
MAX_PUSH_ATTEMPTS = 5
RETRY_BASE_DELAY = timedelta(minutes=15)
RETRY_MAX_DELAY = timedelta(hours=6)
MAX_EMAIL_ATTEMPTS = 5
EMAIL_RECLAIM_AFTER = timedelta(hours=1)
EMAIL_RECLAIM_UNTIL = timedelta(hours=23)


@dataclass(frozen=True)
class RetryRule:
    """When a channel's failed send goes out again (see the module docstring).

    A transient failure goes back to `pending`, due `delay(attempts)` later, until
    `max_attempts` hand-overs; then it is `failed` for good. `reclaim` is the age window in
    which a claim left `sending` (a crash mid-send) may be claimed again, None when never.
    """

    max_attempts: int
    base_delay: timedelta
    max_delay: timedelta
    reclaim: tuple[timedelta, timedelta] | None = None

    def delay(self, attempts: int) -> timedelta:
        """Exponential backoff after `attempts` hand-overs, capped at `max_delay`."""
        return min(self.base_delay * 2 ** max(attempts - 1, 0), self.max_delay)


RETRY_RULES: dict[Channel, RetryRule] = {
    "push": RetryRule(MAX_PUSH_ATTEMPTS, RETRY_BASE_DELAY, RETRY_MAX_DELAY),
    "email": RetryRule(
        MAX_EMAIL_ATTEMPTS,
        timedelta(0),
        timedelta(0),
        reclaim=(EMAIL_RECLAIM_AFTER, EMAIL_RECLAIM_UNTIL),
    ),
}


def retry_delay(attempts: int) -> timedelta:
    """Push's backoff after `attempts` hand-overs: 15 min, 30 min, 1 h, ... at most 6 h."""
    return RETRY_RULES["push"].delay(attempts)


@dataclass(frozen=True)
class Registration:
    """What registering a token did: `created` a new device, or `moved_from` another user."""

    created: bool
    moved_from: int | None


@dataclass(frozen=True)
class Preferences:
    """A user's push preferences, defaults filled in."""

    reminder_lead_minutes: int = DEFAULT_REMINDER_LEAD_MINUTES
    quiet_start: time | None = None
    quiet_end: time | None = None
    timezone: str | None = None


def is_expo_token(token: str) -> bool:
    return EXPO_TOKEN_PATTERN.match(token) is not None


def is_known_timezone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


# --- devices -------------------------------------------------------------------------------


def register_device(
    engine: sa.Engine, *, user_id: int, token: str, platform: Platform
) -> Registration:
    """Upsert the token under `user_id`; `UnknownUserError` if the user does not exist."""
    with engine.begin() as conn:
        previous = conn.execute(
            sa.select(devices.c.user_id).where(devices.c.expo_push_token == token).with_for_update()
        ).scalar_one_or_none()
        statement = insert(devices).values(
            expo_push_token=token, user_id=user_id, platform=platform
        )
        statement = statement.on_conflict_do_update(
            index_elements=[devices.c.expo_push_token],
            set_={
                "user_id": statement.excluded.user_id,
                "platform": statement.excluded.platform,
                "last_seen_at": sa.func.now(),
                # A moved token is a new device of its new owner.
                "created_at": sa.case(
                    (devices.c.user_id != statement.excluded.user_id, sa.func.now()),
                    else_=devices.c.created_at,
                ),
            },
        )
        try:
            conn.execute(statement)
        except sa.exc.IntegrityError as error:
            raise UnknownUserError(user_id) from error
    return Registration(
        created=previous is None,
        moved_from=previous if previous is not None and previous != user_id else None,
    )


def unregister_device(engine: sa.Engine, *, user_id: int, token: str) -> bool:
    """Delete the caller's device with this token; False when the caller has no such device."""
    with engine.begin() as conn:
        result = conn.execute(
            sa.delete(devices).where(
                devices.c.expo_push_token == token, devices.c.user_id == user_id
            )
        )
    return result.rowcount > 0


def user_tokens(engine: sa.Engine, user_id: int) -> list[str]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                sa.select(devices.c.expo_push_token)
                .where(devices.c.user_id == user_id)
                .order_by(devices.c.created_at)
            ).scalars()
        )


def delete_tokens(conn: sa.Connection, tokens: Iterable[str]) -> int:
    """Forget devices Expo says are gone (DeviceNotRegistered); whoever owns them now."""
    wanted = sorted(set(tokens))
    if not wanted:
        return 0
    result = conn.execute(sa.delete(devices).where(devices.c.expo_push_token.in_(wanted)))
    return result.rowcount


# --- preferences ---------------------------------------------------------------------------


def get_preferences(engine: sa.Engine, user_id: int) -> Preferences:
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(notification_preferences).where(notification_preferences.c.user_id == user_id)
        ).first()
    if row is None:
        return Preferences()
    return Preferences(
        reminder_lead_minutes=row.reminder_lead_minutes,
        quiet_start=row.quiet_start,
        quiet_end=row.quiet_end,
        timezone=row.timezone,
    )


def set_preferences(engine: sa.Engine, *, user_id: int, preferences: Preferences) -> Preferences:
    """Replace the push preferences (the email columns are left as they are)."""
    values = {
        "reminder_lead_minutes": preferences.reminder_lead_minutes,
        "quiet_start": preferences.quiet_start,
        "quiet_end": preferences.quiet_end,
        "timezone": preferences.timezone,
    }
    statement = insert(notification_preferences).values(user_id=user_id, **values)
    statement = statement.on_conflict_do_update(
        index_elements=[notification_preferences.c.user_id],
        set_={**{k: statement.excluded[k] for k in values}, "updated_at": sa.func.now()},
    )
    try:
        with engine.begin() as conn:
            conn.execute(statement)
    except sa.exc.IntegrityError as error:
        raise UnknownUserError(user_id) from error
    return preferences


def in_quiet_hours(
    now: datetime, quiet_start: time | None, quiet_end: time | None, timezone: str | None
) -> bool:
    """Whether `now` falls in the window, read on the user's wall clock.

    A window that wraps midnight (start after end) covers both ends of the night; equal or
    missing bounds mean no quiet hours.
    """
    if quiet_start is None or quiet_end is None or quiet_start == quiet_end:
        return False
    zone = ZoneInfo(timezone) if timezone and is_known_timezone(timezone) else ZoneInfo("UTC")
    local = now.astimezone(zone).time().replace(tzinfo=None)
    if quiet_start < quiet_end:
        return quiet_start <= local < quiet_end
    return local >= quiet_start or local < quiet_end


# --- the log -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogEntry:
    """One notification to claim: its key, and what it is for."""

    dedupe_key: str
    kind: str
    user_id: int | None
    expo_push_token: str | None = None
    channel: Channel = "push"


def _reclaimable(now: datetime | None) -> sa.ColumnElement[bool]:
    """Rows whose claim was left `sending` by a crash and that their channel's rule lets a
    run take again (its age inside the rule's window)."""
    log = notification_log.c
    clock: sa.ColumnElement[datetime] = sa.func.now() if now is None else sa.literal(now)
    windows = [
        sa.and_(
            log.channel == channel,
            log.created_at <= clock - rule.reclaim[0],
            log.created_at > clock - rule.reclaim[1],
        )
        for channel, rule in RETRY_RULES.items()
        if rule.reclaim is not None
    ]
    return sa.and_(log.status == "failed", log.detail == SENDING, sa.or_(sa.false(), *windows))


def done_keys(engine: sa.Engine, keys: Sequence[str], *, now: datetime | None = None) -> set[str]:
    """The keys already sent or failed for good, or being sent now (only `skipped`, `pending`
    and reclaimable rows may still go out)."""
    if not keys:
        return set()
    log = notification_log.c
    with engine.connect() as conn:
        return set(
            conn.execute(
                sa.select(log.dedupe_key).where(
                    log.dedupe_key.in_(list(keys)),
                    log.status.not_in(("skipped", "pending")),
                    sa.not_(_reclaimable(now)),
                )
            ).scalars()
        )


def claim(
    engine: sa.Engine, entries: Sequence[LogEntry], *, now: datetime | None = None
) -> set[str]:
    """Take the keys nobody took yet (new, skipped before, pending and due, or a crashed
    claim the channel may retake); returns the keys taken.

    Committed before anything is sent: whoever gets a key back is its only sender. A retaken
    row forgets its previous ticket and receipt (its attempts stay counted).
    """
    if not entries:
        return set()
    statement = insert(notification_log).values(
        [
            {
                "channel": e.channel,
                "kind": e.kind,
                "user_id": e.user_id,
                "dedupe_key": e.dedupe_key,
                "expo_push_token": e.expo_push_token,
                "status": "failed",
                "detail": SENDING,
            }
            for e in entries
        ]
    )
    log = notification_log.c
    upsert = statement.on_conflict_do_update(
        index_elements=[log.dedupe_key],
        set_={
            "status": "failed",
            "detail": SENDING,
            "created_at": sa.func.now(),
            "expo_ticket_id": None,
            "receipt_status": None,
            "receipt_checked_at": None,
            "next_attempt_at": None,
        },
        where=sa.or_(
            log.status == "skipped",
            sa.and_(
                log.status == "pending",
                sa.or_(
                    log.next_attempt_at.is_(None),
                    log.next_attempt_at <= (sa.func.now() if now is None else sa.literal(now)),
                ),
            ),
            _reclaimable(now),
        ),
    ).returning(log.dedupe_key)
    with engine.begin() as conn:
        return set(conn.execute(upsert).scalars())


def record_outcome(
    engine: sa.Engine,
    dedupe_key: str,
    *,
    status: Literal["sent", "failed"],
    detail: str | None = None,
    expo_ticket_id: str | None = None,
) -> None:
    """What the provider answered for a claimed message (it was handed over: one more
    attempt); `record_attempt` is the protocol's step, this its write."""
    with engine.begin() as conn:
        conn.execute(
            sa.update(notification_log)
            .where(notification_log.c.dedupe_key == dedupe_key)
            .values(
                status=status,
                detail=detail,
                expo_ticket_id=expo_ticket_id,
                attempts=notification_log.c.attempts + 1,
            )
        )


def release(engine: sa.Engine, dedupe_keys: Sequence[str], reason: str, *, now: datetime) -> int:
    """Give claimed-but-unsent keys back (`pending`, due at the run's `now`): Expo never got
    them, so a later run may send them. Only rows still marked as being sent are touched.

    Due at the run's clock, not the database's: a run pinned to a past `now` (a backfill)
    would otherwise release rows that no later run at that clock can claim.
    """
    if not dedupe_keys:
        return 0
    log = notification_log.c
    with engine.begin() as conn:
        result = conn.execute(
            sa.update(notification_log)
            .where(
                log.dedupe_key.in_(list(dedupe_keys)),
                log.status == "failed",
                log.detail == SENDING,
            )
            .values(status="pending", detail=reason, next_attempt_at=now)
        )
    return result.rowcount


def retry_later(engine: sa.Engine, dedupe_key: str, *, detail: str, now: datetime) -> bool:
    """After a failure the provider says is transient: `pending`, due after the channel's
    backoff, while attempts remain (True), else `failed` for good with the reason (False)."""
    log = notification_log.c
    with engine.begin() as conn:
        attempts, channel = conn.execute(
            sa.select(log.attempts, log.channel)
            .where(log.dedupe_key == dedupe_key)
            .with_for_update()
        ).one()
        rule = RETRY_RULES[channel]
        if attempts >= rule.max_attempts:
            values: dict[str, object] = {
                "status": "failed",
                "detail": f"{detail} (gave up after {attempts} attempts)",
            }
        else:
            values = {
                "status": "pending",
                "detail": detail,
                "next_attempt_at": now + rule.delay(attempts),
            }
        conn.execute(sa.update(notification_log).where(log.dedupe_key == dedupe_key).values(values))
    return values["status"] == "pending"


Attempt = Literal["sent", "failed", "retried"]


def record_attempt(
    engine: sa.Engine,
    dedupe_key: str,
    *,
    sent: bool,
    now: datetime,
    detail: str | None = None,
    retryable: bool = False,
    expo_ticket_id: str | None = None,
) -> Attempt:
    """Step 2 of the protocol for one claimed message the provider answered: record it, and
    when it failed transiently (`retryable`, the sender's reading of the provider's answer)
    let the channel's `RetryRule` queue it again. Returns what became of it."""
    record_outcome(
        engine,
        dedupe_key,
        status="sent" if sent else "failed",
        detail=detail,
        expo_ticket_id=expo_ticket_id,
    )
    if sent:
        return "sent"
    if retryable and retry_later(engine, dedupe_key, detail=detail or "failed", now=now):
        return "retried"
    return "failed"


def record_skipped(engine: sa.Engine, entries: Sequence[LogEntry], reason: str) -> int:
    """Log deferred notifications as `skipped` (a later run may claim them); never touches a
    key already sent or failed. Returns how many rows were written."""
    if not entries:
        return 0
    statement = insert(notification_log).values(
        [
            {
                "channel": e.channel,
                "kind": e.kind,
                "user_id": e.user_id,
                "dedupe_key": e.dedupe_key,
                "expo_push_token": e.expo_push_token,
                "status": "skipped",
                "detail": reason,
            }
            for e in entries
        ]
    )
    statement = statement.on_conflict_do_update(
        index_elements=[notification_log.c.dedupe_key],
        set_={"detail": statement.excluded.detail},
        where=notification_log.c.status == "skipped",
    )
    with engine.begin() as conn:
        return conn.execute(statement).rowcount


@dataclass(frozen=True)
class PendingTicket:
    dedupe_key: str
    ticket_id: str
    expo_push_token: str | None
    created_at: datetime


def tickets_awaiting_receipt(
    engine: sa.Engine, *, older_than: datetime, limit: int = 10_000
) -> list[PendingTicket]:
    """Sent pushes whose receipt was not checked yet, created before `older_than`."""
    log = notification_log.c
    statement = (
        sa.select(log.dedupe_key, log.expo_ticket_id, log.expo_push_token, log.created_at)
        .where(
            log.expo_ticket_id.is_not(None),
            log.receipt_checked_at.is_(None),
            log.created_at <= older_than,
        )
        .order_by(log.created_at)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [PendingTicket(r[0], r[1], r[2], r[3]) for r in conn.execute(statement)]


def record_receipts(
    engine: sa.Engine, results: Sequence[tuple[str, str, str | None]], *, checked_at: datetime
) -> None:
    """(ticket id, receipt status, detail) per checked ticket."""
    if not results:
        return
    with engine.begin() as conn:
        for ticket_id, receipt_status, detail in results:
            values: dict[str, object] = {
                "receipt_status": receipt_status,
                "receipt_checked_at": checked_at,
            }
            if detail is not None:
                values["detail"] = detail
            conn.execute(
                sa.update(notification_log)
                .where(notification_log.c.expo_ticket_id == ticket_id)
                .values(**values)
            )


RECEIPT_TTL = timedelta(hours=24)  # Expo keeps receipts about a day
