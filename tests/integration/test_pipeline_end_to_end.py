"""A tiny synthetic city through every asset, against real PostgreSQL and Redis, then the API."""

from __future__ import annotations

import runpy
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import polars as pl
import pytest
import redis
import sqlalchemy as sa
from fastapi.testclient import TestClient

from godo.demo import StepReport, _only_gated, definitions_to_run, demo_resources, run_assets
from godo.services import ServiceUrls
from godo.settings import Settings
from godo.tokens import issue_token
from pipelines.definitions import defs
from pipelines.resources import MLflowResource, SyntheticCityResource
from pipelines.training import fit_ranker
from serving.app import create_app
from sources.fakes import FakeUpstream, FaultPlan
from store.keys import RedisKeys
from store.schema import metadata

NOTEBOOKS = sorted((Path(__file__).parents[2] / "notebooks").glob("*.py"))


@dataclass(frozen=True)
class TinyCity:
    steps: list[StepReport]
    warehouse: Path
    keys: RedisKeys
    resources: dict[str, Any]


@pytest.fixture(scope="module")
def tiny_city(
    tmp_path_factory: pytest.TempPathFactory,
    session_engine: sa.Engine,
    database_url: str,
    service_urls: ServiceUrls,
    redis_client: redis.Redis,
) -> Iterator[TinyCity]:
    """One pipeline run over a tiny city, shared by this module's tests."""
    folder = tmp_path_factory.mktemp("tiny-city")
    keys = RedisKeys(prefix=f"godo-test-{uuid.uuid4().hex[:10]}")
    with session_engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {', '.join(t.name for t in metadata.sorted_tables)}"))
    settings = Settings(data_dir=folder, redis_prefix=keys.prefix)
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    city = SyntheticCityResource(
        metros=["san-francisco", "oakland"],
        n_venues=20,
        n_events=150,
        n_users=120,
        now=now.isoformat(),
    )
    faults = FaultPlan(venues_without_coordinates_share=0.3)
    with FakeUpstream(city.world(), faults=faults) as upstream:
        resources = demo_resources(
            settings,
            database_url=database_url,
            redis_url=service_urls.redis_url,
            city=city,
            upstream=upstream,
        )
        steps = run_assets(defs, resources, dg.DagsterInstance.ephemeral())
    yield TinyCity(steps, settings.warehouse_path, keys, resources)
    stale = list(redis_client.scan_iter(match=keys.namespace_pattern(), count=1000))
    if stale:
        redis_client.delete(*stale)


