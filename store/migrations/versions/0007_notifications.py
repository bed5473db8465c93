"""Notifications: devices (Expo push tokens), per-user preferences, and the sent-log.

`devices` is keyed by the Expo push token itself: a token names one app install, so it can
belong to one user at a time; registering it again under another account moves it (the phone
changed hands or accounts), which an upsert on the primary key does in one statement.

`notification_preferences` holds one row per user who changed a default; absent rows mean the
defaults (reminder 120 minutes ahead, no quiet hours). Quiet hours are wall-clock TIMEs in the
user's `timezone`. The email columns serve the email work (weekly digest, unsubscribe).

`notification_log` is both the audit trail and the idempotency guard: every push or email a
pipeline decides on is inserted with a `dedupe_key` (e.g. `push:reminder:<user>:<event>`)
under a unique constraint before anything is sent, so a re-run or a retried asset never
notifies twice. The partial index finds push tickets whose receipt has not been checked yet.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _tz() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "devices",
        sa.Column("expo_push_token", sa.Text, nullable=False),
        sa.Column("user_id", sa.BigInteger, nullable=False),
        sa.Column("platform", sa.Text, nullable=False),
        sa.Column("created_at", _tz(), server_default=sa.text("now()"), nullable=False),
        sa.Column("last_seen_at", _tz(), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("platform IN ('ios', 'android')", name=op.f("ck_devices_platform")),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], ondelete="CASCADE", name="fk_devices_user_id_users"
        ),
        sa.PrimaryKeyConstraint("expo_push_token", name="pk_devices"),
    )
    op.create_index("ix_devices_user_id", "devices", ["user_id"])

    op.create_table(
        "notification_preferences",
        sa.Column("user_id", sa.BigInteger, nullable=False),
        sa.Column("reminder_lead_minutes", sa.Integer, server_default="120", nullable=False),
        sa.Column("quiet_start", sa.Time, nullable=True),
        sa.Column("quiet_end", sa.Time, nullable=True),
        sa.Column("timezone", sa.Text, nullable=True),
        sa.Column("email", sa.Text, nullable=True),
        sa.Column(
            "weekly_digest_email", sa.Boolean, server_default=sa.text("false"), nullable=False
        ),
        sa.Column("email_unsubscribed_at", _tz(), nullable=True),
        sa.Column("updated_at", _tz(), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "reminder_lead_minutes BETWEEN 0 AND 10080",
            name=op.f("ck_notification_preferences_lead_minutes"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            ondelete="CASCADE",
            name="fk_notification_preferences_user_id_users",
        ),
        sa.PrimaryKeyConstraint("user_id", name="pk_notification_preferences"),
    )

    op.create_table(
        "notification_log",
        sa.Column("id", sa.BigInteger, sa.Identity(), nullable=False),
        sa.Column("channel", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("user_id", sa.BigInteger, nullable=True),
        sa.Column("dedupe_key", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("detail", sa.Text, nullable=True),
        sa.Column("expo_push_token", sa.Text, nullable=True),
        sa.Column("expo_ticket_id", sa.Text, nullable=True),
        sa.Column("receipt_status", sa.Text, nullable=True),
        sa.Column("receipt_checked_at", _tz(), nullable=True),
        sa.Column("created_at", _tz(), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "channel IN ('push', 'email')", name=op.f("ck_notification_log_channel")
        ),
        sa.CheckConstraint(
            "status IN ('sent', 'failed', 'skipped')", name=op.f("ck_notification_log_status")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], ondelete="CASCADE", name="fk_notification_log_user_id_users"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_notification_log"),
        sa.UniqueConstraint("dedupe_key", name="uq_notification_log_dedupe_key"),
    )
    op.create_index("ix_notification_log_user_id", "notification_log", ["user_id"])
    op.create_index(
        "ix_notification_log_awaiting_receipt",
        "notification_log",
        ["created_at"],
        postgresql_where=sa.text("expo_ticket_id IS NOT NULL AND receipt_checked_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_table("notification_log")
    op.drop_table("notification_preferences")
    op.drop_table("devices")
