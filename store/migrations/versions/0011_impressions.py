"""Impressions: every feed item served, partitioned by day; swipes and RSVPs name theirs.

`impressions` is partitioned by range of `served_at`, one partition per UTC day named
`impressions_pYYYYMMDD`. No partition is created here: the `impression_log` asset creates
them ahead of time and drops those past the retention (`store.impressions`), and it creates
the day of any row it moves before inserting it. The primary key holds the partition key, as
Postgres requires of a unique constraint on a partitioned table.

`swipes.impression_id` and `event_attendance.impression_id` are set only for a verified
impression id (signed, the caller's, that event's, not expired); no foreign key, since
impressions are dropped after their retention while swipes stay.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "impressions",
        sa.Column("impression_id", UUID(as_uuid=True), nullable=False),
        sa.Column("served_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user_id", sa.BigInteger, nullable=False),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("rank", sa.Integer, nullable=False),
        sa.Column("run_id", sa.Text, nullable=False),
        sa.Column("model_version", sa.Text, nullable=True),
        sa.Column("experiment", sa.Text, nullable=True),
        sa.Column("arm", sa.Text, nullable=True),
        sa.Column("propensity", sa.Float, nullable=False),
        sa.CheckConstraint(
            "propensity > 0 AND propensity <= 1", name=op.f("ck_impressions_propensity")
        ),
        sa.PrimaryKeyConstraint("impression_id", "served_at", name="pk_impressions"),
        postgresql_partition_by="RANGE (served_at)",
    )
    op.create_index("ix_impressions_user_id_served_at", "impressions", ["user_id", "served_at"])
    op.add_column("swipes", sa.Column("impression_id", UUID(as_uuid=True), nullable=True))
    op.add_column("event_attendance", sa.Column("impression_id", UUID(as_uuid=True), nullable=True))


def downgrade() -> None:
    op.drop_column("event_attendance", "impression_id")
    op.drop_column("swipes", "impression_id")
    op.drop_table("impressions")  # its partitions go with it
