"""The `godo` CLI's quick commands, through Typer's runner."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from godo.cli import JSON_COLUMNS, app, mlflow_ui_command
from godo.settings import get_settings
from godo.tokens import verify_token
from models.baselines import MODELS

runner = CliRunner()


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
    """Two taste communities: the learned baselines must beat random on held-out items."""
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
    scores = {
        line.split()[1]: float(line.split()[3])
        for line in result.output.splitlines()
        if line.startswith("│") and line.split()[1] in MODELS
    }
    assert set(scores) == set(MODELS)
    assert scores["als"] > scores["random"] and scores["ease"] > scores["random"]


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


def test_evaluate_prints_the_tuned_params_outside_the_json(planted: Any) -> None:
    rows, notes = _evaluate_json(
        "--interactions", str(planted.interactions), "--protocol", "random", "--seed", "3"
    )
    assert {row["model"] for row in rows} == set(MODELS)
    assert "l2" in notes and "factors" in notes  # EASE's and ALS's choices, on stderr


def test_evaluate_with_items_and_rerank_runs_the_pipeline_on_category_features(
    planted: Any,
) -> None:
    args = ["--interactions", str(planted.interactions), "--items", str(planted.items)]
    rows, notes = _evaluate_json(*args, "--protocol", "random", "--no-tune", "--rerank")
    ndcg = {str(row["model"]): float(row["ndcg@10"]) for row in rows}  # type: ignore[arg-type]
    assert ndcg["pipeline"] > ndcg["popularity"]
    assert "content" in notes  # an item file with text adds the TF-IDF generator


def test_evaluate_rejects_an_unknown_protocol(tmp_path: Path) -> None:
    path = tmp_path / "interactions.csv"
    pl.DataFrame({"user": ["a"], "item": ["x"], "timestamp": [1]}).write_csv(path)
    result = runner.invoke(app, ["evaluate", "--interactions", str(path), "--protocol", "nope"])
    assert result.exit_code != 0


def test_the_demo_prints_the_simulated_online_table_before_the_holdout(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import duckdb

    from godo.cli import _print_evaluation
    from godo.demo import StepReport
    from pipelines.evaluation import with_online

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
    out = capsys.readouterr().out
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
