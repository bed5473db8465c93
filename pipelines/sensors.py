"""Sensors: publish after every retrain, refresh when swipes pile up, report failed runs."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg
import sqlalchemy as sa

from pipelines.alerts import AlertsResource, describe_failure
from pipelines.jobs import publish_job, refresh_job, retrain_job
from pipelines.resources import PostgresResource


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[retrain_job],
    request_job=publish_job,
    default_status=dg.DefaultSensorStatus.STOPPED,
)
def publish_after_retrain(context: dg.RunStatusSensorContext) -> dg.RunRequest:
    """After every successful retrain, promoted or not, the champion publishes at once.

        A rejected challenger is a successful run (the gate warns), so the current champion
        republishes with tonight's features and candidates and the feed never goes stale for want
        of a better model. A retrain that failed for real publishes nothing here: its features may
        be half rebuilt; it alerts, and `refresh_and_publish` (its sensor, or by hand) republishes
    with the champion meanwhile."""
    return dg.RunRequest(run_key=f"publish-after:{context.dagster_run.run_id}")


@dg.run_failure_sensor(default_status=dg.DefaultSensorStatus.STOPPED)
def report_run_failures(context: dg.RunFailureSensorContext, alerts: AlertsResource) -> None:
    """Every failed run of the code location is logged, and sent to Sentry when configured."""
    alerts.report(describe_failure(context))


# Swipes stored since the newest published run, and since the last refresh this sensor asked
# for (its cursor), so a refresh that is still running is not requested again.
_NEW_SWIPES = sa.text(
    """
SELECT count(*) AS new_swipes, max(created_at) AS newest
FROM swipes
WHERE created_at > GREATEST(
    COALESCE(
        (SELECT max(published_at) FROM recommendation_runs WHERE status = 'published'),
        '-infinity'::timestamptz
    ),
    CAST(:since AS timestamptz)
)
"""
)


def refresh_sensor(min_new_swipes: int) -> dg.SensorDefinition:
    """A sensor requesting `refresh_and_publish` once `min_new_swipes` swipes arrived since the
    feed was last published. Why: a retrain is nightly, but users swipe all day; fresh
    interactions change popularity, trending and what each user has already seen, and those
    need no new model, only new features and a new publish."""

    @dg.sensor(
        name="refresh_after_new_swipes",
        job=refresh_job,
        minimum_interval_seconds=300,
        default_status=dg.DefaultSensorStatus.STOPPED,
    )
    def refresh_after_new_swipes(
        context: dg.SensorEvaluationContext, postgres: PostgresResource
    ) -> dg.SensorResult | dg.SkipReason:
        since = context.cursor or datetime.min.replace(tzinfo=UTC).isoformat()
        with postgres.engine().connect() as conn:
            row = conn.execute(_NEW_SWIPES, {"since": since}).one()
        if row.new_swipes < min_new_swipes:
            return dg.SkipReason(
                f"{row.new_swipes} new swipes since the last publish; refreshing at "
                f"{min_new_swipes}"
            )
        newest = row.newest.astimezone(UTC).isoformat()
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    run_key=f"refresh:{newest}",
                    tags={"godo/new_swipes": str(row.new_swipes)},
                )
            ],
            cursor=newest,
        )

    return refresh_after_new_swipes
