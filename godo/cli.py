"""`godo`: run the demo, the embedded services, the API, and mint development tokens."""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import Progress

from core.settings import Settings, get_settings
from godo import services
from godo.backup_cli import backup_app
from godo.console import new_table, progress_columns, show, step_progress
from godo.experiment_cli import experiment_app
from godo.run_cli import run

if TYPE_CHECKING:  # the demo module imports Dagster, which `godo token` should not pay for
    from rich.table import Table

    from godo.demo import OutreachFakes, StepReport
    from godo.demo_experiment import ExperimentDemo
    from store.feed import Feed

app = typer.Typer(
    help="Godo: event recommendations, end to end.",
    no_args_is_help=True,
    # Rich takes minutes to render a Dagster error chain; plain tracebacks are instant.
    pretty_exceptions_enable=False,
)
services_app = typer.Typer(
    help="Start, stop or inspect the embedded PostgreSQL and Redis.", no_args_is_help=True
)
app.add_typer(services_app, name="services")
app.add_typer(backup_app, name="backup")
app.add_typer(experiment_app, name="experiment")
console = Console()
errors = Console(stderr=True)

Host = Annotated[str | None, typer.Option(help="Interface to serve on (default from settings).")]
Port = Annotated[int | None, typer.Option(help="Port to serve on (default from settings).")]


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"godo {metadata.version('godo')}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Godo: event recommendations, end to end."""


def connect() -> tuple[Settings, services.ServiceUrls]:
    """Resolve (or start) the servers, migrate, and export the URLs for everything after."""
    from store import migrate

    settings = get_settings()
    with console.status("Starting PostgreSQL and Redis..."):
        urls = services.resolve(settings.data_path, settings.database_url, settings.redis_url)
        migrate.upgrade(urls.database_url)
    os.environ["DATABASE_URL"] = urls.database_url
    os.environ["REDIS_URL"] = urls.redis_url
    get_settings.cache_clear()
    where = {True: "embedded", False: "configured"}
    console.print(
        f"[green]PostgreSQL[/] ({where[urls.embedded_postgres]}) and [green]Redis[/] "
        f"({where[urls.embedded_redis]}) ready; schema at the newest migration."
    )
    return get_settings(), urls


@app.command()
def demo(
    serve: Annotated[bool, typer.Option("--serve/--no-serve", help="Serve the API after.")] = True,
    users: Annotated[int, typer.Option(help="Users in the synthetic city.")] = 4000,
    events: Annotated[int, typer.Option(help="Events in the synthetic city.")] = 4000,
    venues: Annotated[int, typer.Option(help="Venues in the synthetic city.")] = 300,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic city.")] = 7,
    ab_users: Annotated[
        int, typer.Option(help="Users who open the app once in the A/B experiment (0: skip it).")
    ] = 400,
    host: Host = None,
    port: Port = None,
) -> None:
    """Generate a synthetic city, run every Dagster asset once, report, then serve the API."""
    from godo.demo import (
        OutreachFakes,
        StepFailed,
        dagster_instance,
        demo_resources,
        plan,
        run_assets,
    )
    from pipelines.definitions import defs
    from pipelines.resources import SyntheticCityResource
    from sources.fakes import FakeUpstream, FaultPlan

    _quiet_mlflow()
    settings, urls = connect()
    _fresh_warehouse(settings)
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    city = SyntheticCityResource(
        seed=seed,
        n_users=users,
        n_events=events,
        n_venues=venues,
        metros=settings.metros,
        now=now.isoformat(),
    )
    # A share of venues come without coordinates, so the geocoder has work to do.
    faults = FaultPlan(venues_without_coordinates_share=0.15)
    upstream = FakeUpstream(city.world(), faults=faults).start()
    console.print(f"Fake Eventbrite and Google Maps APIs on [bold]{upstream.base_url}[/]")
    outreach = OutreachFakes().start()
    console.print(
        f"Fake Expo push on [bold]{outreach.expo.base_url}[/], "
        f"fake Resend on [bold]{outreach.resend.base_url}[/]"
    )
    resources = demo_resources(
        settings,
        database_url=urls.database_url,
        redis_url=urls.redis_url,
        city=city,
        upstream=upstream,
        outreach=outreach,
    )
    with Progress(*progress_columns(), console=console) as progress:
        task = progress.add_task("pipeline", total=len(plan(defs)))

        def started(name: str) -> None:
            progress.update(task, description=name)

        def finished(_: StepReport) -> None:
            progress.advance(task)

        try:
            reports = run_assets(
                defs, resources, dagster_instance(settings, urls.database_url), started, finished
            )
        except StepFailed as failure:
            progress.stop()
            console.print(f"[red bold]Step {failure.step} failed:[/] {failure.message}")
            raise typer.Exit(1) from None
        finally:
            upstream.stop()
    _print_steps(reports)
    _print_evaluation(settings, reports)
    _print_sample_feed(settings, urls)
    _print_outreach(reports, outreach)
    if ab_users > 0:
        from godo.demo_experiment import run_experiment

        with console.status("A/B experiment: simulated users open the app through the API..."):
            try:
                result = run_experiment(
                    defs=defs,
                    resources=resources,
                    instance=dagster_instance(settings, urls.database_url),
                    settings=settings,
                    max_users=ab_users,
                )
            except StepFailed as failure:
                console.print(f"[red bold]Step {failure.step} failed:[/] {failure.message}")
                raise typer.Exit(1) from None
        _print_experiment(result)
    show(console, where_to_look(settings, host or settings.api_host, port or settings.api_port))
    if serve:
        # Invitations sent from the API reach the fake Resend, still running.
        os.environ.update(outreach.api_environment())
        get_settings.cache_clear()
        _serve(get_settings(), host, port)
    outreach.stop()


