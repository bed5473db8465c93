"""The main job: every asset once, in dependency order, then a short report.

Assets are materialized one definition at a time (each its own Dagster run in the local
instance), which gives the progress bar real steps and the report a time per step, and leaves
the run history for `dagster dev` to show. Each run is a run of the named job that holds the
asset in production (`ingest_metro` per metro, `retrain_and_evaluate`, `publish_feed`,
`notify_users`, ...), restricted to that asset and tagged as the job's scheduled runs are
(`godo/pipeline`, which the run queue limits key on, and `dagster/partition`): the UI's Jobs
pages and timeline show the demo as they will show production, not as ad-hoc selections.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from core.settings import Settings
from godo.dagster_home import prepare_dagster_home
from pipelines.definitions import build_resources
from pipelines.resources import (
    EventbriteResource,
    ExpoResource,
    GoogleMapsResource,
    PostgresResource,
    RedisResource,
    ResendResource,
    SyntheticCityResource,
)
from sources.expo.fake import FakeExpo
from sources.fakes import DEFAULT_EVENTBRITE_TOKEN, DEFAULT_MAPS_KEY, FakeUpstream
from sources.resend.fake import FakeResend

# The report and the progress bar say what happened (a failing step's error included);
# Dagster's own log, warnings and errors too, stays in the UI.
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


class StepFailed(RuntimeError):
    """A step of the demo failed; the message is Dagster's, the full log is in the UI."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(f"{step}: {message}")
        self.step = step
        self.message = message


@dataclass(frozen=True)
class StepReport:
    name: str
    seconds: float
    rows: dict[str, int]
    checks: dict[str, bool]
    # sent / failed / skipped, for the notification and email assets
    outcomes: dict[str, int] = field(default_factory=dict)


def dagster_instance(settings: Settings, database_url: str) -> dg.DagsterInstance:
    """The persistent local instance: the repo's dagster.yaml over Postgres, under data_dir,
    so `godo dagster` later shows the demo's runs."""
    return dg.DagsterInstance.from_config(str(prepare_dagster_home(settings, database_url)))


# Every demo run says where it came from, so the UI can tell it from scheduled runs.
LAUNCHED_BY_TAG = "godo/launched_by"
DEMO_TAGS = {LAUNCHED_BY_TAG: "demo"}


@dataclass(frozen=True)
class Step:
    """One Dagster run of the demo: an asset definition, for one partition if partitioned,
    as a run of `job` (the first of the code location's jobs that holds it)."""

    keys: list[dg.AssetKey]
    job: str
    partition: str | None = None

    @property
    def name(self) -> str:
        names = ", ".join(k.to_user_string() for k in self.keys)
        return f"{names} ({self.partition})" if self.partition else names


# An asset guarded by a blocking check runs in the same Dagster run as the checked asset, as
# in the nightly retrain: a blocking check only holds back what runs after it in its own run.
OUTREACH_GROUPS = frozenset({"notifications", "email"})
GUARDED_BY = {dg.AssetKey("champion_model"): dg.AssetKey("ranking_evaluation")}


class NoJobForAsset(LookupError):
    """An asset is in none of the code location's jobs: the demo would run it ad hoc."""


def job_for(defs: dg.Definitions, keys: list[dg.AssetKey]) -> str:
    """The first job (in the order `defs` lists them) that materializes every one of `keys`.

    Order decides where an asset is in several jobs: the app data is in the retrain and in the
    refresh, and the demo runs it as the nightly retrain does.
    """
    for job in defs.jobs or []:
        selected = set(defs.resolve_job_def(job.name).asset_layer.executable_asset_keys)
        if set(keys) <= selected:
            return job.name
    names = ", ".join(k.to_user_string() for k in keys)
    raise NoJobForAsset(f"{names}: in no job of the code location (pipelines/jobs.py)")


def plan(defs: dg.Definitions) -> list[Step]:
    """Asset definitions (a multi-asset runs whole) in dependency order, per partition."""
    graph = defs.resolve_asset_graph()
    steps: list[Step] = []
    done: set[dg.AssetKey] = set()
    for key in graph.toposorted_asset_keys:
        node = graph.get(key)
        if key in done or not node.is_materializable:
            continue
        keys = sorted(node.assets_def.keys, key=lambda k: k.to_user_string())
        keys += [guarded for guarded, guard in GUARDED_BY.items() if guard in keys]
        done.update(keys)
        job = job_for(defs, keys)
        partitions = node.partitions_def
        if partitions is None:
            steps.append(Step(keys, job))
        else:
            steps.extend(Step(keys, job, p) for p in partitions.get_partition_keys())
    # Notifications read what everything else wrote (RSVPs, the published feed) without
    # depending on those assets in the graph: in production their schedules run them later.
    last = [s for s in steps if graph.get(s.keys[0]).group_name in OUTREACH_GROUPS]
    return [s for s in steps if s not in last] + last


def definitions_to_run(
    defs: dg.Definitions,
) -> list[dg.AssetsDefinition | dg.AssetChecksDefinition]:
    """Assets plus the standalone checks: a check left out of `materialize` never runs."""
    assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)]
    checks = [c for c in defs.asset_checks or [] if isinstance(c, dg.AssetChecksDefinition)]
    return [*assets, *checks]


def bind_resources(defs: dg.Definitions, resources: dict[str, Any]) -> dg.Definitions:
    """`defs` (assets, checks, jobs, loggers) with `resources` instead of the deployment's."""
    return dg.Definitions(
        assets=defs.assets,
        asset_checks=defs.asset_checks,
        jobs=defs.jobs,
        resources=resources,
        loggers=defs.loggers,
    )


