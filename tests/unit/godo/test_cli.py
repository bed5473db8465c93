"""The `godo` CLI's quick commands, through Typer's runner."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from rich.console import Console
from typer.testing import CliRunner

from core.settings import get_settings
from core.tokens import verify_token
from godo import cli
from godo.cli import JSON_COLUMNS, TABLE_COLUMNS, app, feed_table, mlflow_ui_command
from godo.console import show
from models.baselines import MODELS, comparison_steps

runner = CliRunner()
BOX_DRAWING = re.compile("[\u2500-\u257f]")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _words(text: str) -> str:
    """Text with box drawing gone and whitespace collapsed, so a wrapped message matches."""
    return " ".join(BOX_DRAWING.sub(" ", text).split())


def _assert_steps_shown_in_order(stderr: str, steps: tuple[str, ...]) -> None:
    """Each step's frame follows the one before (after the opening note, which names the
    protocol), and the last frame counts all but the last step done: the bar's total is right."""
    shown = ANSI.sub("", stderr)
    at = shown.index("test users")
    for step in steps:
        at = shown.index(step, at + 1)
    assert f"{len(steps) - 1}/{len(steps)}" in shown[at - 80 :]


def _terminal(monkeypatch: pytest.MonkeyPatch, *, stderr: bool = False) -> Console:
    """A console that takes itself for an 80-column terminal (COLUMNS=80, FORCE_COLOR)."""
    monkeypatch.setenv("COLUMNS", "80")
    return Console(stderr=stderr, force_terminal=True, color_system=None)


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("GODO_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("GODO_JWT_SECRET", "a-test-secret-that-is-long-enough-0123456789")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_token_prints_a_jwt_the_api_accepts_for_that_user() -> None:
    result = runner.invoke(app, ["token", "42"])
    assert result.exit_code == 0, result.output
    assert verify_token(get_settings(), result.output.strip()) == 42


def test_token_refuses_a_non_integer_user() -> None:
    result = runner.invoke(app, ["token", "alice"])
    assert result.exit_code != 0


def test_version_prints_the_installed_package_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"godo {metadata.version('godo')}\n"


def test_services_status_reports_nothing_running_in_a_new_data_dir() -> None:
    result = runner.invoke(app, ["services", "status"])
    assert result.exit_code == 0, result.output
    assert "postgres: stopped" in result.output and "redis: stopped" in result.output


def test_mlflow_opens_the_store_under_the_data_dir(tmp_path: Path) -> None:
    """`make mlflow` shows what the pipeline logged: the store and artifact root of settings."""
    command = mlflow_ui_command(get_settings(), "127.0.0.1", 5001)
    assert command[1:4] == ["-m", "mlflow", "ui"]
    options = dict(zip(command[4::2], command[5::2], strict=True))
    assert options == {
        "--backend-store-uri": f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}",
        "--default-artifact-root": str(tmp_path.resolve() / "mlartifacts"),
        "--host": "127.0.0.1",
        "--port": "5001",
    }


def test_mlflow_refuses_a_tracking_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GODO_MLFLOW_TRACKING_URI", "http://mlflow:5000")
    get_settings.cache_clear()
    result = runner.invoke(app, ["mlflow"])
    assert result.exit_code == 2
    assert "GODO_MLFLOW_TRACKING_URI" in result.output and "http://mlflow:5000" in result.output


def test_evaluate_scores_baselines_on_an_interaction_file(tmp_path: Path) -> None:
    """Two taste communities: the learned baselines must beat random on held-out items.
    Not a terminal here, so the table is tab-separated text and nothing goes to stderr."""
    rng = np.random.default_rng(1)
    rows = []
    for user in range(60):
        community = user % 2
        for step, item in enumerate(rng.choice(15, size=8, replace=False)):
            rows.append(
                {
                    "user": f"u{user}",
                    "item": f"c{community}-i{item}",
                    "timestamp": 1_700_000_000 + 3600 * step,
                }
            )
    path = tmp_path / "interactions.csv"
    pl.DataFrame(rows).write_csv(path)
    result = runner.invoke(
        app, ["evaluate", "--interactions", str(path), "--protocol", "time", "--no-tune"]
    )
    assert result.exit_code == 0, result.output
    assert not BOX_DRAWING.search(result.stdout) and result.stderr == ""
    lines = result.stdout.splitlines()
    header = lines.index("\t".join(TABLE_COLUMNS))
    rows = [line.split("\t") for line in lines[header + 1 : header + 1 + len(MODELS)]]
    scores = {row[0]: float(row[1]) for row in rows}  # ndcg@10
    assert set(scores) == set(MODELS)
    assert scores["als"] > scores["random"] and scores["ease"] > scores["random"]