def where_to_look(settings: Settings, host: str, port: int) -> Table:
    """The demo's last table: where each part of what it just did can be seen, and how to
    open it (the README's first screen says the same)."""
    table = new_table(("what", "open", "where"), title="Where to look next")
    api = f"http://{host}:{port}"
    table.add_row(
        "API docs (Swagger UI, ReDoc; served offline)",
        "`python3 dev.py serve` (running now unless --no-serve)",
        f"{api}/docs, {api}/redoc",
    )
    table.add_row(
        "Dagster: the demo's runs under their jobs, checks, the timeline",
        "`python3 dev.py dagster`",
        "http://127.0.0.1:3000 (Jobs, Runs, Overview)",
    )
    table.add_row(
        f"MLflow: experiment `{settings.mlflow_experiment}`, model "
        f"`{settings.mlflow_model_name}@champion`",
        "`python3 dev.py mlflow`",
        settings.mlflow_ui_url,
    )
    table.add_row(
        "Admin pages: experiments, a user's feed and impressions",
        "`.venv/bin/godo token 1 --admin`, paste it at the login",
        f"{api}/admin/login",
    )
    table.add_row(
        "Notebooks over the warehouse and MLflow", "`python3 dev.py notebooks`", "notebooks/"
    )
    return table


def _print_outreach(reports: Sequence[StepReport], outreach: OutreachFakes) -> None:
    """What the notification and email assets reported, and what the fakes received."""
    outcomes = ("sent", "failed", "skipped")
    table = new_table(
        ("step", *outcomes),
        title="Notifications and email (local fakes of Expo and Resend)",
        numeric=outcomes,
    )
    for report in reports:
        counts = report.outcomes
        if counts:
            table.add_row(report.name, *(str(counts.get(k, 0)) for k in outcomes))
    show(console, table)
    console.print(
        f"Fake Expo received {len(outreach.expo.sent)} push messages; "
        f"fake Resend received {len(outreach.resend.messages)} emails."
    )