def execute(
    defs: dg.Definitions, step: Step, instance: dg.DagsterInstance
) -> dg.ExecuteInProcessResult:
    """One step as a run of its job, in this process: the job's name and tags (`godo/pipeline`,
    `dagster/partition` for a metro), restricted to the step's assets and their checks."""
    return defs.resolve_job_def(step.job).execute_in_process(
        run_config=QUIET,
        instance=instance,
        partition_key=step.partition,
        asset_selection=step.keys,
        tags=DEMO_TAGS,
        raise_on_error=False,
    )


def run_assets(
    defs: dg.Definitions,
    resources: dict[str, Any],
    instance: dg.DagsterInstance,
    on_start: Callable[[str], None] | None = None,
    on_done: Callable[[StepReport], None] | None = None,
) -> list[StepReport]:
    """Materialize every asset once (each partition once); raise on the first failing step."""
    bound = bind_resources(defs, resources)
    reports: list[StepReport] = []
    for step in plan(defs):
        if on_start is not None:
            on_start(step.name)
        started = time.perf_counter()
        result = execute(bound, step, instance)
        checks = _check_results(result)
        if not result.success:
            raise StepFailed(step.name, _failure_message(result))
        report = StepReport(
            step.name,
            time.perf_counter() - started,
            _row_counts(result),
            checks,
            _outcomes(result),
        )
        reports.append(report)
        if on_done is not None:
            on_done(report)
    return reports


def _check_results(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {
        f"{e.asset_key.to_user_string()}:{e.check_name}": e.passed
        for e in (
            event.asset_check_evaluation_data
            for event in result.all_events
            if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
        )
    }


def _failure_message(result: dg.ExecuteInProcessResult) -> str:
    for event in result.get_step_failure_events():
        error = event.step_failure_data.error
        if error is not None:
            cause = error.cause or error
            return cause.message.strip()
    return f"run {result.run_id} failed"


OUTCOMES = ("sent", "failed", "skipped")


def _outcomes(result: dg.ExecuteInProcessResult) -> dict[str, int]:
    counts: dict[str, int] = {}
    for event in result.get_asset_materialization_events():
        metadata = event.materialization.metadata
        for outcome in OUTCOMES:
            if outcome in metadata:
                value = int(metadata[outcome].value)  # type: ignore[arg-type]
                counts[outcome] = counts.get(outcome, 0) + value
    return counts


def _row_counts(result: dg.ExecuteInProcessResult) -> dict[str, int]:
    counts: dict[str, int] = {}
    for event in result.get_asset_materialization_events():
        materialization = event.materialization
        rows = materialization.metadata.get("dagster/row_count")
        if rows is not None:
            counts[materialization.asset_key.to_user_string()] = int(rows.value)  # type: ignore[arg-type]
    return counts


@dataclass
class OutreachFakes:
    """Local fakes of Expo's push API and Resend, so the demo's notifications and emails go
    somewhere real over HTTP and can be counted, without reaching either service."""

    expo: FakeExpo = field(default_factory=FakeExpo)
    resend: FakeResend = field(default_factory=FakeResend)

    def start(self) -> OutreachFakes:
        self.expo.start()
        self.resend.start()
        return self

    def stop(self) -> None:
        self.expo.stop()
        self.resend.stop()

    def __enter__(self) -> OutreachFakes:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def resources(self, settings: Settings) -> dict[str, Any]:
        return {
            "expo": ExpoResource(base_url=self.expo.base_url),
            "resend": ResendResource(
                base_url=self.resend.base_url,
                api_key=self.resend.api_key,
                sender=settings.email_sender,
                public_api_url=settings.public_api_url,
                link_secret=settings.jwt_secret.get_secret_value(),
            ),
        }

    def api_environment(self) -> dict[str, str]:
        """What `godo serve` after the demo needs for invitations to reach the fake."""
        return {"GODO_RESEND_BASE_URL": self.resend.base_url, "RESEND_API_KEY": self.resend.api_key}


def demo_resources(
    settings: Settings,
    *,
    database_url: str,
    redis_url: str,
    city: SyntheticCityResource,
    upstream: FakeUpstream,
    outreach: OutreachFakes,
) -> dict[str, Any]:
    """The deployment's resources, pointed at local servers and the fake upstream APIs.

    The real Eventbrite and Maps clients run unchanged; only their base URLs, credentials and
    the followed organizations (the synthetic city's) differ from production.
    """
    followed = upstream.world.organizations_by_metro()
    return build_resources(settings) | {
        "postgres": PostgresResource(database_url=database_url),
        "redis": RedisResource(
            url=redis_url,
            prefix=settings.redis_prefix,
            feed_ttl_seconds=settings.feed_run_ttl_seconds,
        ),
        "eventbrite": EventbriteResource(
            token=DEFAULT_EVENTBRITE_TOKEN,
            base_url=upstream.eventbrite_base_url,
            followed_organizations=followed,
            calls_per_hour=1_000_000,
            time_filter="all",
            status_checks_per_run=100_000,
            # Each demo regenerates the city for the current hour and starts from an empty
            # warehouse (`godo demo`), so an earlier run's high-water mark does not apply.
            full_refresh=True,
        ),
        "maps": GoogleMapsResource(
            api_key=DEFAULT_MAPS_KEY,
            geocode_base_url=upstream.geocode_base_url,
            places_base_url=upstream.places_base_url,
        ),
        "city": city,
        **outreach.resources(settings),
    }
