"""`godo run JOB`: launch one of the code location's named jobs now, in this process.

The run lands in the local Dagster instance (DAGSTER_HOME under the data folder: the repo's
dagster.yaml over Postgres, `godo.dagster_home`) under the job's own name and with the job's
tags (`godo/pipeline`, what the run queue keys on), so `godo dagster` lists it with the
scheduled runs of that job. Its steps run one after another in this process, with the
resources the deployment builds (`pipelines.definitions.build_resources`) from this
invocation's settings; its log goes to stderr as the job's logger writes it (JSON lines).
Dagster is imported inside the command, so registering it costs `godo token` nothing.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from godo.console import new_table, show

if TYPE_CHECKING:
    import dagster as dg

console = Console()
errors = Console(stderr=True)


def run(
    job: Annotated[
        str | None,
        typer.Argument(help="The job to launch (`godo run --list` names them).", metavar="JOB"),
    ] = None,
    list_jobs: Annotated[bool, typer.Option("--list", help="List the jobs and exit.")] = False,
    partition: Annotated[
        str | None,
        typer.Option(help="The partition to run, for a partitioned job (ingest_metro: a metro)."),
    ] = None,
) -> None:
    """Launch a named Dagster job in this process against the local instance, with its tags."""
    from pipelines.definitions import defs

    if list_jobs:
        show(console, jobs_table(defs))
        return
    job_def = _job(defs, job)
    _check_partition(job_def, partition)

    from godo.cli import connect
    from godo.demo import _failure_message, bind_resources, dagster_instance
    from pipelines.definitions import build_resources

    settings, urls = connect()
    # Rebound, not passed to `execute_in_process`: `defs` bound its resources to every asset
    # when it was imported, and an asset's own resources win over the run's.
    bound = bind_resources(defs, build_resources(settings))
    started = time.perf_counter()
    with dagster_instance(settings, urls.database_url) as instance:
        result = bound.resolve_job_def(job_def.name).execute_in_process(
            instance=instance, partition_key=partition, raise_on_error=False
        )
    seconds = time.perf_counter() - started
    tags = ", ".join(f"{k}={v}" for k, v in sorted(job_def.run_tags.items()))
    what = f"Run {result.run_id} of {job_def.name}" + (f" ({partition})" if partition else "")
    show(console, _outcome_table(result))
    if result.success:
        console.print(
            f"{what} succeeded in {seconds:.1f} s; tags {tags}.", highlight=False, soft_wrap=True
        )
        # A check that warned did not fail the run but says something happened, e.g. the
        # champion gate keeping the current model: "champion kept: ...".
        for warning in check_warnings(result):
            console.print(warning, highlight=False, soft_wrap=True)
    else:
        errors.print(
            f"[red bold]{what} failed[/] after {seconds:.1f} s: {_failure_message(result)}",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1)


def job_names(defs: dg.Definitions) -> list[str]:
    return [job.name for job in defs.jobs or ()]


def check_warnings(result: dg.ExecuteInProcessResult) -> list[str]:
    """One line per check that did not pass at WARN: `check on asset warned: description`."""
    from dagster import AssetCheckSeverity

    return [
        f"{e.check_name} on {e.asset_key.to_user_string()} warned: {e.description or 'no detail'}"
        for e in result.get_asset_check_evaluations()
        if not e.passed and e.severity == AssetCheckSeverity.WARN
    ]


def _verdict(evaluation: dg.AssetCheckEvaluation) -> str:
    from dagster import AssetCheckSeverity

    if evaluation.passed:
        return "passed"
    if evaluation.severity == AssetCheckSeverity.WARN:
        return "[yellow]warned[/]"
    return "[red]failed[/]"


def _outcome_table(result: dg.ExecuteInProcessResult) -> Table:
    """Each asset the run materialized, with its row count and its checks' verdicts."""
    checks: dict[str, list[str]] = {}
    for evaluation in result.get_asset_check_evaluations():
        verdict = _verdict(evaluation)
        key = evaluation.asset_key.to_user_string()
        checks.setdefault(key, []).append(f"{evaluation.check_name} {verdict}")
    table = new_table(("asset", "rows", "checks"), numeric={"rows"})
    for event in result.get_asset_materialization_events():
        materialization = event.materialization
        key = materialization.asset_key.to_user_string()
        partition = materialization.partition
        rows = materialization.metadata.get("dagster/row_count")
        table.add_row(
            f"{key} ({partition})" if partition else key,
            "" if rows is None else f"{int(rows.value):,}",  # type: ignore[arg-type]
            "\n".join(checks.pop(key, [])),
        )
    for key, verdicts in checks.items():  # checked assets the run did not materialize
        table.add_row(key, "", "\n".join(verdicts))
    return table


def jobs_table(defs: dg.Definitions) -> Table:
    """Every named job: its pipeline tag, partitions and what it does."""
    from pipelines.jobs import PIPELINE_TAG

    table = new_table(("job", "pipeline", "partitions", "description"), title="Jobs")
    for name in job_names(defs):
        job_def = defs.resolve_job_def(name)
        partitions = job_def.partitions_def
        table.add_row(
            name,
            job_def.run_tags.get(PIPELINE_TAG, ""),
            "" if partitions is None else ", ".join(partitions.get_partition_keys()),
            job_def.description or "",
        )
    return table


def _job(defs: dg.Definitions, name: str | None) -> dg.JobDefinition:
    names = job_names(defs)
    if name not in names:
        given = "name a job" if name is None else f"no job named {name!r}"
        raise typer.BadParameter(f"{given}; the jobs are: {', '.join(names)}", param_hint="JOB")
    return defs.resolve_job_def(name)


def _check_partition(job_def: dg.JobDefinition, partition: str | None) -> None:
    """A partitioned job needs one of its partitions; any other job takes none."""
    partitions = job_def.partitions_def
    if partitions is None:
        if partition is not None:
            raise typer.BadParameter(
                f"{job_def.name} is not partitioned", param_hint="'--partition'"
            )
        return
    keys = partitions.get_partition_keys()
    if partition not in keys:
        given = "missing" if partition is None else f"{partition!r} is not one"
        raise typer.BadParameter(
            f"{given}; {job_def.name} runs one of: {', '.join(keys)}", param_hint="'--partition'"
        )