def _print_experiment(result: ExperimentDemo) -> None:
    """The online table per arm with intervals, each arm against control, and who won."""
    name, tables, requests = result.experiment.name, result.tables, result.requests
    seconds = ", ".join(f"{phase} {value:.1f} s" for phase, value in result.seconds.items())
    arms = [row["arm"] for row in tables.by_arm.iter_rows(named=True)]
    serves = {arm.name: str(arm.serves) for arm in result.experiment.arms}
    labels = [f"{arm} ({serves.get(arm, '?')})" for arm in arms]
    table = new_table(
        ("", *labels),
        title=f"A/B experiment {name}: {result.users:,} simulated users opened the app once "
        f"through the API ({requests['feed']:,} feed pages, {requests['swipes']:,} swipe "
        f"batches, {requests['attendance']:,} RSVPs, with impression ids; {seconds}). Per "
        "impression, 95% intervals clustered by user",
        numeric=labels,
    )
    rows = {row["arm"]: row for row in tables.by_arm.iter_rows(named=True)}
    table.add_row("users", *(f"{rows[a]['users']:,}" for a in arms))
    table.add_row("impressions", *(f"{rows[a]['impressions']:,}" for a in arms))
    for metric, label in _ONLINE_ROWS:
        table.add_row(label, *(_interval(rows[a], metric) for a in arms))
    table.add_row(
        "simulated value / session",
        *(
            "-"
            if (v := result.simulated.get(a)) is None
            else f"{v.value:.3f} ({v.low:.3f} to {v.high:.3f})"
            for a in arms
        ),
    )
    show(console, table)
    figures = ("difference", "95% interval", "p")
    tests = new_table(
        ("arm", "metric", *figures),
        title=f"{name}: each arm minus control (95% interval, two-sided p-value)",
        numeric=figures,
    )
    metric_labels = dict(_ONLINE_ROWS)
    for row in tables.tests.iter_rows(named=True):
        interval = "-" if row["low"] is None else f"{row['low']:+.4f} to {row['high']:+.4f}"
        tests.add_row(
            f"{row['arm']} - {row['control']}",
            metric_labels.get(row["metric"], row["metric"]),
            "-" if row["diff"] is None else f"{row['diff']:+.4f}",
            interval,
            "-" if row["p_value"] is None else f"{row['p_value']:.2g}",
        )
    show(console, tests)
    srm = tables.sample_ratio
    if srm.height:
        verdict = "mismatch" if srm["mismatch"][0] else "users per arm follow the weights"
        console.print(f"Sample-ratio check: {verdict} (chi-square p = {srm['p_value'][0]:.3g}).")
    winner = result.expected_winner
    measured = result.measured()
    won = max(measured, key=lambda arm: measured[arm]) == winner
    console.print(
        f"The arm worth more to the simulated users is [bold]{winner}[/] (simulated value "
        f"{result.simulated[winner].value:.3f}); online it "
        + ("[green]wins[/]" if won else "[red]does not win[/]")
        + " on value per impression ("
        + ", ".join(f"{a} {v:.4f}" for a, v in measured.items())
        + "). The experiment is stopped: everyone is back on the champion."
    )


# Rows of the demo's A/B table: online metric, label.
_ONLINE_ROWS = (
    ("like_rate", "like rate"),
    ("superlike_rate", "superlike rate"),
    ("going_rate", "going rate"),
    ("value_per_impression", "value / impression"),
    ("swipes_per_session", "swipes / session"),
)


def _interval(row: dict[str, object], metric: str) -> str:
    """`value (low to high)` of one metric of an online table row."""
    value, low, high = row[metric], row[f"{metric}_low"], row[f"{metric}_high"]
    if not isinstance(value, float):
        return "-"
    digits = 2 if metric == "swipes_per_session" else 4
    if not isinstance(low, float) or not isinstance(high, float):
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} ({low:.{digits}f} to {high:.{digits}f})"


def _fresh_warehouse(settings: Settings) -> None:
    """Start the demo from an empty warehouse.

    The synthetic city is regenerated for the current hour, so the raw Eventbrite log and the
    caches of an earlier run describe another city (the same event id can sit in another
    metro). Postgres, MLflow and the Dagster history are kept: the champion of the last run
    is what the new model has to beat.
    """
    for path in (settings.warehouse_path, settings.warehouse_path.with_suffix(".duckdb.wal")):
        path.unlink(missing_ok=True)


