"""Devices, notification preferences and the notification log (tables of migration 0007).

Devices: an Expo push token names one app install, so it belongs to one user at a time.
Registering is an upsert on the token: a retry only refreshes `last_seen_at`, and a token
registered by another account (the phone changed accounts) moves to the caller. Removing is
scoped to the caller: a stranger's DELETE of someone else's token deletes nothing and is not
told whether the token exists (tokens are not secrets we want to confirm).

Preferences: absent row = defaults. Quiet hours are wall-clock times in the user's IANA zone
(UTC when unset or unknown) and may wrap midnight (22:00-07:00).

The log is the idempotency guard of every notification pipeline (`claim` / `record_*`): one
row per (notification, device) under a unique `dedupe_key`. A pipeline *claims* a key before
sending (the row is committed as `failed`/"sending"), then records the outcome; a re-run, a
retry or a concurrent run finds the key taken and sends nothing. A crash between claim and
record leaves the row `failed`, so delivery is at most once, never twice. Only `skipped`
rows (quiet hours) and due `pending` rows may be claimed again, which is how deferred and
retried notifications go out later.

Retries, as Expo documents them: a receipt (or ticket) error Expo says to retry
(`MessageRateExceeded`: "implement exponential backoff and slowly retry"; `ProviderError`,
the push provider failing, treated the same) puts the row back to `pending` with
`next_attempt_at` = now + 15 min x 2^(attempts - 1) (at most 6 h), until `MAX_PUSH_ATTEMPTS`
hand-overs to Expo, after which it stays `failed` saying so. A send request that kept failing
after the client's own retries (an Expo outage) never reached Expo: its claimed rows are
`release`d to `pending`, due at once, instead of being lost. A later run re-sends a pending
row only while its notification is still a candidate (a reminder whose event started is not).
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

from store.calendar import UnknownUserError
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


def retry_delay(attempts: int) -> timedelta:
    """Exponential backoff after `attempts` hand-overs: 15 min, 30 min, 1 h, ... at most 6 h."""
    return min(RETRY_BASE_DELAY * 2 ** max(attempts - 1, 0), RETRY_MAX_DELAY)


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


def done_keys(engine: sa.Engine, keys: Sequence[str]) -> set[str]:
    """The keys already sent or failed (only `skipped` and `pending` ones may still go out)."""
    if not keys:
        return set()
    with engine.connect() as conn:
        return set(
            conn.execute(
                sa.select(notification_log.c.dedupe_key).where(
                    notification_log.c.dedupe_key.in_(list(keys)),
                    notification_log.c.status.not_in(("skipped", "pending")),
                )
            ).scalars()
        )


def claim(
    engine: sa.Engine, entries: Sequence[LogEntry], *, now: datetime | None = None
) -> set[str]:
    """Take the keys nobody took yet (new, skipped before, or pending and due); returns the
    keys taken.

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
    """What Expo answered for a claimed message (it was handed over: one more attempt)."""
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
    """After an error Expo says to retry: `pending` with backoff while attempts remain
    (True), else `failed` for good with the reason (False)."""
    log = notification_log.c
    with engine.begin() as conn:
        attempts = conn.execute(
            sa.select(log.attempts).where(log.dedupe_key == dedupe_key).with_for_update()
        ).scalar_one()
        if attempts >= MAX_PUSH_ATTEMPTS:
            values: dict[str, object] = {
                "status": "failed",
                "detail": f"{detail} (gave up after {attempts} attempts)",
            }
        else:
            values = {
                "status": "pending",
                "detail": detail,
                "next_attempt_at": now + retry_delay(attempts),
            }
        conn.execute(sa.update(notification_log).where(log.dedupe_key == dedupe_key).values(values))
    return values["status"] == "pending"


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
