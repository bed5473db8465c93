"""Calendar: `went` attendance and the secret tokens of the iCalendar feed.

`calendar_tokens` holds one sha256 hash per user of the secret in their subscription URL
(`GET /v1/me/calendar.ics?token=...`), which phones fetch without a bearer token. Only the
hash is stored, looked up through a unique index, so a leaked table gives nobody a feed.

`event_attendance.status` gains `went` (a past event the user attended). The check constraint
is dropped and re-created: `ADD CONSTRAINT ... CHECK` validates existing rows under an ACCESS
EXCLUSIVE lock, a short one since every existing value is still allowed.

No new index on `event_attendance`: a calendar reads one user's rows, and the primary key
(user_id, event_id) already finds them and yields the event ids the join to `events` (by its
primary key) needs. The order is by `events.start_utc`, a column of the other table, which no
index on `event_attendance` can provide; sorting one user's few hundred rows is cheap.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# The name 0001 actually created: its names went through the naming convention a second time
# (`ck_<table>_` + the already prefixed name). Kept, so every check constraint stays alike;
# `op.f` marks it final so the convention is not applied yet again.
_STATUS_CHECK = op.f("ck_event_attendance_ck_event_attendance_status")


def upgrade() -> None:
    op.create_table(
        "calendar_tokens",
        sa.Column("user_id", sa.BigInteger, nullable=False),
        sa.Column("token_hash", sa.Text, nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], ondelete="CASCADE", name="fk_calendar_tokens_user_id_users"
        ),
        sa.PrimaryKeyConstraint("user_id", name="pk_calendar_tokens"),
        sa.UniqueConstraint("token_hash", name="uq_calendar_tokens_token_hash"),
    )
    op.drop_constraint(_STATUS_CHECK, "event_attendance", type_="check")
    op.create_check_constraint(
        _STATUS_CHECK,
        "event_attendance",
        "status IN ('going', 'interested', 'not_going', 'went')",
    )


def downgrade() -> None:
    # Rows marked `went` would violate the old constraint; they were attended, so "going".
    op.execute("UPDATE event_attendance SET status = 'going' WHERE status = 'went'")
    op.drop_constraint(_STATUS_CHECK, "event_attendance", type_="check")
    op.create_check_constraint(
        _STATUS_CHECK,
        "event_attendance",
        "status IN ('going', 'interested', 'not_going')",
    )
    op.drop_table("calendar_tokens")