def _quiet_mlflow() -> None:
    """The report says what happened; MLflow's info lines and download bars would bury it."""
    import logging

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    # The A/B experiment's simulated users make thousands of in-process requests.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def _print_steps(reports: Sequence[StepReport]) -> None:
    table = new_table(
        ("step", "seconds", "rows per asset", "checks"),
        title="Pipeline run: one Dagster run per step",
        numeric={"seconds"},
    )
    for report in reports:
        rows = ", ".join(f"{k}={v:,}" for k, v in report.rows.items()) or "-"
        failed = [name for name, passed in report.checks.items() if not passed]
        checks = f"{len(report.checks) - len(failed)}/{len(report.checks)} passed"
        checks = (checks + "".join(f"\n[red]{n}[/]" for n in failed)) if report.checks else ""
        table.add_row(report.name, f"{report.seconds:.2f}", rows, checks)
    total = sum(r.seconds for r in reports)
    table.add_row("[bold]total[/]", f"[bold]{total:.2f}[/]", "")
    show(console, table)


def _print_evaluation(settings: Settings, reports: Sequence[StepReport]) -> None:
    """The simulated online table (what gates), the logged holdout below it, and the verdict."""
    import duckdb

    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        frame = con.sql("SELECT * FROM godo.ranking_evaluation").pl()
    if "online_value" in frame.columns and frame["online_value"].is_not_null().any():
        online = frame.filter(frame["online_value"].is_not_null()).sort(
            "online_value", descending=True
        )
        columns = ("value", "low", "high", "likes", "superlikes", "going", "ndcg@10")
        table = new_table(
            ("model", *columns),
            title="Simulated online: one session per holdout user in the simulator "
            "(value = expected graded relevance per session, 95% interval over users)",
            numeric=columns,
        )
        for row in online.iter_rows(named=True):
            cells = (
                "-" if row[f"online_{c}"] is None else f"{row[f'online_{c}']:.3f}" for c in columns
            )
            table.add_row(row["model"], *cells)
        show(console, table)
    metrics = ("ndcg@10", "recall@20", "map@10", "mrr", "coverage", "novelty", "ild@10")
    table = new_table(
        ("model", "version", *metrics),
        title="Logged holdout: what users did after the cutoff with what the old app showed "
        "(rewards predicting exposure; reported, does not gate)",
        numeric=("version", *metrics),
    )
    for row in (
        frame.filter(frame["ndcg@10"].is_not_null())
        .sort("ndcg@10", descending=True)
        .iter_rows(named=True)
    ):
        version = "" if row["version"] is None else str(row["version"])
        cells = ("-" if row[m] is None else f"{row[m]:.4f}" for m in metrics)
        table.add_row(row["model"], version, *cells)
    show(console, table)
    gate = {k: v for r in reports for k, v in r.checks.items() if k.endswith(":beats_champion")}
    if gate:
        verdict = (
            "the new version is the champion"
            if all(gate.values())
            else "the new version did not beat the champion, which stays and publishes"
        )
        gain = frame.filter(frame["model"] == "final_feed").select("gain", "gain_low", "gain_high")
        detail = ""
        if gain.height and gain["gain_low"][0] is not None:
            g, low, high = gain.row(0)
            detail = f" (gain in value {g:+.3f}, 95% interval {low:+.3f} to {high:+.3f})"
        console.print(f"Champion gate: [bold]{verdict}[/]{detail}.")


def _print_sample_feed(settings: Settings, urls: services.ServiceUrls) -> None:
    import redis

    from store.app_data import most_active_user
    from store.db import make_engine
    from store.feed import read_feed
    from store.keys import RedisKeys

    engine = make_engine(urls.database_url)
    client = redis.Redis.from_url(urls.redis_url)
    try:
        with engine.connect() as conn:
            user_id = most_active_user(conn)
        if user_id is None:
            console.print("[yellow]No users: nothing to show.[/]")
            return
        feed = read_feed(
            engine=engine,
            redis_client=client,
            keys=RedisKeys(prefix=settings.redis_prefix),
            user_id=user_id,
            limit=10,
        )
    finally:
        engine.dispose()
        client.close()
    show(console, feed_table(feed))


def feed_table(feed: Feed) -> Table:
    """A user's feed: event names and reasons wrap at any width, never cut short."""
    table = new_table(
        ("rank", "event", "starts (UTC)", "why"),
        title=f"Feed of user {feed.user_id} (run {feed.run_id}, from {feed.source})",
        numeric={"rank"},
        unbroken={"starts (UTC)"},
    )
    for item in feed.items:
        table.add_row(
            str(item.rank),
            item.card.name,
            item.card.start_utc.strftime("%a %d %b %H:%M"),
            item.reason,
        )
    return table


