"""Users' sign-in ids: the identity provider's UUID that a token's `sub` names.

Supabase (and most hosted auth) puts the account's UUID in `sub`, while Godo's tables key
users by a BIGINT that the pipelines, feeds and published runs already use everywhere. Rather
than re-key every table, a user row carries the UUID of the sign-in it belongs to; serving
maps a UUID `sub` to the user id through the unique index here. Null for users that never
signed in through the provider (the synthetic city, tokens minted by `godo token`).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("users", sa.Column("auth_id", UUID(as_uuid=True), nullable=True))
    op.create_unique_constraint(op.f("uq_users_auth_id"), "users", ["auth_id"])


def downgrade() -> None:
    op.drop_constraint(op.f("uq_users_auth_id"), "users", type_="unique")
    op.drop_column("users", "auth_id")
