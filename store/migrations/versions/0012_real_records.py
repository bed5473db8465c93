"""Real records: venue coordinate quality, event schedule revisions, push retries.

- `venues.coordinate_quality`: how far the stored point can be trusted. `exact` (Eventbrite's
  own point inside the metro, or a geocode Google calls precise), `approximate` (the geocoder
  only matched part of the address or gave an APPROXIMATE location, e.g. a city centroid: the
  point is *not* stored, so distances and the radius filter treat it as unknown), `none`
  (nothing usable). NULL on rows written before this column.
- `events.schedule_revision` / `events.schedule_changed_at`: bumped by the catalogue upsert
  only when the start, the end or the cancellation changes, so the iCalendar feed can derive
  a monotonic `SEQUENCE` and a true `LAST-MODIFIED` (`updated_at` moves on every hourly
  upsert). Existing rows start at revision 0 with no change time.
- `notification_log.attempts` / `next_attempt_at` and the status `pending`: a push Expo says
  to retry (receipt `MessageRateExceeded`/`ProviderError`), or one claimed before an outage
  that outlasted the client's retries, goes back to `pending` with a backoff instead of
  staying `failed` forever; `attempts` bounds the retries.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("venues", sa.Column("coordinate_quality", sa.Text, nullable=True))
    op.create_check_constraint(
        op.f("ck_venues_coordinate_quality"),
        "venues",
        "coordinate_quality IN ('exact', 'approximate', 'none')",
    )
    op.add_column(
        "events",
        sa.Column("schedule_revision", sa.Integer, server_default=sa.text("0"), nullable=False),
    )
    op.add_column(
        "events", sa.Column("schedule_changed_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "notification_log",
        sa.Column("attempts", sa.Integer, server_default=sa.text("0"), nullable=False),
    )
    op.add_column(
        "notification_log",
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.drop_constraint(op.f("ck_notification_log_status"), "notification_log", type_="check")
    op.create_check_constraint(
        op.f("ck_notification_log_status"),
        "notification_log",
        "status IN ('sent', 'failed', 'skipped', 'pending')",
    )


def downgrade() -> None:
    # A pending push cannot be represented before 0012: it becomes a failed one.
    op.execute(
        "UPDATE notification_log SET status = 'failed', detail = 'retry dropped by downgrade' "
        "WHERE status = 'pending'"
    )
    op.drop_constraint(op.f("ck_notification_log_status"), "notification_log", type_="check")
    op.create_check_constraint(
        op.f("ck_notification_log_status"),
        "notification_log",
        "status IN ('sent', 'failed', 'skipped')",
    )
    op.drop_column("notification_log", "next_attempt_at")
    op.drop_column("notification_log", "attempts")
    op.drop_column("events", "schedule_changed_at")
    op.drop_column("events", "schedule_revision")
    op.drop_constraint(op.f("ck_venues_coordinate_quality"), "venues", type_="check")
    op.drop_column("venues", "coordinate_quality")
