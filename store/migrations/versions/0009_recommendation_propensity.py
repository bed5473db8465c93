"""Recommendations keep the propensity of each slot: the probability the run chose that event.

A share of each feed's slots is drawn (`models.exploration`), and off-policy estimates need
the probability of what was shown. Rows of runs published before this column existed were
all deterministic, so `NOT NULL DEFAULT 1.0` is their true value and no writer has to
change; the check keeps a zero or out-of-range probability out, since IPS divides by it.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "recommendations",
        sa.Column("propensity", sa.Float, server_default=sa.text("1.0"), nullable=False),
    )
    op.create_check_constraint(
        op.f("ck_recommendations_propensity"),
        "recommendations",
        "propensity > 0 AND propensity <= 1",
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_recommendations_propensity"), "recommendations", type_="check")
    op.drop_column("recommendations", "propensity")
