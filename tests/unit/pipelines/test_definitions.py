"""The code location loads, and its wiring holds (after project_fully_featured's test_defs)."""

from __future__ import annotations

import dagster as dg
import pytest

from godo.demo import OUTREACH_GROUPS, NoJobForAsset, job_for, plan
from pipelines.definitions import defs
from pipelines.partitions import metro_partitions


def test_definitions_load_with_every_asset_documented() -> None:
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {
        "events",
        "app_swipes",
        "interactions",
        "als_model",
        "popularity_by_metro",
        "training_window",
        "ranker_examples",
        "ranker_model",
        "synthetic_oracle",
        "ranking_evaluation",
        "champion_model",
        "ranked_feed",
        "published_arms",
        "published_feed",
    } <= keys
    for key in graph.get_all_asset_keys():
        assert graph.get(key).description, f"{key.to_user_string()} has no description"
    assert defs.resolve_job_def("retrain_and_evaluate") is not None
    assert defs.resolve_job_def("publish_feed") is not None
    assert defs.resolve_schedule_def("nightly_retrain").job_name == "retrain_and_evaluate"
    assert defs.resolve_sensor_def("publish_after_retrain").job_name == "publish_feed"
    assert defs.resolve_schedule_def("hourly_ingest") is not None
    assert defs.resolve_schedule_def("daily_online_metrics").job_name == "compute_online_metrics"
    assert defs.resolve_job_def("ingest_metro").partitions_def == metro_partitions
    checks = {k.name for k in defs.resolve_asset_graph().asset_check_keys}
    assert {
        "every_event_has_a_start",
        "no_duplicate_event_ids",
        "quarantine_share_under_limit",
        "coordinates_inside_metro",
        "beats_champion",
        "online_metrics_sample_ratio",
    } <= checks
    gate = next(
        spec
        for spec in defs.resolve_asset_graph().asset_check_keys
        if spec.name == "beats_champion"
    )
    assert gate.asset_key == dg.AssetKey("ranking_evaluation")


def test_the_definitions_are_loadable_as_the_webserver_loads_them() -> None:
    """What `dagster dev` does with the module: every check, sensor and job resolves."""
    dg.Definitions.validate_loadable(defs)
    assert defs.get_repository_def().has_sensor_def("freshness_checks_sensor")


def test_every_asset_check_says_what_it_checks() -> None:
    """The UI shows a check's description beside its verdict: none may be blank."""
    graph = defs.resolve_asset_graph()
    assert graph.asset_check_keys
    for key in graph.asset_check_keys:
        description = graph.get_check_spec(key).description
        assert description and description.strip(), f"{key.to_user_string()} has no description"


