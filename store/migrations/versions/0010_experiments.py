"""A/B experiments, and which experiment arm (and model version) each published run serves.

`experiments` holds one row per experiment: the salt its users are hashed with, its layer and
range of the layer's users, start and end, and when it was stopped; `experiment_arms` its arms
in order (the order of the cumulative weights is part of the assignment), each with its
weight and what it serves (a registry version or alias, or a rule). Users are not stored:
assignment is a hash (`store.experiments`).

`recommendation_runs` gains `experiment` and `arm` (NULL for the champion's run, so readers
that want "the" published run filter on `experiment IS NULL`) and `model_version`, what
ranked the run, so impressions can name it.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _tz() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("salt", sa.Text, nullable=False),
        sa.Column("layer", sa.Text, server_default="default", nullable=False),
        sa.Column("traffic_from", sa.Float, server_default="0", nullable=False),
        sa.Column("traffic_to", sa.Float, server_default="1", nullable=False),
        sa.Column("start_at", _tz(), nullable=False),
        sa.Column("end_at", _tz(), nullable=False),
        sa.Column("created_at", _tz(), server_default=sa.text("now()"), nullable=False),
        sa.Column("stopped_at", _tz(), nullable=True),
        sa.CheckConstraint("end_at > start_at", name=op.f("ck_experiments_ends_after_start")),
        sa.CheckConstraint(
            "traffic_from >= 0 AND traffic_from < traffic_to AND traffic_to <= 1",
            name=op.f("ck_experiments_traffic"),
        ),
        sa.PrimaryKeyConstraint("name", name="pk_experiments"),
    )
    op.create_index("ix_experiments_layer_start_at", "experiments", ["layer", "start_at"])
    op.create_table(
        "experiment_arms",
        sa.Column("experiment", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("position", sa.SmallInteger, nullable=False),
        sa.Column("weight", sa.Float, nullable=False),
        sa.Column("serves_kind", sa.Text, nullable=False),
        sa.Column("serves", sa.Text, nullable=False),
        sa.CheckConstraint("weight >= 0 AND weight <= 1", name=op.f("ck_experiment_arms_weight")),
        sa.CheckConstraint(
            "serves_kind IN ('model', 'rule')", name=op.f("ck_experiment_arms_serves_kind")
        ),
        sa.ForeignKeyConstraint(
            ["experiment"],
            ["experiments.name"],
            ondelete="CASCADE",
            name="fk_experiment_arms_experiment_experiments",
        ),
        sa.PrimaryKeyConstraint("experiment", "name", name="pk_experiment_arms"),
        sa.UniqueConstraint(
            "experiment", "position", name="uq_experiment_arms_experiment_position"
        ),
    )
    op.add_column("recommendation_runs", sa.Column("experiment", sa.Text, nullable=True))
    op.add_column("recommendation_runs", sa.Column("arm", sa.Text, nullable=True))
    op.add_column("recommendation_runs", sa.Column("model_version", sa.Text, nullable=True))
    op.create_check_constraint(
        op.f("ck_recommendation_runs_arm_of_experiment"),
        "recommendation_runs",
        "(experiment IS NULL) = (arm IS NULL)",
    )


def downgrade() -> None:
    op.drop_constraint(
        op.f("ck_recommendation_runs_arm_of_experiment"), "recommendation_runs", type_="check"
    )
    op.drop_column("recommendation_runs", "model_version")
    op.drop_column("recommendation_runs", "arm")
    op.drop_column("recommendation_runs", "experiment")
    op.drop_table("experiment_arms")
    op.drop_table("experiments")