# The packages `--reload` watches: the wheel's (pyproject), not `.venv` or the data folder.
SOURCE_PACKAGES = (
    "core",
    "godo",
    "sources",
    "features",
    "models",
    "recommender",
    "store",
    "textfile_metrics",
    "pipelines",
    "serving",
)


def _serve(
    settings: Settings,
    host: str | None,
    port: int | None,
    *,
    reload: bool = False,
    workers: int = 1,
) -> None:
    """uvicorn on the app factory: an import string, which reload and workers both need
    (each worker, and each restart, imports and builds the app itself)."""
    import uvicorn

    from godo.dagster_home import REPO_ROOT

    host, port = host or settings.api_host, port or settings.api_port
    how = " with reload" if reload else f" in {workers} worker processes" if workers > 1 else ""
    console.print(
        f"Serving the API on [bold]http://{host}:{port}[/]{how} "
        f"(docs at /docs; `godo token USER_ID` for a bearer token). Ctrl+C stops."
    )
    uvicorn.run(
        "serving.app:create_app",
        factory=True,
        host=host,
        port=port,
        log_level="info",
        reload=reload,
        reload_dirs=[str(REPO_ROOT / package) for package in SOURCE_PACKAGES] if reload else None,
        workers=workers,
    )


@app.command()
def serve(
    host: Host = None,
    port: Port = None,
    reload: Annotated[
        bool, typer.Option("--reload", help="Restart when a source file changes (development).")
    ] = False,
    workers: Annotated[
        int, typer.Option(min=1, help="Worker processes (each its own pools and Redis keeper).")
    ] = 1,
) -> None:
    """Serve the API against the configured or embedded servers."""
    if reload and workers > 1:
        raise typer.BadParameter(
            "--reload runs a single process: drop --reload or --workers", param_hint="--workers"
        )
    settings, _ = connect()
    _serve(settings, host, port, reload=reload, workers=workers)


@app.command()
def dagster(
    host: Annotated[str, typer.Option(help="Interface for the Dagster UI.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port for the Dagster UI.")] = 3000,
) -> None:
    """Run `dagster dev` (UI and daemon) on the production instance config over Postgres.

    Same dagster.yaml as production: runs, event logs and schedules in a database of the
    embedded (or configured) Postgres server, the queued run coordinator and run retries, so
    what a developer sees and triggers here behaves as it will when deployed. Without
    EVENTBRITE_TOKEN and GOOGLE_MAPS_API_KEY, in development, the ingest goes to a local fake
    of the APIs serving the synthetic city (`godo.local_upstream`); elsewhere that refuses.
    """
    import sys

    from godo.dagster_home import REPO_ROOT, prepare_dagster_home
    from godo.local_upstream import UpstreamNotConfigured, wants_local_upstream

    try:  # before starting anything: a refusal should cost nothing
        use_fake = wants_local_upstream(get_settings(), os.environ)
    except UpstreamNotConfigured as refused:
        console.print(f"[red bold]Not starting Dagster:[/] {refused}")
        raise typer.Exit(1) from None
    settings, urls = connect()
    home = prepare_dagster_home(settings, urls.database_url)
    console.print(f"Dagster home [bold]{home}[/]; UI on http://{host}:{port}")
    workspace = str(REPO_ROOT / "workspace.yaml")
    command = [sys.executable, "-m", "dagster", "dev", "-w", workspace, "-h", host, "-p", str(port)]
    os.chdir(REPO_ROOT)
    if not use_fake:
        os.execv(sys.executable, command)  # the environment (DAGSTER_HOME, URLs) is inherited
    raise typer.Exit(_dagster_dev_on_local_upstream(settings, command))