def test_the_ingest_and_the_published_feed_have_freshness_checks() -> None:
    """Bounds follow the schedules: hourly ingest, nightly publish; one sensor runs them."""
    graph = defs.resolve_asset_graph()
    fresh = {
        key.asset_key.to_user_string(): graph.get_check_spec(key)
        for key in graph.asset_check_keys
        if key.name == "freshness_check"
    }
    assert set(fresh) == {
        "eventbrite_raw_pages",
        "events",
        "venues",
        "event_quarantine",
        "geocoded_venues",
        "published_feed",
    }
    bound = {
        asset: spec.metadata["dagster/freshness_params"].value["lower_bound_delta_seconds"]
        for asset, spec in fresh.items()
    }
    assert bound["published_feed"] == 26 * 3600
    assert bound["events"] == bound["eventbrite_raw_pages"] == 2.5 * 3600
    sensor = defs.resolve_sensor_def("freshness_checks_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
    # The jobs that materialize those assets run their freshness checks too, which brings an
    # overdue check back to passing.
    ingest = defs.resolve_job_def("ingest_metro").asset_layer.asset_graph.asset_check_keys
    assert dg.AssetCheckKey(dg.AssetKey("events"), "freshness_check") in ingest


def test_the_gate_runs_with_the_promotion_in_one_step() -> None:
    step = next(s for s in plan(defs) if dg.AssetKey("ranking_evaluation") in s.keys)
    assert dg.AssetKey("champion_model") in step.keys
    retrain = defs.resolve_job_def("retrain_and_evaluate")
    publish = defs.resolve_job_def("publish_feed")
    assert "champion_model" in {
        k.to_user_string() for k in retrain.asset_layer.executable_asset_keys
    }
    assert {k.to_user_string() for k in publish.asset_layer.executable_asset_keys} == {
        "ranked_feed",
        "published_arms",
        "published_feed",
    }


def test_plan_runs_each_asset_once_per_partition_after_its_upstreams() -> None:
    steps = plan(defs)
    graph = defs.resolve_asset_graph()
    positions: dict[dg.AssetKey, list[int]] = {}
    for i, step in enumerate(steps):
        for key in step.keys:
            positions.setdefault(key, []).append(i)
    assert set(positions) == set(graph.get_all_asset_keys())
    for key, seen in positions.items():
        partitions = graph.get(key).partitions_def
        assert len(seen) == (len(partitions.get_partition_keys()) if partitions else 1)
        for parent in graph.get(key).parent_keys:
            # Equal means one run holds both (a guarded asset with its guard), in order.
            assert max(positions[parent]) <= min(seen), f"{key} runs before its upstream {parent}"
    # Notifications and email run last (they read the RSVPs and the feed), after the publish.
    outreach = [
        i for i, s in enumerate(steps) if graph.get(s.keys[0]).group_name in OUTREACH_GROUPS
    ]
    assert outreach and outreach == list(range(len(steps) - len(outreach), len(steps)))
    assert positions[dg.AssetKey("published_feed")] == [len(steps) - len(outreach) - 1]
    assert {s.partition for s in steps if dg.AssetKey("events") in s.keys} == set(
        metro_partitions.get_partition_keys()
    )


def test_production_wiring_of_jobs_sensors_and_executor() -> None:
    jobs = {
        "ingest_metro": "ingest",
        "simulate_city": "synthetic",
        "retrain_and_evaluate": "retrain",
        "publish_feed": "publish",
        "refresh_and_publish": "publish",
        "notify_users": "outreach",
        "check_push_receipts": "outreach",
        "move_impressions": "impressions",
        "compute_online_metrics": "monitoring",
    }
    for name, pipeline in jobs.items():
        job = defs.resolve_job_def(name)
        # The run queue limits in dagster.yaml key on this tag.
        assert job.tags["godo/pipeline"] == pipeline
        # Every run logs JSON lines through the code location's logger.
        if job.partitioned_config is not None:
            run_config = job.get_run_config_for_partition_key(
                metro_partitions.get_partition_keys()[0]
            )
        else:
            assert job.config_mapping is not None
            run_config = job.config_mapping.resolve_from_unvalidated_config({})
        assert run_config["loggers"] == {"console": {"config": {"log_level": "INFO"}}}
        assert job.executor_def.name == "multiprocess"
    refresh = defs.resolve_job_def("refresh_and_publish")
    selected = {k.to_user_string() for k in refresh.asset_layer.selected_asset_keys}
    assert {"app_swipes", "interactions", "ranked_feed", "published_feed"} <= selected
    assert not {"als_model", "ranker_model", "champion_model"} & selected  # no training
    assert defs.resolve_schedule_def("impressions_every_minute").job_name == "move_impressions"
    sensors = {s.name for s in defs.sensors or []}
    assert {"refresh_after_new_swipes", "report_run_failures"} <= sensors
    assert defs.resolve_sensor_def("refresh_after_new_swipes").job_name == "refresh_and_publish"


def test_every_demo_step_is_a_run_of_a_named_job_that_holds_it() -> None:
    """No demo run is ad hoc (`__ephemeral_asset_job__`): each is a subset of a real job, the
    ingest one per metro, with the queue's tag; the app data runs as the retrain runs it."""
    graph = defs.resolve_asset_graph()
    for step in plan(defs):
        job = defs.resolve_job_def(step.job)
        assert set(step.keys) <= set(job.asset_layer.executable_asset_keys), step.name
        assert job.tags["godo/pipeline"]
        assert (step.partition is None) == (job.partitions_def is None), step.name
    jobs = {key.to_user_string(): step.job for step in plan(defs) for key in step.keys}
    assert jobs["eventbrite_raw_pages"] == "ingest_metro"
    assert jobs["synthetic_activity"] == jobs["synthetic_devices"] == "simulate_city"
    assert jobs["app_swipes"] == jobs["ranking_evaluation"] == "retrain_and_evaluate"
    assert jobs["published_feed"] == "publish_feed"
    assert jobs["event_reminders"] == "notify_users"
    assert jobs["impression_log"] == "move_impressions"
    assert jobs["online_metrics"] == "compute_online_metrics"
    assert set(jobs) == {k.to_user_string() for k in graph.get_all_asset_keys()}


def test_an_asset_in_no_job_is_refused_rather_than_run_ad_hoc() -> None:
    @dg.asset
    def member() -> None:
        """In a job."""

    @dg.asset
    def orphan() -> None:
        """In no job."""

    jobs = [dg.define_asset_job("only_member", selection=[member])]
    with_orphan = dg.Definitions(assets=[member, orphan], jobs=jobs)
    assert job_for(with_orphan, [dg.AssetKey("member")]) == "only_member"
    with pytest.raises(NoJobForAsset, match="orphan: in no job"):
        job_for(with_orphan, [dg.AssetKey("orphan")])
