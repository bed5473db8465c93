"""Friend invitations by email: who invited which address, until when, and whether it went out.

An invitation is addressed to an email, not a user (the friend may not have an account yet),
so it cannot live in `friend_requests`. The id is the `jti` of the signed link the email
carries (`store.invites`): the link itself is never stored, and looking an invite up needs
only the verified id.

`ix_invites_inviter_id_created_at` serves the per-inviter abuse limits (invites in the last
day; a pending invite for the same address); `ix_invites_email_created_at` the per-recipient
daily cap, so many accounts cannot flood one address. Addresses are stored lower-cased (the
check constraint), so those comparisons are plain equality.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "invites",
        sa.Column("id", UUID(as_uuid=True), nullable=False),
        sa.Column("inviter_id", sa.BigInteger, nullable=False),
        sa.Column("email", sa.Text, nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("send_status", sa.Text, server_default="pending", nullable=False),
        sa.Column("provider_message_id", sa.Text, nullable=True),
        sa.Column("send_detail", sa.Text, nullable=True),
        sa.CheckConstraint("email = lower(email)", name=op.f("ck_invites_email_lowercase")),
        sa.CheckConstraint(
            "send_status IN ('pending', 'sent', 'failed')", name=op.f("ck_invites_send_status")
        ),
        sa.ForeignKeyConstraint(
            ["inviter_id"], ["users.id"], ondelete="CASCADE", name="fk_invites_inviter_id_users"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_invites"),
    )
    op.create_index("ix_invites_inviter_id_created_at", "invites", ["inviter_id", "created_at"])
    op.create_index("ix_invites_email_created_at", "invites", ["email", "created_at"])


def downgrade() -> None:
    op.drop_table("invites")
