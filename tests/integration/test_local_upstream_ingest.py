"""`ingest_metro` from the code location `godo dagster` loads, on the local fake, no config.

The definitions are imported in a fresh interpreter with exactly the environment `godo
dagster` gives `dagster dev` when no API keys are set (`godo.local_upstream`), and the job is
launched with no run config, as the launchpad's defaults would: the partition must land.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from godo.local_upstream import upstream_environment
from godo.services import ServiceUrls
from pipelines.warehouse import SCHEMA
from sources.fakes import FakeUpstream, FaultPlan
from sources.fakes.server import GEOCODE, ORGANIZATION_EVENTS
from sources.synthetic.world import CityConfig, build_world

# Runs the job the way the UI's "Materialize" / launchpad does: the job's defaults only.
LAUNCH = """
import json, sys
import dagster as dg
from pipelines.definitions import defs

job = defs.resolve_job_def("ingest_metro")
with dg.DagsterInstance.ephemeral() as instance:
    result = job.execute_in_process(partition_key=sys.argv[1], instance=instance)
    run = instance.get_run_by_id(result.run_id)
rows = {
    e.materialization.asset_key.to_user_string(): int(e.materialization.metadata[
        "dagster/row_count"].value)
    for e in result.get_asset_materialization_events()
    if "dagster/row_count" in e.materialization.metadata
}
print(json.dumps({"success": result.success, "rows": rows, "job": run.job_name,
                  "tags": dict(run.tags)}))
"""


def test_ingest_metro_runs_against_the_local_fake_with_no_run_config(
    tmp_path: Path, database_url: str, service_urls: ServiceUrls
) -> None:
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    world = build_world(CityConfig.tiny(now=now))
    metro = world.config.metros[0]
    keys = ("EVENTBRITE_TOKEN", "GOOGLE_MAPS_API_KEY")
    faults = FaultPlan(venues_without_coordinates_share=0.5)
    with FakeUpstream(world, faults=faults) as fake:
        env = {k: v for k, v in os.environ.items() if k not in keys and k != "DAGSTER_HOME"}
        env |= upstream_environment(fake) | {
            "DATABASE_URL": database_url,
            "REDIS_URL": service_urls.redis_url,
            "GODO_DATA_DIR": str(tmp_path),
            "GODO_ENVIRONMENT": "development",
            "GODO_METROS": json.dumps(list(world.config.metros)),
        }
        launched = subprocess.run(
            [sys.executable, "-c", LAUNCH, metro],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            cwd=Path(__file__).parents[2],
        )
        assert launched.returncode == 0, launched.stderr[-4000:]
        listings, geocodes = fake.count(ORGANIZATION_EVENTS), fake.count(GEOCODE)
    outcome = json.loads(launched.stdout.strip().splitlines()[-1])
    assert outcome["success"], launched.stderr[-4000:]
    assert outcome["job"] == "ingest_metro"
    assert outcome["tags"]["dagster/partition"] == metro
    assert outcome["tags"]["godo/pipeline"] == "ingest"
    # Every organization of the metro was paged, with the fake's token (else 401s, no rows),
    # and venues without coordinates were geocoded through the fake's Maps.
    assert listings >= len(world.organizations_by_metro()[metro])
    assert geocodes > 0
    in_metro = world.events.filter(world.events["metro"] == metro).height
    rows = outcome["rows"]
    # `all`: past events too, which the synthetic swipes point at.
    assert rows["events"] + rows.get("event_quarantine", 0) == in_metro
    assert rows["events"] > 0
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as conn:
        stored = conn.sql(f"SELECT count(*) FROM {SCHEMA}.events WHERE metro = ?", params=[metro])
        assert stored.fetchone() == (rows["events"],)
