"""Email from the pipelines: the weekly digest of each subscriber's top published events.

Who gets it: users whose `notification_preferences` say `weekly_digest_email`, with an
`email`, and no `email_unsubscribed_at` (those are counted as skipped). What: the top events
of their published feed (`store.feed.read_feed`, the same list the app shows, with cancelled,
started and already-swiped events dropped), plus a one-click unsubscribe link.

Once per (user, ISO week), however often the asset runs: `notification_log.dedupe_key`
(`email:weekly_digest:<user>:<YYYY-Www>`) is inserted in the same transaction that sends, and
committed with the outcome, so concurrent or repeated runs see either nothing (and wait on the
unique key) or the outcome. A `failed` row is retried by the next run; `sent` is final. The
same key is Resend's `Idempotency-Key`, so a crash between Resend's answer and the commit is
recognised on the re-run (Resend answers 409 `invalid_idempotent_request` when the content
changed meanwhile, which is recorded as already sent). Outcomes go to the
`MaterializeResult` metadata and to `godo_notifications_total{channel="email"}`.
"""

from dataclasses import dataclass
from datetime import UTC, datetime

import dagster as dg
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from godo.settings import DEV_JWT_SECRET, Settings
from pipelines.resources import LocalStorage, PostgresResource, RedisResource
from sources.resend.client import DEFAULT_BASE_URL, Email, ResendClient, ResendError
from sources.resend.messages import DigestEvent, weekly_digest
from store.feed import FeedItem, read_feed
from store.invites import issue_unsubscribe_token
from store.schema import notification_log, notification_preferences, users
from textfile_metrics import notifications

KIND = "weekly_digest"


class ResendResource(dg.ConfigurableResource):
    """Resend (or its local fake), the sender address, and what unsubscribe links need.

    `api_key` comes from `dg.EnvVar("RESEND_API_KEY")` and `link_secret` (the API's
    `GODO_JWT_SECRET`, which verifies the links) from `dg.EnvVar("GODO_JWT_SECRET")` outside
    development, so neither is written into run configuration.
    """

    base_url: str = DEFAULT_BASE_URL
    api_key: str
    sender: str
    public_api_url: str = "http://127.0.0.1:8000"
    link_secret: str
    max_attempts: int = 5
    max_backoff_seconds: float = 60.0

    def client(self) -> ResendClient:
        return ResendClient(
            api_key=self.api_key,
            base_url=self.base_url,
            max_attempts=self.max_attempts,
            max_backoff_seconds=self.max_backoff_seconds,
        )

    def unsubscribe_url(self, user_id: int) -> str:
        token = issue_unsubscribe_token(self.link_secret, user_id)
        return f"{self.public_api_url.rstrip('/')}/v1/email/unsubscribe?token={token}"


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
    failed: int = 0
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
    week = config.week or iso_week(datetime.now(UTC))
    tally = _Tally()
    with engine.connect() as conn:
        subscribers = conn.execute(
            sa.select(
                users.c.id,
                users.c.display_name,
                notification_preferences.c.email,
                notification_preferences.c.email_unsubscribed_at,
            )
            .join(users, users.c.id == notification_preferences.c.user_id)
            .where(
                notification_preferences.c.weekly_digest_email,
                notification_preferences.c.email.is_not(None),
            )
            .order_by(users.c.id)
        ).all()
    with resend.client() as client:
        for user_id, name, address, unsubscribed_at in subscribers:
            if unsubscribed_at is not None:
                tally.unsubscribed += 1
                continue
            key = dedupe_key(user_id, week)
            if _already_sent(engine, key):
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
                to=address,
                display_name=name,
                events=[_digest_event(item) for item in feed.items],
                unsubscribe_url=resend.unsubscribe_url(user_id),
            )
            outcome = _send_once(engine, client, email, user_id=user_id, key=key)
            if outcome == "sent":
                tally.sent += 1
            elif outcome == "failed":
                tally.failed += 1
                context.log.warning(f"weekly digest to user {user_id} failed")
            else:
                tally.already_sent += 1
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
            "skipped": tally.skipped,
            "skipped_already_sent": tally.already_sent,
            "skipped_unsubscribed": tally.unsubscribed,
            "skipped_empty_feed": tally.empty_feed,
        }
    )


def _already_sent(engine: sa.Engine, key: str) -> bool:
    """A cheap look before rendering: a final row means nothing to do (the send re-checks)."""
    with engine.connect() as conn:
        status = conn.execute(
            sa.select(notification_log.c.status).where(notification_log.c.dedupe_key == key)
        ).scalar_one_or_none()
    return status is not None and status != "failed"


def _send_once(
    engine: sa.Engine, client: ResendClient, email: Email, *, user_id: int, key: str
) -> str:
    """Claim `key`, send, record the outcome, in one transaction: 'sent', 'failed' or 'skipped'.

    The claim is an insert that stays uncommitted during the HTTP call, so a concurrent run
    blocks on the unique key until this one commits, then finds the row and skips it. A crash
    rolls the claim back, and the re-run sends with the same idempotency key.
    """
    with engine.begin() as conn:
        claimed = conn.execute(
            pg_insert(notification_log)
            .values(
                channel="email",
                kind=KIND,
                user_id=user_id,
                dedupe_key=key,
                status="failed",
                detail="sending",
            )
            .on_conflict_do_nothing(index_elements=[notification_log.c.dedupe_key])
            .returning(notification_log.c.id)
        ).scalar_one_or_none()
        if claimed is None:
            status = conn.execute(
                sa.select(notification_log.c.status)
                .where(notification_log.c.dedupe_key == key)
                .with_for_update()
            ).scalar_one()
            if status != "failed":
                return "skipped"
        try:
            message_id = client.send(email, idempotency_key=key)
            status, detail = "sent", f"resend:{message_id}"
        except ResendError as error:
            if error.name == "invalid_idempotent_request":
                status, detail = "sent", "sent by an earlier attempt (idempotency key in use)"
            else:
                status, detail = "failed", str(error)[:500]
        conn.execute(
            sa.update(notification_log)
            .where(notification_log.c.dedupe_key == key)
            .values(status=status, detail=detail)
        )
    return status


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
