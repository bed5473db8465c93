"""The code location loads, and its wiring holds (after project_fully_featured's test_defs)."""

from __future__ import annotations

import dagster as dg

from godo.demo import plan
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
        "user_top_n",
        "published_feed",
    } <= keys
    for key in graph.get_all_asset_keys():
        assert graph.get(key).description, f"{key.to_user_string()} has no description"
    assert defs.resolve_job_def("retrain_and_publish") is not None
    assert defs.resolve_schedule_def("retrain_and_publish_schedule") is not None
    assert defs.resolve_schedule_def("hourly_ingest") is not None
    assert defs.resolve_job_def("ingest_metro").partitions_def == metro_partitions
    checks = {k.name for k in defs.resolve_asset_graph().asset_check_keys}
    assert {
        "every_event_has_a_start",
        "no_duplicate_event_ids",
        "quarantine_share_under_limit",
        "coordinates_inside_metro",
    } <= checks


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
            assert max(positions[parent]) < min(seen), f"{key} runs before its upstream {parent}"
    assert positions[dg.AssetKey("published_feed")] == [len(steps) - 1]
    assert {s.partition for s in steps if dg.AssetKey("events") in s.keys} == set(
        metro_partitions.get_partition_keys()
    )
