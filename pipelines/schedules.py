"""Schedules: hourly ingest per metro, nightly retrain (which then publishes, see sensors),
notifications, push receipts and the daily online metrics."""

import dagster as dg

from pipelines.jobs import (
    impressions_job,
    ingest_job,
    online_metrics_job,
    outreach_job,
    receipts_job,
    retrain_job,
)
from pipelines.partitions import metro_partitions


@dg.schedule(
    job=ingest_job,
    cron_schedule="0 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
)
def hourly_ingest(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
    """Every hour, one run per metro: metros ingest independently and fail independently."""
    hour = context.scheduled_execution_time.strftime("%Y-%m-%dT%H")
    return [
        dg.RunRequest(partition_key=metro, run_key=f"{metro}:{hour}")
        for metro in metro_partitions.get_partition_keys()
    ]


nightly_retrain = dg.ScheduleDefinition(
    name="nightly_retrain",
    job=retrain_job,
    cron_schedule="0 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
)

# Reminders need an hourly look (lead times are hours); digests are once a week per user
# whatever the cadence, so the same hourly run covers them.
hourly_notifications = dg.ScheduleDefinition(
    name="hourly_notifications",
    job=outreach_job,
    cron_schedule="30 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
)

# Expo keeps receipts for a day and has them ready within minutes.
push_receipts_every_15_minutes = dg.ScheduleDefinition(
    name="push_receipts_every_15_minutes",
    job=receipts_job,
    cron_schedule="*/15 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
)

# The stream holds what the API served since the last move, in Redis memory: every minute
# keeps it small (one entry per page, ~1 KB for 50 cards) and the table a minute behind.
impressions_every_minute = dg.ScheduleDefinition(
    name="impressions_every_minute",
    job=impressions_job,
    cron_schedule="* * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
)

# After the nightly retrain and its publish: the last seven days of impressions, every day
# (the window is rolling, so on-demand runs from the UI compute the same thing up to now).
daily_online_metrics = dg.ScheduleDefinition(
    name="daily_online_metrics",
    job=online_metrics_job,
    cron_schedule="0 5 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
)
