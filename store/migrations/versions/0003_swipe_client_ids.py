"""Client ids and client times on swipes, for `POST /v1/swipes`.

The app may resend a batch it is unsure arrived (flaky mobile networks), so each swipe carries
an id the app generated and the API inserts with `ON CONFLICT (user_id, client_id) DO NOTHING`.

`swiped_at` keeps the time the app says the user swiped, apart from `created_at` (when the
server stored it): the feed drops events swiped since a run was published by `created_at`, so
that one must stay server time, while training wants the real swipe time.

Both columns are nullable: rows written before the API (and by the synthetic-data writer)
have no client id or client time, and inventing them would be a backfill for nothing. A plain
unique constraint suffices because Postgres treats NULLs as distinct, and it keeps the conflict
target free of a WHERE clause. Adding nullable columns without a default is a catalogue-only
change; building the unique index scans the table once under a SHARE lock (writes to swipes
wait meanwhile).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("swipes", sa.Column("client_id", sa.Text, nullable=True))
    op.add_column("swipes", sa.Column("swiped_at", sa.DateTime(timezone=True), nullable=True))
    op.create_unique_constraint("uq_swipes_user_id_client_id", "swipes", ["user_id", "client_id"])


def downgrade() -> None:
    op.drop_constraint("uq_swipes_user_id_client_id", "swipes", type_="unique")
    op.drop_column("swipes", "swiped_at")
    op.drop_column("swipes", "client_id")
