"""Email from the pipelines: the weekly digest of each subscriber's top published events.

Who gets it (`store.notification_candidates.digest_subscribers`): users whose
`notification_preferences` say `weekly_digest_email`, with an `email`, and no
`email_unsubscribed_at` (those are counted as skipped). What: the top events of their
published feed (`store.feed.read_feed`, the same list the app shows, with cancelled, started
and already-swiped events dropped), plus a one-click unsubscribe link.

Once per (user, ISO week), however often the asset runs, through the notification log's one
protocol (`store.notifications`, the same as push): the key
`email:weekly_digest:<user>:<YYYY-Www>` is claimed (committed) before Resend is called, the
answer is recorded after, and no transaction is open during the HTTP call. A concurrent or
repeated run finds the key taken and sends nothing. The channel's retry rule
(`RETRY_RULES["email"]`): a send that failed transiently (Resend unreachable, 429 or 5xx
after the client's own retries) is `pending` again and retried by the next run, at most
`MAX_EMAIL_ATTEMPTS` times; a refusal (422, bad key) is final; `sent` is final. The same key
is Resend's `Idempotency-Key`, so a crash between the claim and the record is recognised: the
claim is retaken an hour later (while Resend still remembers the key) and Resend answers with
the message it already sent instead of sending it again (or 409 `invalid_idempotent_request`
when the content changed meanwhile, recorded as already sent). Outcomes go to the
`MaterializeResult` metadata (`failed` counts every send that failed this run, `retried`
those of them queued for the next run) and to `godo_notifications_total{channel="email"}`.
"""

from dataclasses import dataclass
from datetime import UTC, datetime

import dagster as dg
import sqlalchemy as sa

from core.settings import DEV_JWT_SECRET, Settings
from pipelines.resources import LocalStorage, PostgresResource, RedisResource, ResendResource
from sources.resend.client import Email, ResendClient, ResendError, ResendUnavailableError
from sources.resend.messages import DigestEvent, weekly_digest
from store import notifications as store
from store.feed import FeedItem, read_feed
from store.notification_candidates import digest_subscribers
from textfile_metrics import notifications

KIND = "weekly_digest"


class DigestConfig(dg.Config):
    max_events: int = 5
    # ISO week to send for, e.g. "2026-W48"; unset: the current week (UTC).
    week: str | None = None


def iso_week(now: datetime) -> str:
    year, week, _ = now.isocalendar()
    return f"{year}-W{week:02d}"


def dedupe_key(user_id: int, week: str) -> str:
    return f"email:{KIND}:{user_id}:{week}"


@dataclass
class _Tally:
    sent: int = 0
    failed: int = 0  # every send that failed this run, `retried` included
    retried: int = 0
    already_sent: int = 0
    unsubscribed: int = 0
    empty_feed: int = 0

    @property
    def skipped(self) -> int:
        return self.already_sent + self.unsubscribed + self.empty_feed


@dg.asset(group_name="notifications", kinds={"postgres", "email"})
def weekly_digest_email(
    context: dg.AssetExecutionContext,
    config: DigestConfig,
    postgres: PostgresResource,
    redis: RedisResource,
    resend: ResendResource,
    storage: LocalStorage,
) -> dg.MaterializeResult:
    """Send this week's digest to every subscriber not sent it yet; safe to run again."""
    engine = postgres.engine()
    redis_client = redis.client()
    now = datetime.now(UTC)
    week = config.week or iso_week(now)
    tally = _Tally()
    subscribers = digest_subscribers(engine)
    with resend.client() as client:
        for subscriber in subscribers:
            user_id = subscriber.user_id
            if subscriber.unsubscribed_at is not None:
                tally.unsubscribed += 1
                continue
            key = dedupe_key(user_id, week)
            if store.done_keys(engine, [key], now=now):  # cheap, before reading the feed
                tally.already_sent += 1
                continue
            feed = read_feed(
                engine=engine,
                redis_client=redis_client,
                keys=redis.key_layout(),
                user_id=user_id,
                limit=config.max_events,
            )
            if not feed.items:
                tally.empty_feed += 1  # no log row: a later run this week may have events
                continue
            email = weekly_digest(
                sender=resend.sender,
                to=subscriber.email,
                display_name=subscriber.display_name,
                events=[_digest_event(item) for item in feed.items],
                unsubscribe_url=resend.unsubscribe_url(user_id),
            )
            outcome = _send_once(engine, client, email, user_id=user_id, key=key, now=now)
            if outcome == "sent":
                tally.sent += 1
            elif outcome == "skipped":
                tally.already_sent += 1
            else:
                tally.failed += 1
                tally.retried += outcome == "retried"
                context.log.warning(f"weekly digest to user {user_id} failed ({outcome})")
    notifications.record(
        storage.data_dir,
        channel="email",
        kind=KIND,
        sent=tally.sent,
        failed=tally.failed,
        skipped=tally.skipped,
    )
    return dg.MaterializeResult(
        metadata={
            "week": week,
            "subscribers": len(subscribers),
            "sent": tally.sent,
            "failed": tally.failed,
            "retried": tally.retried,
            "skipped": tally.skipped,
            "skipped_already_sent": tally.already_sent,
            "skipped_unsubscribed": tally.unsubscribed,
            "skipped_empty_feed": tally.empty_feed,
        }
    )


def _send_once(
    engine: sa.Engine,
    client: ResendClient,
    email: Email,
    *,
    user_id: int,
    key: str,
    now: datetime,
) -> str:
    """Claim `key`, send, record the attempt: 'sent', 'failed', 'retried' or 'skipped' (the
    key is taken: sent, being sent, or not due yet).

    The claim is committed before the HTTP call, so whoever holds it is the only sender and
    a crash leaves a claimed row, never a second email (see the module docstring).
    """
    entry = store.LogEntry(dedupe_key=key, kind=KIND, user_id=user_id, channel="email")
    if not store.claim(engine, [entry], now=now):
        return "skipped"
    try:
        message_id = client.send(email, idempotency_key=key)
    except ResendError as error:
        if error.name == "invalid_idempotent_request":
            detail = "sent by an earlier attempt (idempotency key in use)"
            return store.record_attempt(engine, key, sent=True, now=now, detail=detail)
        return store.record_attempt(
            engine,
            key,
            sent=False,
            now=now,
            detail=str(error)[:500],
            retryable=isinstance(error, ResendUnavailableError),
        )
    return store.record_attempt(engine, key, sent=True, now=now, detail=f"resend:{message_id}")


def _digest_event(item: FeedItem) -> DigestEvent:
    card = item.card
    when = card.start_local.strftime("%a %b %-d, %-I:%M %p")
    return DigestEvent(
        name=card.name,
        when=when,
        venue=card.venue.name if card.venue else None,
        friends_going=item.friends_going,
    )


def resources(settings: Settings) -> dict[str, object]:
    """The resources this module's assets need, merged into the code location's."""
    # The links must verify with the API's secret: the development default can be written
    # in the configuration, any other secret is read from the environment at launch.
    dev = settings.jwt_secret.get_secret_value() == DEV_JWT_SECRET
    secret = DEV_JWT_SECRET if dev else dg.EnvVar("GODO_JWT_SECRET")
    return {
        "resend": ResendResource(
            base_url=settings.resend_base_url,
            api_key=dg.EnvVar("RESEND_API_KEY"),
            sender=settings.email_sender,
            public_api_url=settings.public_api_url,
            link_secret=secret,
        )
    }
