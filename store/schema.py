"""The app database's tables, as SQLAlchemy Core.

Alembic migrations are the only way the schema changes; `tests/integration/test_migrations.py`
checks that the migrations and these definitions agree, so this module is the readable truth.
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

TZ = sa.DateTime(timezone=True)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("display_name", sa.Text, nullable=False),
    sa.Column("metro", sa.Text, nullable=False),
    sa.Column("home_lat", sa.Float, nullable=True),
    sa.Column("home_lon", sa.Float, nullable=True),
    sa.Column("created_at", TZ, nullable=False, server_default=sa.func.now()),
    # Event categories ticked at signup (values of events.category): the only taste signal a
    # user has before their first swipe. Empty, not NULL, when they skipped the question.
    sa.Column(
        "onboarding_categories",
        ARRAY(sa.Text),
        nullable=False,
        server_default=sa.text("'{}'::text[]"),
    ),
    # The identity provider's account UUID (a Supabase token's `sub`); null for users who
    # never signed in through it. Serving maps a UUID `sub` to `id` through this.
    sa.Column("auth_id", UUID(as_uuid=True), nullable=True, unique=True),
)

friendships = sa.Table(
    "friendships",
    metadata,
    sa.Column(
        "user_id", sa.BigInteger, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column(
        "friend_id", sa.BigInteger, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("created_at", TZ, nullable=False, server_default=sa.func.now()),
    sa.CheckConstraint("user_id <> friend_id", name="not_self"),
    # "Which of my friends are going" walks friendships from the friend's side too.
    sa.Index(None, "friend_id"),
)

friend_requests = sa.Table(
    "friend_requests",
    metadata,
    # A pending request only: accepting deletes it and writes both `friendships` rows in the
    # same transaction, so a pair is either requested or friends, never both.
    sa.Column(
        "from_user_id",
        sa.BigInteger,
        sa.ForeignKey("users.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column(
        "to_user_id", sa.BigInteger, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("created_at", TZ, nullable=False, server_default=sa.func.now()),
    sa.CheckConstraint("from_user_id <> to_user_id", name="not_self"),
    # A user's incoming requests; the primary key already serves the outgoing ones.
    sa.Index(None, "to_user_id"),
)

venues = sa.Table(
    "venues",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("address", sa.Text, nullable=True),
    sa.Column("city", sa.Text, nullable=True),
    sa.Column("metro", sa.Text, nullable=False),
    sa.Column("latitude", sa.Float, nullable=True),
    sa.Column("longitude", sa.Float, nullable=True),
    sa.Column("capacity", sa.Integer, nullable=True),
    sa.Column("updated_at", TZ, nullable=False, server_default=sa.func.now()),
    # How far latitude/longitude can be trusted (migration 0012): `exact`, `approximate` (the
    # geocoder matched only part of the address or a whole area, e.g. a city centroid; the
    # point is then left null, so distances and the radius filter treat it as unknown) or
    # `none`. NULL on rows written before the column existed.
    sa.Column("coordinate_quality", sa.Text, nullable=True),
    sa.CheckConstraint(
        "coordinate_quality IN ('exact', 'approximate', 'none')", name="coordinate_quality"
    ),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("summary", sa.Text, nullable=True),
    sa.Column("url", sa.Text, nullable=True),
    sa.Column("venue_id", sa.Text, sa.ForeignKey("venues.id"), nullable=True),
    sa.Column("metro", sa.Text, nullable=False),
    sa.Column("category", sa.Text, nullable=False),
    sa.Column("start_utc", TZ, nullable=False),
    sa.Column("end_utc", TZ, nullable=True),
    sa.Column("timezone", sa.Text, nullable=True),
    sa.Column("is_free", sa.Boolean, nullable=False),
    sa.Column("price_min_cents", sa.Integer, nullable=True),
    sa.Column("price_max_cents", sa.Integer, nullable=True),
    sa.Column("currency", sa.Text, nullable=True),
    sa.Column("capacity", sa.Integer, nullable=True),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("is_active", sa.Boolean, nullable=False),
    sa.Column("changed_at", TZ, nullable=True),
    sa.Column("updated_at", TZ, nullable=False, server_default=sa.func.now()),
    # Bumped by the catalogue upsert only when start, end or cancellation change (0012), so
    # the iCalendar feed's SEQUENCE is monotonic and LAST-MODIFIED true: `updated_at` moves on
    # every hourly upsert whether anything changed or not.
    sa.Column("schedule_revision", sa.Integer, nullable=False, server_default=sa.text("0")),
    sa.Column("schedule_changed_at", TZ, nullable=True),
    # Feed hydration and the "upcoming in my metro" fallback read active events by time.
    sa.Index(
        "ix_events_metro_start_active", "metro", "start_utc", postgresql_where=sa.text("is_active")
    ),
    sa.Index(None, "venue_id"),
)

swipes = sa.Table(
    "swipes",
    metadata,
    # Server-generated; retries are recognised by `client_id` instead (see below).
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    # The app's own id for the swipe (`POST /v1/swipes`), so a retried batch is stored once.
    # NULL for rows written before the API and by the synthetic-data writer.
    sa.Column("client_id", sa.Text, nullable=True),
    sa.Column(
        "user_id", sa.BigInteger, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("event_id", sa.Text, sa.ForeignKey("events.id", ondelete="CASCADE"), nullable=False),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("position", sa.Integer, nullable=True),
    # When the server stored the swipe: the feed drops events swiped since a run's publish.
    sa.Column("created_at", TZ, nullable=False, server_default=sa.func.now()),
    # When the user swiped, as the app reported it (capped at created_at); a batch sent after an
    # offline session is older than its created_at. NULL for rows written before the API.
    sa.Column("swiped_at", TZ, nullable=True),
    # The feed impression the swipe answers (migration 0011): set only when the app sent a
    # signed id that names this user and event and is not expired (`core.impression_ids`).
    # No foreign key: impressions are partitioned and dropped after their retention.
    sa.Column("impression_id", UUID(as_uuid=True), nullable=True),
    sa.CheckConstraint("action IN ('like', 'pass', 'superlike')", name="action"),
    # Idempotency key of the API, per user so two apps' ids never collide. A plain unique
    # constraint, not a partial index: Postgres treats NULLs as distinct, so legacy rows
    # coexist, and `ON CONFLICT (user_id, client_id)` needs no WHERE clause to match it.
    sa.UniqueConstraint("user_id", "client_id"),
    # The feed excludes what a user swiped; training reads swipes by time.
    sa.Index(None, "user_id", "event_id"),
    sa.Index(None, "created_at"),
)

event_attendance = sa.Table(
    "event_attendance",
    metadata,
    sa.Column(
        "user_id", sa.BigInteger, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column(
        "event_id", sa.Text, sa.ForeignKey("events.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("visibility", sa.Text, nullable=False, server_default="friends"),
    sa.Column("notes", sa.Text, nullable=True),
    sa.Column("updated_at", TZ, nullable=False, server_default=sa.func.now()),
    # The feed impression the RSVP answers, verified like `swipes.impression_id`; a later PUT
    # without a valid id keeps it (the answer still came from that card).
    sa.Column("impression_id", UUID(as_uuid=True), nullable=True),
    # `went` marks a past event the user attended (`PUT /v1/events/{id}/attendance`).
    sa.CheckConstraint("status IN ('going', 'interested', 'not_going', 'went')", name="status"),
    sa.CheckConstraint("visibility IN ('public', 'friends', 'private')", name="visibility"),
    # "Friends going to this event" looks up attendance by event.
    sa.Index(None, "event_id", "status"),
    # A user's calendar reads their attendance by recency.
    sa.Index(None, "user_id", "updated_at"),
)

calendar_tokens = sa.Table(
    "calendar_tokens",
    metadata,
    # One live token per user: creating a new one rotates (replaces) the old.
    sa.Column(
        "user_id", sa.BigInteger, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    ),
    # sha256 hex of the secret in the feed URL; the plain token is shown to the user once and
    # never stored, so a leaked table cannot be replayed against `GET /v1/me/calendar.ics`.
    sa.Column("token_hash", sa.Text, nullable=False),
    sa.Column("created_at", TZ, nullable=False, server_default=sa.func.now()),
    # The feed authenticates by looking the hash up.
    sa.UniqueConstraint("token_hash"),
)

recommendation_runs = sa.Table(
    "recommendation_runs",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("n_users", sa.Integer, nullable=False, server_default="0"),
    sa.Column("n_rows", sa.Integer, nullable=False, server_default="0"),
    # The cold-start list (ranked event ids) served to users the run has no list for.
    sa.Column("fallback", JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
    sa.Column("created_at", TZ, nullable=False, server_default=sa.func.now()),
    sa.Column("published_at", TZ, nullable=True),
    # Set for a run published for an experiment's arm (migration 0010); NULL for the
    # champion's run, the one `feed:current` names and everyone outside experiments reads.
    sa.Column("experiment", sa.Text, nullable=True),
    sa.Column("arm", sa.Text, nullable=True),
    # The registry version that ranked the run, or a rule's name ('popularity'); NULL when
    # unknown (runs published before 0010).
    sa.Column("model_version", sa.Text, nullable=True),
    sa.CheckConstraint("status IN ('staged', 'published', 'failed')", name="status"),
    sa.CheckConstraint("(experiment IS NULL) = (arm IS NULL)", name="arm_of_experiment"),
    # Readers find the newest published run.
    sa.Index(None, "status", "published_at"),
)

recommendations = sa.Table(
    "recommendations",
    metadata,
    sa.Column(
        "run_id",
        sa.Text,
        sa.ForeignKey("recommendation_runs.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    # No foreign keys to users/events: a run is a snapshot and must survive catalogue churn.
    sa.Column("user_id", sa.BigInteger, primary_key=True),
    sa.Column("rank", sa.SmallInteger, primary_key=True),
    sa.Column("event_id", sa.Text, nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    # The probability the run chose this event for this slot given the ranks above it
    # (migration 0009; `models.exploration`): 1.0 for a deterministic slot, and for rows
    # published before the column existed. Impressions copy it for off-policy estimates.
    sa.Column("propensity", sa.Float, nullable=False, server_default=sa.text("1.0")),
    sa.CheckConstraint("propensity > 0 AND propensity <= 1", name="propensity"),
)

# --- Experiments (migration 0010) ---------------------------------------------------------

experiments = sa.Table(
    "experiments",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    # hash(salt, user) picks the arm (`store.experiments.unit_hash`): never changes once created.
    sa.Column("salt", sa.Text, nullable=False),
    # Experiments of one layer never share users at the same time; layers are independent.
    sa.Column("layer", sa.Text, nullable=False, server_default="default"),
    # The range of the layer's hash space whose users are in the experiment.
    sa.Column("traffic_from", sa.Float, nullable=False, server_default="0"),
    sa.Column("traffic_to", sa.Float, nullable=False, server_default="1"),
    sa.Column("start_at", TZ, nullable=False),
    sa.Column("end_at", TZ, nullable=False),
    sa.Column("created_at", TZ, nullable=False, server_default=sa.func.now()),
    # Set by `godo experiment stop`: from then on its users get the champion.
    sa.Column("stopped_at", TZ, nullable=True),
    sa.CheckConstraint("end_at > start_at", name="ends_after_start"),
    sa.CheckConstraint(
        "traffic_from >= 0 AND traffic_from < traffic_to AND traffic_to <= 1", name="traffic"
    ),
    # The overlap check reads a layer's experiments by time.
    sa.Index(None, "layer", "start_at"),
)

experiment_arms = sa.Table(
    "experiment_arms",
    metadata,
    sa.Column(
        "experiment",
        sa.Text,
        sa.ForeignKey("experiments.name", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("name", sa.Text, primary_key=True),
    # Order of the cumulative weights: part of the assignment, so it is stored.
    sa.Column("position", sa.SmallInteger, nullable=False),
    sa.Column("weight", sa.Float, nullable=False),
    # 'model': `serves` is a registry version number or alias; 'rule': a rule's name.
    sa.Column("serves_kind", sa.Text, nullable=False),
    sa.Column("serves", sa.Text, nullable=False),
    sa.CheckConstraint("weight >= 0 AND weight <= 1", name="weight"),
    sa.CheckConstraint("serves_kind IN ('model', 'rule')", name="serves_kind"),
    sa.UniqueConstraint("experiment", "position"),
)

# --- Impressions (migration 0011) ---------------------------------------------------------

impressions = sa.Table(
    "impressions",
    metadata,
    # One row per feed item served. Partitioned by day on `served_at` (one partition per UTC
    # day, `impressions_pYYYYMMDD`, created ahead and dropped after the retention by the
    # `impression_log` asset: `store.impressions`), so dropping a day is a DROP TABLE, not a
    # DELETE. The primary key holds the partition key, as Postgres requires; the uuid alone is
    # unique by construction (`core.impression_ids`).
    sa.Column("impression_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("served_at", TZ, primary_key=True),
    # No foreign keys: a log of what was shown outlives catalogue churn and runs being pruned.
    sa.Column("user_id", sa.BigInteger, nullable=False),
    sa.Column("event_id", sa.Text, nullable=False),
    # 1-based position in the user's list (the run's rank).
    sa.Column("rank", sa.Integer, nullable=False),
    sa.Column("run_id", sa.Text, nullable=False),
    # MLflow registry version or a rule name ('popularity'); NULL when the run did not say.
    sa.Column("model_version", sa.Text, nullable=True),
    # NULL (both) outside any experiment: the champion served it.
    sa.Column("experiment", sa.Text, nullable=True),
    sa.Column("arm", sa.Text, nullable=True),
    # Probability the card was chosen for its slot; 1.0 for deterministic slots.
    sa.Column("propensity", sa.Float, nullable=False),
    sa.CheckConstraint("propensity > 0 AND propensity <= 1", name="propensity"),
    # One user's impressions by time: sessions, the admin page's history, per-user joins.
    sa.Index(None, "user_id", "served_at"),
    postgresql_partition_by="RANGE (served_at)",
)

# --- Notifications (migration 0007) -------------------------------------------------------

devices = sa.Table(
    "devices",
    metadata,
    # One app install's Expo push token; it belongs to one user at a time, and registering it
    # under another account moves it (an upsert on this key).
    sa.Column("expo_push_token", sa.Text, primary_key=True),
    sa.Column(
        "user_id", sa.BigInteger, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("platform", sa.Text, nullable=False),
    sa.Column("created_at", TZ, nullable=False, server_default=sa.func.now()),
    sa.Column("last_seen_at", TZ, nullable=False, server_default=sa.func.now()),
    sa.CheckConstraint("platform IN ('ios', 'android')", name="platform"),
    # The pipelines fan a notification out to all of a user's devices.
    sa.Index(None, "user_id"),
)

notification_preferences = sa.Table(
    "notification_preferences",
    metadata,
    # Absent row = defaults (120-minute reminders, no quiet hours, no digest email).
    sa.Column(
        "user_id", sa.BigInteger, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("reminder_lead_minutes", sa.Integer, nullable=False, server_default="120"),
    # Wall-clock times in `timezone` (an IANA name); a window may wrap midnight (22:00-07:00).
    sa.Column("quiet_start", sa.Time, nullable=True),
    sa.Column("quiet_end", sa.Time, nullable=True),
    sa.Column("timezone", sa.Text, nullable=True),
    # For the email work: address, weekly digest opt-in, and one-click unsubscribe.
    sa.Column("email", sa.Text, nullable=True),
    sa.Column("weekly_digest_email", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("email_unsubscribed_at", TZ, nullable=True),
    sa.Column("updated_at", TZ, nullable=False, server_default=sa.func.now()),
    sa.CheckConstraint("reminder_lead_minutes BETWEEN 0 AND 10080", name="lead_minutes"),
)

notification_log = sa.Table(
    "notification_log",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("channel", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    # Nullable: an email may go to an address that is not (yet) a user.
    sa.Column(
        "user_id", sa.BigInteger, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=True
    ),
    # Idempotency: inserted before sending, so a re-run never notifies twice.
    sa.Column("dedupe_key", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("detail", sa.Text, nullable=True),
    # The device a push went to (no foreign key: the log outlives a deleted device), so a
    # DeviceNotRegistered receipt can remove exactly that device.
    sa.Column("expo_push_token", sa.Text, nullable=True),
    sa.Column("expo_ticket_id", sa.Text, nullable=True),
    sa.Column("receipt_status", sa.Text, nullable=True),
    sa.Column("receipt_checked_at", TZ, nullable=True),
    sa.Column("created_at", TZ, nullable=False, server_default=sa.func.now()),
    # Retries (0012): how many times the message was handed to Expo, and when a `pending`
    # row (Expo said retry, or an outage outlasted the client's retries) may be claimed again.
    sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
    sa.Column("next_attempt_at", TZ, nullable=True),
    sa.CheckConstraint("channel IN ('push', 'email')", name="channel"),
    sa.CheckConstraint("status IN ('sent', 'failed', 'skipped', 'pending')", name="status"),
    sa.UniqueConstraint("dedupe_key"),
    sa.Index(None, "user_id"),
    # `push_receipts` reads the tickets still awaiting a receipt, oldest first.
    sa.Index(
        "ix_notification_log_awaiting_receipt",
        "created_at",
        postgresql_where=sa.text("expo_ticket_id IS NOT NULL AND receipt_checked_at IS NULL"),
    ),
)

invites = sa.Table(
    "invites",
    metadata,
    # Also the `jti` of the signed link in the email (`store.invites`); the link is not stored.
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column(
        "inviter_id", sa.BigInteger, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    ),
    # Lower-cased by the API, so limits and "already invited" compare with plain equality.
    sa.Column("email", sa.Text, nullable=False),
    sa.Column("created_at", TZ, nullable=False, server_default=sa.func.now()),
    sa.Column("expires_at", TZ, nullable=False),
    sa.Column("accepted_at", TZ, nullable=True),
    # `pending` until the provider answered; a `failed` send does not block inviting again.
    sa.Column("send_status", sa.Text, nullable=False, server_default="pending"),
    sa.Column("provider_message_id", sa.Text, nullable=True),
    sa.Column("send_detail", sa.Text, nullable=True),
    sa.CheckConstraint("email = lower(email)", name="email_lowercase"),
    sa.CheckConstraint("send_status IN ('pending', 'sent', 'failed')", name="send_status"),
    # Abuse limits: an inviter's invites of the last day, and the same address's.
    sa.Index(None, "inviter_id", "created_at"),
    sa.Index(None, "email", "created_at"),
)


# Daily partitions of `impressions` are made and dropped by the pipeline, not by migrations,
# so the migration environment and its test leave them out of the comparison.
IMPRESSION_PARTITION = re.compile(r"impressions_p[0-9]{8}")


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    """Alembic `include_name`: everything but the pipeline's partitions of `impressions`."""
    return not (type_ == "table" and name is not None and IMPRESSION_PARTITION.fullmatch(name))
