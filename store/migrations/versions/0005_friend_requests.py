"""Friend requests: pending, one-way asks that become a friendship when accepted.

`friendships` keeps meaning what the feed and calendars already rely on: a friendship is both
directed rows. A request is not a friendship, so it gets a table of its own rather than a
one-sided `friendships` row (which every reader would then have to tell apart). Accepting
deletes the request and inserts both rows in one transaction.

The primary key (from_user_id, to_user_id) finds a user's outgoing requests and the one
request a pair can have per direction; `ix_friend_requests_to_user_id` finds incoming ones.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "friend_requests",
        sa.Column("from_user_id", sa.BigInteger, nullable=False),
        sa.Column("to_user_id", sa.BigInteger, nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        # The name `store.schema` gets from its naming convention; `op.f` marks it final so
        # the convention is not applied a second time (as it was, by mistake, in 0001).
        sa.CheckConstraint("from_user_id <> to_user_id", name=op.f("ck_friend_requests_not_self")),
        sa.ForeignKeyConstraint(
            ["from_user_id"],
            ["users.id"],
            ondelete="CASCADE",
            name="fk_friend_requests_from_user_id_users",
        ),
        sa.ForeignKeyConstraint(
            ["to_user_id"],
            ["users.id"],
            ondelete="CASCADE",
            name="fk_friend_requests_to_user_id_users",
        ),
        sa.PrimaryKeyConstraint("from_user_id", "to_user_id", name="pk_friend_requests"),
    )
    op.create_index("ix_friend_requests_to_user_id", "friend_requests", ["to_user_id"])


def downgrade() -> None:
    op.drop_table("friend_requests")