def _dagster_dev_on_local_upstream(settings: Settings, command: list[str]) -> int:
    """`command` as a child process, while the fake serves from a thread of this one."""
    from godo.local_upstream import local_upstream, upstream_environment

    console.print("No EVENTBRITE_TOKEN / GOOGLE_MAPS_API_KEY: building the synthetic city...")
    with local_upstream(settings) as upstream:
        console.print(
            f"The ingest reads a local fake of Eventbrite and Google Maps on "
            f"[bold]{upstream.base_url}[/] (the synthetic city, seed "
            f"{upstream.world.config.seed}): launch `ingest_metro` with no config."
        )
        return run_until_exit(command, os.environ | upstream_environment(upstream))


def run_until_exit(command: list[str], env: dict[str, str]) -> int:
    """Run `command` to its end; SIGINT and SIGTERM sent to this process are passed on to it.

    The child has a session of its own, so Ctrl+C reaches it once, through here, whether it
    comes from the terminal or from a process manager signalling only this process: it shuts
    down in order and the fake it reads stops after it, not before.
    """
    import signal
    import subprocess

    child = subprocess.Popen(command, env=env, start_new_session=True)

    def forward(signum: int, _frame: object) -> None:
        child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def mlflow_ui_command(settings: Settings, host: str, port: int) -> list[str]:
    """`mlflow ui` on the store the pipeline writes to (GODO_MLFLOW_TRACKING_URI, else the
    SQLite file under GODO_DATA_DIR), with the same artifact root new experiments get."""
    import sys

    uri = settings.resolved_mlflow_uri
    if uri.startswith(("http://", "https://")):
        raise typer.BadParameter(
            f"GODO_MLFLOW_TRACKING_URI is a tracking server ({uri}): open its own UI",
            param_hint="GODO_MLFLOW_TRACKING_URI",
        )
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri]
    artifacts = settings.resolved_mlflow_artifact_root
    if artifacts:
        command += ["--default-artifact-root", artifacts]
    return [*command, "--host", host, "--port", str(port)]


@app.command("mlflow")
def mlflow_ui(
    host: Annotated[str, typer.Option(help="Interface for the MLflow UI.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port for the MLflow UI.")] = 5000,
) -> None:
    """Open the MLflow UI on the configured tracking store (default: data_dir/mlflow.db)."""
    settings = get_settings()
    command = mlflow_ui_command(settings, host, port)
    console.print(
        f"MLflow store [bold]{settings.resolved_mlflow_uri}[/]; UI on http://{host}:{port}"
    )
    os.execv(command[0], command)


@app.command()
def token(
    user_id: Annotated[int, typer.Argument(help="The user the token speaks for (JWT `sub`).")],
    ttl: Annotated[int | None, typer.Option(help="Seconds until it expires.")] = None,
    admin: Annotated[
        bool,
        typer.Option(
            "--admin",
            help="Add the admin role claim (GODO_ADMIN_ROLE_CLAIM): opens the /admin pages.",
        ),
    ] = False,
) -> None:
    """Print a development JWT for calling the API by hand."""
    from core.tokens import issue_token, role_claims

    settings = get_settings()
    extra = role_claims(settings) if admin else None
    typer.echo(issue_token(settings, user_id, ttl_seconds=ttl, extra_claims=extra))


JSON_COLUMNS = ("model", "ndcg@10", "precision@10", "recall@10", "map@10", "coverage")
TABLE_COLUMNS = (*JSON_COLUMNS[:5], "mrr", "coverage", "novelty")


class Protocol(StrEnum):
    """How `godo evaluate` splits the file (`models.evaluation.protocols`)."""

    time = "time"
    random = "random"
    leave_one_out = "leave-one-out"


