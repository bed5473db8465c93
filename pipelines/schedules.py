"""Schedules: hourly ingest per metro, nightly retrain (which then publishes, see sensors)."""

import dagster as dg

from pipelines.jobs import ingest_job, retrain_job
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
