"""Initial schema: users, friendships, venues, events, swipes, attendance, runs, recommendations.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.BigInteger, autoincrement=False, nullable=False),
        sa.Column("display_name", sa.Text, nullable=False),
        sa.Column("metro", sa.Text, nullable=False),
        sa.Column("home_lat", sa.Float, nullable=True),
        sa.Column("home_lon", sa.Float, nullable=True),
        sa.Column("created_at", TZ, server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
    )
    op.create_table(
        "friendships",
        sa.Column("user_id", sa.BigInteger, nullable=False),
        sa.Column("friend_id", sa.BigInteger, nullable=False),
        sa.Column("created_at", TZ, server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint("user_id <> friend_id", name="ck_friendships_not_self"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], ondelete="CASCADE", name="fk_friendships_user_id_users"
        ),
        sa.ForeignKeyConstraint(
            ["friend_id"], ["users.id"], ondelete="CASCADE", name="fk_friendships_friend_id_users"
        ),
        sa.PrimaryKeyConstraint("user_id", "friend_id", name="pk_friendships"),
    )
    op.create_index("ix_friendships_friend_id", "friendships", ["friend_id"])
    op.create_table(
        "venues",
        sa.Column("id", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("address", sa.Text, nullable=True),
        sa.Column("city", sa.Text, nullable=True),
        sa.Column("metro", sa.Text, nullable=False),
        sa.Column("latitude", sa.Float, nullable=True),
        sa.Column("longitude", sa.Float, nullable=True),
        sa.Column("capacity", sa.Integer, nullable=True),
        sa.Column("updated_at", TZ, server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_venues"),
    )
    op.create_table(
        "events",
        sa.Column("id", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("summary", sa.Text, nullable=True),
        sa.Column("url", sa.Text, nullable=True),
        sa.Column("venue_id", sa.Text, nullable=True),
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
        sa.Column("updated_at", TZ, server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(["venue_id"], ["venues.id"], name="fk_events_venue_id_venues"),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
    )
    op.create_index(
        "ix_events_metro_start_active",
        "events",
        ["metro", "start_utc"],
        postgresql_where=sa.text("is_active"),
    )
    op.create_index("ix_events_venue_id", "events", ["venue_id"])
    op.create_table(
        "swipes",
        sa.Column("id", UUID(as_uuid=True), nullable=False),
        sa.Column("user_id", sa.BigInteger, nullable=False),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("position", sa.Integer, nullable=True),
        sa.Column("created_at", TZ, server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint("action IN ('like', 'pass', 'superlike')", name="ck_swipes_action"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], ondelete="CASCADE", name="fk_swipes_user_id_users"
        ),
        sa.ForeignKeyConstraint(
            ["event_id"], ["events.id"], ondelete="CASCADE", name="fk_swipes_event_id_events"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_swipes"),
    )
    op.create_index("ix_swipes_user_id_event_id", "swipes", ["user_id", "event_id"])
    op.create_index("ix_swipes_created_at", "swipes", ["created_at"])
    op.create_table(
        "event_attendance",
        sa.Column("user_id", sa.BigInteger, nullable=False),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("visibility", sa.Text, server_default="friends", nullable=False),
        sa.Column("notes", sa.Text, nullable=True),
        sa.Column("updated_at", TZ, server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint(
            "status IN ('going', 'interested', 'not_going')", name="ck_event_attendance_status"
        ),
        sa.CheckConstraint(
            "visibility IN ('public', 'friends', 'private')", name="ck_event_attendance_visibility"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], ondelete="CASCADE", name="fk_event_attendance_user_id_users"
        ),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["events.id"],
            ondelete="CASCADE",
            name="fk_event_attendance_event_id_events",
        ),
        sa.PrimaryKeyConstraint("user_id", "event_id", name="pk_event_attendance"),
    )
    op.create_index(
        "ix_event_attendance_event_id_status", "event_attendance", ["event_id", "status"]
    )
    op.create_index(
        "ix_event_attendance_user_id_updated_at", "event_attendance", ["user_id", "updated_at"]
    )
    op.create_table(
        "recommendation_runs",
        sa.Column("id", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("n_users", sa.Integer, server_default="0", nullable=False),
        sa.Column("n_rows", sa.Integer, server_default="0", nullable=False),
        sa.Column("fallback", JSONB, server_default=sa.text("'[]'::jsonb"), nullable=False),
        sa.Column("created_at", TZ, server_default=sa.func.now(), nullable=False),
        sa.Column("published_at", TZ, nullable=True),
        sa.CheckConstraint(
            "status IN ('staged', 'published', 'failed')", name="ck_recommendation_runs_status"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_recommendation_runs"),
    )
    op.create_index(
        "ix_recommendation_runs_status_published_at",
        "recommendation_runs",
        ["status", "published_at"],
    )
    op.create_table(
        "recommendations",
        sa.Column("run_id", sa.Text, nullable=False),
        sa.Column("user_id", sa.BigInteger, nullable=False),
        sa.Column("rank", sa.SmallInteger, nullable=False),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["recommendation_runs.id"],
            ondelete="CASCADE",
            name="fk_recommendations_run_id_recommendation_runs",
        ),
        sa.PrimaryKeyConstraint("run_id", "user_id", "rank", name="pk_recommendations"),
    )


def downgrade() -> None:
    for table in (
        "recommendations",
        "recommendation_runs",
        "event_attendance",
        "swipes",
        "events",
        "venues",
        "friendships",
        "users",
    ):
        op.drop_table(table)
