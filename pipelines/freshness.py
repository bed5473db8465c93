"""Freshness checks: the ingest and the published feed are overdue when their schedule slips.

Why: a schedule that is stopped, a daemon that is down or a run that fails every hour leaves
no failed run to alert on for the missing ones; only the age of the last materialization
shows it. Dagster's last-update freshness checks compare that age with a bound derived from
each schedule (`pipelines.schedules`), and `freshness_checks_sensor` evaluates them between
runs. They also run in every run that materializes their assets (the jobs select the checks
of their assets), which brings an overdue check back to passing.

Overdue is a WARN: the data is stale, nothing is broken yet. The ingest assets are
partitioned by metro and the check reads the newest materialization of any metro, so it
catches a stopped ingest, not a single metro falling behind (that one fails its own runs).

Dagster 1.12 marks these checks as superseded by the new `FreshnessPolicy`, which is still a
preview: it must be switched on per instance, its API may change, and it reports asset
health rather than a check result that a run, a test or the CLI can read. The checks are the
stable choice until it settles; the warning is silenced here, where the choice is made.
"""

import warnings
from datetime import timedelta

import dagster as dg

from pipelines.jobs import INGEST_ASSETS

# `hourly_ingest` runs at :00. One missed run and a slow next one stay fresh; two missed
# runs in a row (no new data for 2.5 hours) do not.
INGEST_LOWER_BOUND = timedelta(hours=2, minutes=30)
# `nightly_retrain` at 03:00 publishes the feed when it ends (`publish_after_retrain`); 26
# hours leave two hours for the retrain and the publish before a missed night is flagged.
FEED_LOWER_BOUND = timedelta(hours=26)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.SupersessionWarning)
    ingest_freshness = dg.build_last_update_freshness_checks(
        assets=list(INGEST_ASSETS),
        lower_bound_delta=INGEST_LOWER_BOUND,
    )
    feed_freshness = dg.build_last_update_freshness_checks(
        assets=["published_feed"], lower_bound_delta=FEED_LOWER_BOUND
    )
    # Every 10 minutes is plenty for bounds of hours; it runs a check only when it could have
    # turned overdue since its last result (Dagster keeps `fresh_until` on the result).
    freshness_checks_sensor = dg.build_sensor_for_freshness_checks(
        freshness_checks=[*ingest_freshness, *feed_freshness], minimum_interval_seconds=600
    )

freshness_checks = [*ingest_freshness, *feed_freshness]
