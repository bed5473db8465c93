"""The main job: every asset once, in dependency order, then a short report.

Assets are materialized one definition at a time (each its own Dagster run in the local
instance), which gives the progress bar real steps and the report a time per step, and leaves
the run history for `dagster dev` to show.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg

from godo.settings import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent
# The report and the progress bar say what happened; Dagster's own log stays in the UI.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


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


def dagster_instance(settings: Settings) -> dg.DagsterInstance:
    """The persistent local instance under data_dir, configured by the repo's dagster.yaml."""
    home = settings.data_path / "dagster"
    home.mkdir(parents=True, exist_ok=True)
    source = REPO_ROOT / "dagster.yaml"
    if source.exists():
        shutil.copyfile(source, home / "dagster.yaml")
    return dg.DagsterInstance.from_config(str(home))


def plan(defs: dg.Definitions) -> list[list[dg.AssetKey]]:
    """Asset keys grouped by definition (a multi-asset runs whole), in dependency order."""
    graph = defs.resolve_asset_graph()
    steps: list[list[dg.AssetKey]] = []
    done: set[dg.AssetKey] = set()
    for key in graph.toposorted_asset_keys:
        if key in done or not graph.get(key).is_materializable:
            continue
        keys = sorted(graph.get(key).assets_def.keys, key=lambda k: k.to_user_string())
        done.update(keys)
        steps.append(keys)
    return steps


def run_assets(
    defs: dg.Definitions,
    resources: dict[str, Any],
    instance: dg.DagsterInstance,
    on_start: Callable[[str], None] | None = None,
    on_done: Callable[[StepReport], None] | None = None,
) -> list[StepReport]:
    """Materialize every asset once; raise on the first failing step."""
    assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)]
    reports: list[StepReport] = []
    for keys in plan(defs):
        name = ", ".join(k.to_user_string() for k in keys)
        if on_start is not None:
            on_start(name)
        started = time.perf_counter()
        result = dg.materialize(
            assets,
            selection=keys,
            resources=resources,
            instance=instance,
            run_config=QUIET,
            raise_on_error=False,
        )
        if not result.success:
            raise StepFailed(name, _failure_message(result))
        report = StepReport(name, time.perf_counter() - started, _row_counts(result))
        reports.append(report)
        if on_done is not None:
            on_done(report)
    return reports


def _failure_message(result: dg.ExecuteInProcessResult) -> str:
    for event in result.get_step_failure_events():
        error = event.step_failure_data.error
        if error is not None:
            cause = error.cause or error
            return cause.message.strip()
    return f"run {result.run_id} failed"


def _row_counts(result: dg.ExecuteInProcessResult) -> dict[str, int]:
    counts: dict[str, int] = {}
    for event in result.get_asset_materialization_events():
        materialization = event.materialization
        rows = materialization.metadata.get("dagster/row_count")
        if rows is not None:
            counts[materialization.asset_key.to_user_string()] = int(rows.value)  # type: ignore[arg-type]
    return counts