@app.command()
def evaluate(
    interactions: Annotated[
        Path, typer.Option(help="CSV, TSV or Parquet of interactions.", exists=True, dir_okay=False)
    ],
    items: Annotated[
        Path | None,
        typer.Option(
            help="Optional CSV, TSV or Parquet of items: the item column (same name as "
            "--item-col) and any of `category` (several separated by |), `title`, `text`.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    protocol: Annotated[
        Protocol,
        typer.Option(
            help="time: each user's last share is the test; random: a random share per user; "
            "leave-one-out: each user's last interaction."
        ),
    ] = Protocol.time,
    test_share: Annotated[float, typer.Option(help="Share held out per user.")] = 0.2,
    seed: Annotated[int, typer.Option(help="Seed of the random split, tuning and ranker.")] = 0,
    rerank: Annotated[
        bool, typer.Option(help="Diversify the pipeline's lists by primary item category.")
    ] = False,
    tune: Annotated[
        bool, typer.Option(help="Tune ALS and EASE on a validation split of the train side.")
    ] = True,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print only the table, as a JSON list of rows.")
    ] = False,
    user_col: Annotated[str, typer.Option(help="Column holding the user.")] = "user",
    item_col: Annotated[str, typer.Option(help="Column holding the item.")] = "item",
    time_col: Annotated[str, typer.Option(help="Column holding the timestamp.")] = "timestamp",
    weight_col: Annotated[str | None, typer.Option(help="Optional weight column.")] = None,
) -> None:
    """Score the baselines and the project's two-stage pipeline on any interaction file.

    Rows: random, popularity, als, ease, item_knn and pipeline (candidates from every
    generator, LambdaRank on generic features, optional re-rank), full ranking over the
    train items. With --json, stdout is only the JSON table; everything else goes to stderr.
    """
    import json

    from models.baselines import compare, comparison_steps
    from models.evaluation import leave_one_out, load_interactions, random_split, side_by_side
    from models.evaluation import time_split as time_protocol
    from models.evaluation.protocols import load_items
    from models.generic import Items

    # In --json mode stdout carries the table alone: notes and progress go to stderr.
    notes = errors if as_json else console
    frame = load_interactions(
        interactions, user_col=user_col, item_col=item_col, time_col=time_col, weight_col=weight_col
    )
    catalogue = Items.of(load_items(items, item_col=item_col)) if items is not None else None
    splits = {
        Protocol.time: lambda: time_protocol(frame, test_share=test_share),
        Protocol.random: lambda: random_split(frame, test_share=test_share, seed=seed),
        Protocol.leave_one_out: lambda: leave_one_out(frame),
    }
    split = splits[protocol]()
    notes.print(
        f"{interactions.name}: {frame.height:,} interactions, protocol {protocol}, "
        f"{split.test['user_id'].n_unique():,} test users"
    )
    # The bar goes to stderr, and only to a terminal: stdout stays the table (or the JSON).
    with step_progress(errors, len(comparison_steps(tune=tune))) as started:
        comparison = compare(
            split,
            items=catalogue,
            rerank=rerank,
            seed=seed,
            label_share=test_share,
            tune=tune,
            progress=started,
        )
    table = side_by_side(comparison.results)
    if as_json:
        typer.echo(json.dumps(table.select(JSON_COLUMNS).to_dicts()))
    else:
        columns = [c for c in TABLE_COLUMNS if c in table.columns]
        shown = new_table(columns, numeric=columns[1:])
        for row in table.select(columns).iter_rows():
            shown.add_row(*(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row))
        show(console, shown)
    for model, chosen in comparison.chosen.items():
        described = ", ".join(
            f"{name} {value:.4g}" if isinstance(value, float) else f"{name} {value}"
            for name, value in chosen.items()
        )
        notes.print(f"[bold]{model}[/]: {described}")
    notes.print(
        "seconds: " + ", ".join(f"{name} {value:.1f}" for name, value in comparison.seconds.items())
    )


@services_app.command("start")
def services_start() -> None:
    """Start the embedded servers (those whose URL is not configured) and print their URLs."""
    _, urls = connect()
    typer.echo(f"DATABASE_URL={urls.database_url}\nREDIS_URL={urls.redis_url}")


@services_app.command("stop")
def services_stop() -> None:
    """Stop the embedded servers."""
    data = get_settings().data_path
    stopped = [
        name
        for name, stop in (("postgres", services.stop_postgres), ("redis", services.stop_redis))
        if stop(data)
    ]
    console.print(f"stopped: {', '.join(stopped) or 'nothing was running'}")


@services_app.command("status")
def services_status() -> None:
    """Say which embedded servers are running."""
    for name, running in services.status(get_settings().data_path).items():
        console.print(f"{name}: {'[green]running[/]' if running else '[red]stopped[/]'}")


app.command("run")(run)

if __name__ == "__main__":
    app()
