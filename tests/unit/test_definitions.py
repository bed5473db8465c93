"""The code location loads, and its wiring holds (after project_fully_featured's test_defs)."""

from __future__ import annotations

import dagster as dg

from godo.demo import plan
from pipelines.definitions import defs


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


def test_plan_runs_each_asset_once_after_its_upstreams() -> None:
    steps = plan(defs)
    order = {key: i for i, keys in enumerate(steps) for key in keys}
    graph = defs.resolve_asset_graph()
    assert len(order) == len(graph.get_all_asset_keys())
    for key, position in order.items():
        for parent in graph.get(key).parent_keys:
            assert order[parent] < position, f"{key} runs before its upstream {parent}"
    assert order[dg.AssetKey("published_feed")] == len(steps) - 1
