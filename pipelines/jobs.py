"""The jobs the schedules and sensors start, each tagged with the pipeline it belongs to.

The `godo/pipeline` tag is what dagster.yaml's run queue limits key on: several metros ingest
at once, but only one retrain and one publish-or-refresh run at a time, since those rewrite
whole tables and the published feed.
"""

import dagster as dg

PIPELINE_TAG = "godo/pipeline"

INGEST_ASSETS = ("eventbrite_raw_pages", "events", "venues", "event_quarantine", "geocoded_venues")
PARTITIONED_INGEST = dg.AssetSelection.assets(*INGEST_ASSETS)
PUBLISH = dg.AssetSelection.groups("recommendations")
# Dagster activates a job's loggers only when its run config names them: this makes every
# run of these jobs (scheduled, sensed or launched in the UI) log through the code location's
# JSON console logger (`pipelines.logs`) instead of the default coloured one.
RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}

ingest_job = dg.define_asset_job(
    "ingest_metro",
    selection=PARTITIONED_INGEST,
    description="Fetch one metro's events and venues from Eventbrite and Google Maps.",
    tags={PIPELINE_TAG: "ingest"},
    config=RUN_CONFIG,
)
retrain_job = dg.define_asset_job(
    "retrain_and_evaluate",
    selection=dg.AssetSelection.assets("app_catalogue", "synthetic_oracle")
    | dg.AssetSelection.groups("app_data", "features", "models", "evaluation"),
    description="Extract app data, train before the holdout cutoff, evaluate, gate, promote.",
    tags={PIPELINE_TAG: "retrain"},
    config=RUN_CONFIG,
)
publish_job = dg.define_asset_job(
    "publish_feed",
    selection=PUBLISH,
    description="Rank fresh candidates with the champion model and publish every user's feed.",
    tags={PIPELINE_TAG: "publish"},
    config=RUN_CONFIG,
)
refresh_job = dg.define_asset_job(
    "refresh_and_publish",
    selection=dg.AssetSelection.groups("app_data")
    | dg.AssetSelection.assets("interactions", "feed_candidates")
    | PUBLISH,
    description="Re-extract swipes and RSVPs, rebuild the features the feed uses and publish "
    "again with the current champion (no training).",
    tags={PIPELINE_TAG: "publish"},
    config=RUN_CONFIG,
)
# Development only: the synthetic city's people act (users, friends, swipes, RSVPs, devices),
# where the real app would. In production the city is off and these assets write nothing; the
# job exists so the demo and a developer's UI run them as a named job, not an ad-hoc selection.
simulate_job = dg.define_asset_job(
    "simulate_city",
    selection=dg.AssetSelection.assets("synthetic_activity", "synthetic_devices"),
    description="Development only: the synthetic city's users, friendships, swipes, RSVPs and "
    "devices, written to Postgres as the app would (no-op where the city is off).",
    tags={PIPELINE_TAG: "synthetic"},
    config=RUN_CONFIG,
)
outreach_job = dg.define_asset_job(
    "notify_users",
    selection=dg.AssetSelection.assets(
        "event_reminders",
        "friend_going_notifications",
        "weekly_digest_push",
        "weekly_digest_email",
    ),
    description="Reminders, friends going, weekly digests by push and email: each sent once "
    "(the notification log), quiet hours deferred.",
    tags={PIPELINE_TAG: "outreach"},
    config=RUN_CONFIG,
)
receipts_job = dg.define_asset_job(
    "check_push_receipts",
    selection=dg.AssetSelection.assets("push_receipts"),
    description="Expo's receipts for sent pushes; devices Expo no longer knows are removed.",
    tags={PIPELINE_TAG: "outreach"},
    config=RUN_CONFIG,
)
impressions_job = dg.define_asset_job(
    "move_impressions",
    selection=dg.AssetSelection.assets("impression_log"),
    description="Move the feed impressions the API appended to Redis into Postgres' daily "
    "partitions; create the next days' partitions, drop those past the retention.",
    tags={PIPELINE_TAG: "impressions"},
    config=RUN_CONFIG,
)

online_metrics_job = dg.define_asset_job(
    "compute_online_metrics",
    selection=dg.AssetSelection.assets("online_metrics"),
    description="Per arm and model version: rates with intervals, arm against control, the "
    "sample-ratio check; to MLflow and the Prometheus textfile.",
    tags={PIPELINE_TAG: "monitoring"},
    config=RUN_CONFIG,
)