def test_evaluate_in_an_80_column_terminal_shows_every_header_and_number_whole(
    planted: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rich's own layout cut `ndcg@…` and `0.26…` at 80 columns; every row must carry the
    model and all seven figures, each with its four decimals, within the width."""
    monkeypatch.setattr(cli, "console", _terminal(monkeypatch))
    args = ["evaluate", "--interactions", str(planted.interactions), "--no-tune"]
    result = runner.invoke(app, [*args, "--protocol", "random"])
    assert result.exit_code == 0, result.output
    lines = ANSI.sub("", result.stdout).splitlines()
    table = [line for line in lines if line.split() and line.split()[0] in MODELS]
    assert len(table) == len(MODELS)
    assert all(len(re.findall(r"\b\d+\.\d{4}\b", line)) == 7 for line in table), table
    header = next(line for line in lines if line.split()[:1] == ["model"])
    assert header.split() == list(TABLE_COLUMNS)
    assert max(len(line) for line in lines[lines.index(header) :]) <= 80
    assert "…" not in result.stdout


def test_evaluate_shows_each_step_on_a_terminal_stderr_and_keeps_stdout_json(
    planted: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "errors", _terminal(monkeypatch, stderr=True))
    args = ["evaluate", "--interactions", str(planted.interactions), "--no-tune", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert {row["model"] for row in json.loads(result.stdout)} == set(MODELS)
    _assert_steps_shown_in_order(result.stderr, comparison_steps(tune=False))


def _evaluate_json(*args: str) -> tuple[list[dict[str, object]], str]:
    result = runner.invoke(app, ["evaluate", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), result.stderr


@pytest.mark.parametrize("protocol", ["random", "time", "leave-one-out"])
def test_evaluate_json_is_only_the_table_and_the_pipeline_beats_the_floor(
    planted: Any, protocol: str
) -> None:
    """On planted taste groups the pipeline must beat random and popularity; stdout must parse
    as the JSON rows and nothing else."""
    rows, _ = _evaluate_json(
        "--interactions",
        str(planted.interactions),
        "--protocol",
        protocol,
        "--test-share",
        "0.25",
        "--no-tune",
    )
    assert [set(row) for row in rows] == [set(JSON_COLUMNS)] * len(MODELS)
    ndcg = {str(row["model"]): float(row["ndcg@10"]) for row in rows}  # type: ignore[arg-type]
    assert set(ndcg) == set(MODELS)
    assert ndcg["pipeline"] > ndcg["popularity"] > ndcg["random"]
    assert all(0.0 <= float(row["coverage"]) <= 1.0 for row in rows)  # type: ignore[arg-type]


def test_evaluate_prints_the_tuned_params_outside_the_json(
    planted: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "errors", _terminal(monkeypatch, stderr=True))
    rows, notes = _evaluate_json(
        "--interactions", str(planted.interactions), "--protocol", "random", "--seed", "3"
    )
    assert {row["model"] for row in rows} == set(MODELS)
    assert "l2" in notes and "factors" in notes  # EASE's and ALS's choices, on stderr
    _assert_steps_shown_in_order(notes, comparison_steps(tune=True))


def test_evaluate_with_items_and_rerank_runs_the_pipeline_on_category_features(
    planted: Any,
) -> None:
    args = ["--interactions", str(planted.interactions), "--items", str(planted.items)]
    rows, notes = _evaluate_json(*args, "--protocol", "random", "--no-tune", "--rerank")
    ndcg = {str(row["model"]): float(row["ndcg@10"]) for row in rows}  # type: ignore[arg-type]
    assert ndcg["pipeline"] > ndcg["popularity"]
    assert "content" in notes  # an item file with text adds the TF-IDF generator


def test_evaluate_rejects_an_unknown_protocol_with_a_usage_error_naming_the_choices(
    tmp_path: Path,
) -> None:
    path = tmp_path / "interactions.csv"
    pl.DataFrame({"user": ["a"], "item": ["x"], "timestamp": [1]}).write_csv(path)
    result = runner.invoke(app, ["evaluate", "--interactions", str(path), "--protocol", "nope"])
    assert result.exit_code == 2
    assert "'nope' is not one of 'time', 'random', 'leave-one-out'" in _words(result.stderr)


def _print_holdout_table() -> None:
    """`godo demo`'s evaluation report of a run whose final feed beat the champion."""
    import duckdb

    from godo.cli import _print_evaluation
    from godo.demo import StepReport
    from recommender.holdout import with_online

    settings = get_settings()
    settings.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    holdout = pl.DataFrame(
        {
            "model": ["final_feed", "champion", "oracle"],
            "version": [2, 1, None],
            **{m: [0.2, 0.1, 0.15] for m in ("ndcg@10", "recall@20", "map@10", "mrr")},
            **{m: [0.5, 0.5, 0.5] for m in ("coverage", "novelty", "ild@10")},
        }
    )
    frame = with_online(holdout, None).with_columns(
        online_value=pl.Series([8.6, 8.2, 10.6]),
        online_low=pl.Series([8.5, 8.1, 10.5]),
        online_high=pl.Series([8.7, 8.3, 10.7]),
        gain=pl.Series([0.4, None, None]),
        gain_low=pl.Series([0.3, None, None]),
        gain_high=pl.Series([0.5, None, None]),
    )
    with duckdb.connect(str(settings.warehouse_path)) as con:
        con.sql("CREATE SCHEMA godo")
        con.register("frame", frame.to_arrow())
        con.sql("CREATE TABLE godo.ranking_evaluation AS SELECT * FROM frame")
    report = StepReport("ranking_evaluation", 1.0, {}, {"ranking_evaluation:beats_champion": True})
    _print_evaluation(settings, [report])


def test_the_demo_prints_the_simulated_online_table_before_the_holdout(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _print_holdout_table()
    out = capsys.readouterr().out
    assert not BOX_DRAWING.search(out)  # not a terminal: tab-separated, a `# title` line each
    assert out.index("Simulated online") < out.index("Logged holdout")
    assert "10.600" in out and "8.600" in out
    assert "the new version is the champion" in out and "+0.300 to +0.500" in out


@pytest.fixture
def no_upstream_keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("EVENTBRITE_TOKEN", "GOOGLE_MAPS_API_KEY", "GODO_EVENTBRITE_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # `godo dagster` changes into the repository


def test_dagster_in_production_without_keys_refuses_before_starting_anything(
    no_upstream_keys: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.unit.conftest import PRODUCTION_JWT_SECRET

    def connect() -> None:
        raise AssertionError("servers started before the refusal")

    monkeypatch.setattr("godo.cli.connect", connect)
    monkeypatch.setenv("GODO_ENVIRONMENT", "production")
    monkeypatch.setenv("GODO_JWT_SECRET", PRODUCTION_JWT_SECRET)
    get_settings.cache_clear()
    result = runner.invoke(app, ["dagster"])
    assert result.exit_code == 1
    output = " ".join(result.output.split())  # Rich wraps long lines
    assert "Not starting Dagster: EVENTBRITE_TOKEN and GOOGLE_MAPS_API_KEY not set" in output
    assert "GODO_ENVIRONMENT=production" in output and "development only" in output


def test_dagster_without_keys_in_development_runs_dagster_dev_on_the_local_fake(
    no_upstream_keys: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`dagster dev` is started with the fake's URLs and credentials in its environment, while
    the fake answers them; the fake stops when `dagster dev` exits."""
    import httpx

    from godo.services import ServiceUrls

    urls = ServiceUrls("postgresql://unused/godo", "redis://unused/0", False, False)
    monkeypatch.setattr("godo.cli.connect", lambda: (get_settings(), urls))
    monkeypatch.setattr("godo.dagster_home.prepare_dagster_home", lambda *_: tmp_path)
    launched: dict[str, Any] = {}

    def run_until_exit(command: list[str], env: dict[str, str]) -> int:
        organizations = json.loads(env["GODO_EVENTBRITE_ORGANIZATIONS"])
        org = organizations["oakland"][0]
        listing = httpx.get(
            f"{env['GODO_EVENTBRITE_BASE_URL']}organizations/{org}/events/",
            headers={"Authorization": f"Bearer {env['EVENTBRITE_TOKEN']}"},
        )
        launched.update(command=command, env=env, listing=listing)
        return 3

    monkeypatch.setattr("godo.cli.run_until_exit", run_until_exit)
    result = runner.invoke(app, ["dagster", "--port", "3999"])
    assert result.exit_code == 3, result.output  # dagster dev's own exit code
    assert launched["command"][1:4] == ["-m", "dagster", "dev"]
    assert launched["command"][-2:] == ["-p", "3999"]
    env = launched["env"]
    assert launched["listing"].status_code == 200 and launched["listing"].json()["events"]
    assert env["GODO_EVENTBRITE_TIME_FILTER"] == "all"
    assert set(json.loads(env["GODO_EVENTBRITE_ORGANIZATIONS"])) == set(get_settings().metros)
    assert env["GOOGLE_MAPS_API_KEY"] and env["GODO_GEOCODE_BASE_URL"].startswith("http://127.")
    assert "local fake of Eventbrite and Google Maps" in " ".join(result.output.split())
    with pytest.raises(httpx.ConnectError):  # stopped with dagster dev
        httpx.get(env["GODO_EVENTBRITE_BASE_URL"], timeout=2)


def test_run_until_exit_passes_an_interrupt_on_and_returns_the_childs_code() -> None:
    """Ctrl+C (or a process manager's SIGINT/SIGTERM) sent to `godo dagster` alone reaches
    `dagster dev`, which has a session of its own, and `godo` waits for it to finish."""
    import os
    import signal
    import sys
    import threading

    from godo.cli import run_until_exit

    child = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGINT, lambda *_: sys.exit(7))\n"
        "time.sleep(60)\n"
        "sys.exit(1)\n"
    )
    timer = threading.Timer(3.0, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        code = run_until_exit([sys.executable, "-c", child], dict(os.environ))
    finally:
        timer.cancel()
    assert code == 7
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_the_logged_holdout_table_keeps_version_and_every_metric_whole_at_80_columns(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo's widest table: nine columns, `versi…` and `0.26…` under Rich's own layout."""
    monkeypatch.setattr(cli, "console", _terminal(monkeypatch))
    _print_holdout_table()
    out = capsys.readouterr().out
    lines = out.splitlines()
    below = lines[next(i for i, line in enumerate(lines) if "Logged holdout" in line) :]
    header = next(line for line in below if line.split()[:1] == ["model"])
    metrics = ("ndcg@10", "recall@20", "map@10", "mrr", "coverage", "novelty", "ild@10")
    assert header.split() == ["model", "version", *metrics]
    rows = [line for line in below if line.split()[:1] in (["final_feed"], ["champion"])]
    assert [row.split()[:2] for row in rows] == [["final_feed", "2"], ["champion", "1"]]
    assert all(len(re.findall(r"\b0\.\d{4}\b", row)) == len(metrics) for row in rows), rows
    assert max(len(line) for line in lines) <= 80 and "…" not in out


def test_the_feed_table_wraps_long_names_and_reasons_instead_of_cutting_them() -> None:
    from store.feed import Feed, FeedItem
    from tests.unit.conftest import event_card

    name = "The Extraordinary Late Night Jazz Improvisation Collective at the Fillmore"
    reason = "because you liked Music, 3 friends are going and people like you liked this"
    card = event_card("ev-1", name=name)
    item = FeedItem(card, rank=1, score=0.9, reason=reason, friends_going=3, distance_km=None)
    feed = Feed(114, "run-7", "redis", False, [item])
    for width in (80, 200):
        console = Console(width=width, force_terminal=True, color_system=None, record=True)
        show(console, feed_table(feed))
        lines = console.export_text().splitlines()
        assert max(len(line) for line in lines) <= width
        rows = [line.split("│") for line in lines if line.count("│") == 5]
        assert " ".join(r[2].strip() for r in rows if r[2].strip()) == name
        assert " ".join(r[4].strip() for r in rows if r[4].strip()) == reason
        assert [r[3].strip() for r in rows if r[3].strip()] == ["Sat 05 Dec 00:30"]


@pytest.fixture
def uvicorn_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    """`uvicorn.run`'s arguments instead of a server; `connect` without starting any."""
    import uvicorn

    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: calls.append((args, kwargs)))
    monkeypatch.setattr(cli, "connect", lambda: (get_settings(), None))
    return calls


def test_serve_passes_reload_to_uvicorn_on_the_app_factory(
    uvicorn_calls: list[tuple[tuple[Any, ...], dict[str, Any]]],
) -> None:
    result = runner.invoke(app, ["serve", "--reload", "--port", "8123"])
    assert result.exit_code == 0, result.output
    ((args, kwargs),) = uvicorn_calls
    assert args == ("serving.app:create_app",) and kwargs["factory"] is True
    assert kwargs["reload"] is True and kwargs["workers"] == 1 and kwargs["port"] == 8123
    watched = {Path(folder).name for folder in kwargs["reload_dirs"]}
    assert {"serving", "store", "godo"} <= watched and ".venv" not in watched


def test_serve_passes_workers_to_uvicorn(
    uvicorn_calls: list[tuple[tuple[Any, ...], dict[str, Any]]],
) -> None:
    result = runner.invoke(app, ["serve", "--workers", "3"])
    assert result.exit_code == 0, result.output
    ((args, kwargs),) = uvicorn_calls
    assert args == ("serving.app:create_app",) and kwargs["factory"] is True
    assert kwargs["workers"] == 3 and kwargs["reload"] is False and kwargs["reload_dirs"] is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--reload", "--workers", "2"], "--reload runs a single process"),
        (["--workers", "0"], "'--workers': Input should be greater than or equal to 1"),
    ],
)
def test_serve_refuses_options_uvicorn_cannot_honour(
    uvicorn_calls: list[tuple[tuple[Any, ...], dict[str, Any]]], options: list[str], message: str
) -> None:
    result = runner.invoke(app, ["serve", *options])
    assert result.exit_code == 2
    assert message in _words(result.stderr)
    assert uvicorn_calls == []


def test_run_list_names_every_job_with_its_pipeline_as_plain_text() -> None:
    from pipelines.definitions import defs
    from pipelines.jobs import PIPELINE_TAG

    result = runner.invoke(app, ["run", "--list"])
    assert result.exit_code == 0, result.output
    assert not BOX_DRAWING.search(result.stdout)
    lines = result.stdout.splitlines()
    assert lines[:2] == ["# Jobs", "job\tpipeline\tpartitions\tdescription"]
    listed = {line.split("\t")[0]: line.split("\t") for line in lines[2:]}
    assert set(listed) == {job.name for job in defs.jobs or ()}
    for job in defs.jobs or ():
        assert listed[job.name][1] == job.tags[PIPELINE_TAG]
    assert listed["ingest_metro"][2] == ", ".join(get_settings().metros)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["move_impresions"], "no job named 'move_impresions'; the jobs are: ingest_metro,"),
        ([], "name a job; the jobs are: ingest_metro,"),
        (["ingest_metro"], "'--partition': missing; ingest_metro runs one of: san-francisco,"),
        (["ingest_metro", "--partition", "paris"], "'paris' is not one; ingest_metro runs"),
        (["move_impressions", "--partition", "x"], "move_impressions is not partitioned"),
    ],
)
def test_run_refuses_an_unknown_job_or_partition_before_reaching_any_server(
    args: list[str], message: str, tmp_path: Path
) -> None:
    result = runner.invoke(app, ["run", *args])
    assert result.exit_code == 2
    assert message in _words(result.stderr)
    assert not any(tmp_path.iterdir())  # no instance, no embedded server


def test_the_demo_ends_saying_where_each_ui_is_with_the_configured_addresses() -> None:
    """The README's first screen and the demo's last table agree on where to look."""
    from core.settings import Settings
    from godo.cli import where_to_look
    from godo.console import plain_lines

    settings = Settings(
        mlflow_ui_url="http://mlflow.internal:5555",
        mlflow_experiment="exp-x",
        _env_file=None,  # type: ignore[call-arg]
    )
    lines = plain_lines(where_to_look(settings, "127.0.0.1", 8123))
    text = "\n".join(lines)
    assert lines[0] == "# Where to look next"
    assert "http://127.0.0.1:8123/docs, http://127.0.0.1:8123/redoc" in text
    assert "http://127.0.0.1:8123/admin/login" in text
    assert "http://mlflow.internal:5555" in text and "`exp-x`" in text
    assert "http://127.0.0.1:3000" in text
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    first_screen = readme[: readme.index("## What the demo does")]
    for where in ("/docs", "http://127.0.0.1:3000", "http://127.0.0.1:5000", "/admin/login"):
        assert where in first_screen, where