def test_every_asset_runs_and_the_api_serves_the_published_feed(
    tiny_city: TinyCity,
    session_engine: sa.Engine,
    database_url: str,
    service_urls: ServiceUrls,
    redis_client: redis.Redis,
) -> None:
    engine, redis_keys = session_engine, tiny_city.keys
    ran = {name.split(" (")[0] for step in tiny_city.steps for name in step.name.split(", ")}
    assert ran == {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    rows: dict[str, int] = {}
    for step in tiny_city.steps:
        for asset, count in step.rows.items():
            rows[asset] = rows.get(asset, 0) + count  # partitions add up
    assert rows["events"] == 150 and rows["app_users"] == 120 and rows["app_swipes"] > 0
    checks = {name: ok for step in tiny_city.steps for name, ok in step.checks.items()}
    assert checks and all(checks.values()), checks

    with engine.connect() as conn:
        run_id = conn.execute(
            sa.text("SELECT id FROM recommendation_runs WHERE status = 'published'")
        ).scalar_one()
        user_id = conn.execute(
            sa.text(
                "SELECT user_id FROM recommendations WHERE run_id = :r "
                "GROUP BY user_id ORDER BY count(*) DESC, user_id LIMIT 1"
            ),
            {"r": run_id},
        ).scalar_one()
        stored = [
            r[0]
            for r in conn.execute(
                sa.text(
                    "SELECT event_id FROM recommendations WHERE run_id = :r AND user_id = :u "
                    "ORDER BY rank"
                ),
                {"r": run_id, "u": user_id},
            )
        ]
        swiped = {
            r[0]
            for r in conn.execute(
                sa.text("SELECT event_id FROM swipes WHERE user_id = :u"), {"u": user_id}
            )
        }
        events = {
            r.id: r for r in conn.execute(sa.text("SELECT id, start_utc, is_active FROM events"))
        }
    assert redis_client.get(redis_keys.current_run()) == run_id.encode()

    settings = Settings(
        database_url=database_url, redis_url=service_urls.redis_url, redis_prefix=redis_keys.prefix
    )
    token = issue_token(settings, user_id)
    with TestClient(create_app(settings)) as client:
        response = client.get(
            "/v1/feed", params={"limit": 200}, headers={"Authorization": f"Bearer {token}"}
        )
    assert response.status_code == 200
    body = response.json()
    served = [item["event_id"] for item in body["items"]]
    assert body["run_id"] == run_id and body["source"] == "redis" and not body["cold_start"]
    assert served == stored and len(served) > 0
    assert [item["rank"] for item in body["items"]] == list(range(1, len(served) + 1))
    now = datetime.now(UTC)
    for event_id in served:
        assert event_id not in swiped
        assert events[event_id].is_active
        assert events[event_id].start_utc > now


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_on_the_pipeline_output(
    notebook: Path, tiny_city: TinyCity, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Notebooks are executed against a warehouse the pipeline really built."""
    monkeypatch.setenv("GODO_WAREHOUSE", str(tiny_city.warehouse))
    namespace = runpy.run_path(str(notebook), run_name="__main__")
    assert namespace["counts"]["app_swipes"] == sum(
        step.rows.get("app_swipes", 0) for step in tiny_city.steps
    )


def _evaluate_and_gate(tiny_city: TinyCity) -> dg.ExecuteInProcessResult:
    """One run of the evaluation, its blocking check and the promotion, as the demo runs it."""
    return dg.materialize(
        definitions_to_run(defs),
        selection=["ranking_evaluation", "champion_model"],
        resources=tiny_city.resources,
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def _register_a_worse_champion(tiny_city: TinyCity, mlflow: MLflowResource) -> int:
    """A ranker trained to put untouched candidates first, promoted by hand."""
    with duckdb.connect(str(tiny_city.warehouse), read_only=True) as con:
        examples = con.sql("SELECT * FROM godo.ranker_examples").pl()
    inverted = examples.with_columns(
        label=pl.when(pl.col("label") > 0).then(0).otherwise(1).cast(pl.Int8)
    ).with_columns(pl.col("created_at").dt.convert_time_zone("UTC"))
    ranker = fit_ranker(inverted)
    registry = mlflow.registry()
    champion = registry.champion()
    assert champion is not None
    bundle = registry.download_bundle(champion.version, tiny_city.warehouse.parent / "worse")
    ranker.save(bundle / "ranker.txt")
    with registry.start_run("worse-on-purpose") as run:
        run.log_bundle(bundle)
        version = run.register(ranker.booster)
    registry.promote(version, reason="test: a deliberately worse champion")
    return version


def test_champion_moves_only_when_the_gate_passes(tiny_city: TinyCity) -> None:
    mlflow: MLflowResource = tiny_city.resources["mlflow"]
    registry = mlflow.registry()
    first = registry.champion()
    assert first is not None  # the pipeline run promoted its first model

    # Same data, same code: the new version ties, which is not beating the champion.
    tie = _evaluate_and_gate(tiny_city)
    assert not tie.success and _only_gated(tie)
    table = tie.output_for_node("ranking_evaluation")
    versions = dict(zip(table["model"].to_list(), table["version"].to_list(), strict=True))
    assert versions["champion"] == first.version and versions["final_feed"] > first.version
    assert registry.champion().version == first.version  # type: ignore[union-attr]

    worse = _register_a_worse_champion(tiny_city, mlflow)
    assert registry.champion().version == worse  # type: ignore[union-attr]
    better = _evaluate_and_gate(tiny_city)
    assert better.success
    table = better.output_for_node("ranking_evaluation")
    ndcg = dict(zip(table["model"].to_list(), table["ndcg@10"].to_list(), strict=True))
    assert ndcg["final_feed"] > ndcg["champion"]
    new = table.filter(pl.col("model") == "final_feed")["version"].item()
    assert registry.champion().version == new  # type: ignore[union-attr]


def test_the_training_run_is_tracked_in_mlflow(tiny_city: TinyCity) -> None:
    """Params, every stage's metrics, the plots, the feature list and the model bundle."""
    registry = tiny_city.resources["mlflow"].registry()
    first = registry.version(1)
    run = registry.client.get_run(first.run_id)
    assert {"als.factors", "ranker.learning_rate", "holdout.cutoff"} <= set(run.data.params)
    for stage in ("random", "popularity", "als", "ranker", "final_feed", "oracle"):
        assert f"{stage}.ndcg_at_10" in run.data.metrics, stage
    assert run.data.metrics["final_feed.ndcg_at_10"] > run.data.metrics["random.ndcg_at_10"]
    assert 0 < run.data.metrics["candidate_recall"] <= 1
    plots = {a.path for a in registry.client.list_artifacts(first.run_id, "plots")}
    assert {"plots/ndcg_by_model.png", "plots/feature_importance.png"} <= plots
    top = {a.path for a in registry.client.list_artifacts(first.run_id)}
    assert {"features.json", "bundle"} <= top
    bundle = registry.download_bundle(1, tiny_city.warehouse.parent / "check-bundle")
    assert {"als_model.npz", "ranker.txt", "ranker.txt.json"} <= {p.name for p in bundle.iterdir()}
